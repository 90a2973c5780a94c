"""tasks/connection/ssh.py without a connection: where to connect, and how it is named."""

from support.known_hosts_files import OTHER_PUB, PUB
from tasks.connection.ssh import _known_hosts, destination_label
from tasks.connection.tcp import QuickAckSocket, transport_with_nodelay


def test_destination_label():
    assert destination_label("h") == "h"
    assert destination_label("h", "u", 22) == "u@h:22"
    assert destination_label("::1", "u", 2222) == "u@[::1]:2222"


def test_quick_ack_socket_acknowledges_before_every_read_and_is_the_socket_otherwise():
    import socket


    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()
    try:
        wrapped = QuickAckSocket(client)
        # Delayed ACKs, as the kernel falls back to by itself: the read sets
        # quick ACKs again (the flag is not sticky).
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 0
        peer.sendall(b"hello")
        assert wrapped.recv(5) == b"hello"
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
        wrapped.settimeout(0.5)
        assert client.gettimeout() == 0.5
        assert wrapped.getpeername() == peer.getsockname()
        # paramiko gets the wrapper, with TCP_NODELAY set on the socket beneath.
        transport = transport_with_nodelay(client)
        assert isinstance(transport.sock, QuickAckSocket)
        assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        transport.close()
    finally:
        for s in (client, peer, server):
            s.close()


def test_a_known_hosts_file_is_parsed_once_per_content():
    # Twenty hosts of one run sharing ~/.ssh/known_hosts parse it once;
    # a file that changed (accept-new appended a line) is parsed again.
    text = f"[127.0.0.1]:2222 ssh-ed25519 {PUB}\n"
    first = _known_hosts(text, "/k")
    assert _known_hosts(text, "/k") is first and len(first) == 1
    more = _known_hosts(text + f"other ssh-ed25519 {OTHER_PUB}\n", "/k")
    assert len(more) == 2 and more[0].entry.hostnames == ["[127.0.0.1]:2222"]
