"""connection/tcp.py: QuickAckSocket acknowledges before every read and is the
socket otherwise; transport_with_nodelay sets TCP_NODELAY.
"""

import socket

from tasks.connection.tcp import QuickAckSocket, transport_with_nodelay


def test_quick_ack_socket_acknowledges_before_every_read_and_is_the_socket_otherwise():
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
