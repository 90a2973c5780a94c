"""connection/tunnel.py: a local port whose connections are forwarded over a
channel; here the "SSH transport" opens plain loopback sockets, no SSH."""

import socket
import threading

import pytest

from tasks.connection.tunnel import Tunnel
from tasks.errors import BAD_INPUT, Failure


class Channel:
    """A loopback socket with the one channel method a socket lacks."""

    def __init__(self, address):
        self.sock = socket.create_connection(address, timeout=5)

    def fileno(self):
        return self.sock.fileno()

    def sendall(self, data):
        self.sock.sendall(data)

    def recv(self, n):
        return self.sock.recv(n)

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        self.sock.close()


class Transport:
    """open_channel("direct-tcpip", ...) connects to ``upstream`` instead."""

    def __init__(self, upstream=None):
        self.upstream, self.opened = upstream, []

    def open_channel(self, kind, dest, origin, timeout=None):
        self.opened.append((kind, dest, origin[0]))
        if self.upstream is None:
            raise ConnectionRefusedError("Connect failed")
        return Channel(self.upstream)


@pytest.fixture
def upper_server():
    """Reads a request to its end, answers it in capitals, closes."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()
        with conn:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()
    thread.join(timeout=5)
    server.close()


def exchange(port, payload):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer


def closed_without_an_answer(port):
    """Connect and read: the tunnel closes the connection (EOF or a reset) unanswered."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        try:
            return client.recv(1) == b""
        except ConnectionResetError:
            return True


def test_a_connection_is_forwarded_both_ways_over_one_channel(upper_server):
    transport, stats = Transport(upper_server), {}
    payload = b"get /version\n" * 10000  # more than one read's worth
    with Tunnel(transport, stats, "127.0.0.1", 8082, "127.0.0.1", 0) as tunnel:
        assert exchange(tunnel.local_port, payload) == payload.upper()
        assert transport.opened == [("direct-tcpip", ("127.0.0.1", 8082), "127.0.0.1")]
        assert tunnel.connections == 1 and stats == {"channels": 1} and tunnel.errors == []
        assert tunnel.url == f"http://127.0.0.1:{tunnel.local_port}/"


def test_an_app_that_is_not_listening_closes_the_client_and_the_tunnel_goes_on():
    transport = Transport(upstream=None)
    with Tunnel(transport, {}, "127.0.0.1", 8081, "127.0.0.1", 0) as tunnel:
        assert closed_without_an_answer(tunnel.local_port)
        assert closed_without_an_answer(tunnel.local_port)  # still accepting
        assert tunnel.errors == ["127.0.0.1:8081: Connect failed"] * 2


def test_a_local_port_in_use_is_bad_input_with_what_to_do():
    taken = socket.create_server(("127.0.0.1", 0))
    try:
        with pytest.raises(Failure) as exc:
            Tunnel(Transport(), {}, "127.0.0.1", 8081, "127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
    assert exc.value.code == BAD_INPUT
    assert exc.value.message.startswith("cannot listen on 127.0.0.1:")
    assert exc.value.hint == "pick another port with --local-port, or stop what uses it"


def test_an_ipv6_bind_is_bracketed_in_the_url():
    try:
        tunnel = Tunnel(Transport(), {}, "::1", 8081, "::1", 0)
    except Failure:
        pytest.fail("this machine has no IPv6 loopback (::1)")
    with tunnel:
        assert tunnel.url == f"http://[::1]:{tunnel.local_port}/"
