"""HTTP over a channel (tasks/connection/http_channel.py), against real local servers, without SSH.

A server on 127.0.0.1 speaks HTTP/1.1 only (HTTP/1.0 gets 400), answers
chunked and keep-alive, and over TLS with a throwaway certificate. The
channel is a connected socket with the methods http_channel.py uses of a paramiko
channel (settimeout, sendall, recv, close); the transport's open_channel
dials the port, as sshd does for a direct-tcpip channel.
"""

import http.client
import socket
import ssl
import subprocess
import threading
import time

import paramiko
import pytest
from paramiko.common import OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED, OPEN_FAILED_CONNECT_FAILED

from ports import free_port  # a port nobody listens on, from the tests' reserved range
from tasks.connection import http_channel
from tasks.connection.http_channel import (MAX_BODY, USER_AGENT, ProbeError, Response, _Connection,
                                           _sni_from, describe_request)
from tasks.deploy.health import describe_answer
from tasks.errors import Failure

# --- a local HTTP/1.1 server ----------------------------------------------------


def head(status, headers=(), close=False):
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data):
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Server:
    """HTTP/1.1 on 127.0.0.1 (TLS when given a context); one thread per connection.

    It keeps connections open unless a route closes them, whatever the
    client's Connection header says: a keep-alive answer must still end
    where its framing says.
    """

    def __init__(self, tls=None):
        self.tls = tls
        self.requests = []  # (request line, {header: value}) as received
        self.sni = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.conns = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                self.conns.append(conn)
            reader = conn.makefile("rb")
            while True:
                line = reader.readline().decode("latin-1").rstrip("\r\n")
                if not line:
                    return
                headers = {}
                while True:
                    h = reader.readline().decode("latin-1").rstrip("\r\n")
                    if not h:
                        break
                    name, _, value = h.partition(":")
                    headers[name.strip().lower()] = value.strip()
                self.requests.append((line, headers))
                parts = line.split(" ")
                if len(parts) != 3 or parts[2] != "HTTP/1.1":
                    conn.sendall(head("400 Bad Request", [("Content-Length", "0")], close=True))
                    return
                if not self.route(conn, parts[1]):
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def route(self, conn, path):
        """Answer one request; False closes the connection."""
        if path.startswith("/health"):
            body = b"ok\n"
            conn.sendall(head("200 OK", [("Content-Length", len(body)),
                                         ("X-Deploy-Colour", "green"),
                                         ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]) + body)
            return True
        if path == "/chunked":
            conn.sendall(head("200 OK", [("Transfer-Encoding", "chunked")]))
            for part in (b"hello ", b"chunked ", b"world"):
                time.sleep(0.02)
                conn.sendall(chunk(part))
            conn.sendall(b"0\r\n\r\n")
            return True
        if path == "/late-body":
            conn.sendall(head("200 OK", [("Content-Length", "5")], close=True))
            time.sleep(0.3)
            conn.sendall(b"later")
            return False
        if path == "/late-chunks":
            conn.sendall(head("200 OK", [("Transfer-Encoding", "chunked")], close=True))
            time.sleep(0.3)
            conn.sendall(chunk(b"later") + b"0\r\n\r\n")
            return False
        if path == "/big":
            body = b"x" * (MAX_BODY + 4096)
            conn.sendall(head("200 OK", [("Content-Length", len(body))]) + body)
            return True
        if path == "/silent":
            self.stop.wait(5)
            return False
        if path == "/hangup":
            return False
        if path == "/ssh":
            conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
            return False
        body = b"not found"
        conn.sendall(head("404 Not Found", [("Content-Length", len(body))]) + body)
        return True

    def close(self):
        self.stop.set()
        self.listener.close()
        for conn in self.conns:
            try:
                conn.close()
            except OSError:
                pass


class Channel:
    """A connected socket with what http_channel.py uses of a paramiko Channel.

    Like paramiko's, a closed channel gives what has already arrived, then
    b"" at once, and refuses to send. The server closing its end is the
    host's EOF (eof_received); a channel closed by a dying connection
    (Transport.die) ends without one.
    """

    def __init__(self, sock):
        self.sock, self.closed, self.timeout = sock, False, None
        self.eof_received = False

    def settimeout(self, timeout):
        self.timeout = timeout
        self.sock.settimeout(timeout)

    def sendall(self, data):
        if self.closed:
            raise OSError("Socket is closed")
        self.sock.sendall(data)

    def recv(self, size):
        if self.closed:
            self.sock.setblocking(False)
            try:
                return self.sock.recv(size)
            except OSError:
                return b""
        data = self.sock.recv(size)
        if not data and not self.closed:
            self.eof_received = True
        return data

    def close(self):
        self.closed = True


class Transport:
    """open_channel("direct-tcpip", (host, port), ...) dials the port, as sshd would."""

    def __init__(self, refuse_code=None, dead=False):
        self.opened, self.channels = [], []
        self.refuse_code, self.dead = refuse_code, dead

    def open_channel(self, kind, dest_addr, src_addr, timeout=None):
        self.opened.append((kind, dest_addr, src_addr, timeout))
        if self.dead:
            raise EOFError()
        if self.refuse_code is not None:
            raise paramiko.ChannelException(self.refuse_code, "Administratively prohibited")
        try:
            sock = socket.create_connection(dest_addr, timeout=timeout)
        except ConnectionRefusedError:
            raise paramiko.ChannelException(OPEN_FAILED_CONNECT_FAILED, "Connect failed")
        chan = Channel(sock)
        self.channels.append(chan)
        return chan

    def is_active(self):
        return not self.dead

    def die(self, said_after=0.05):
        """The connection drops: as paramiko does, every channel is closed
        (readers wake up with b"", no EOF), and only then, a moment later,
        is the transport no longer active."""
        for chan in self.channels:
            chan.closed = True
            chan.sock.shutdown(socket.SHUT_RDWR)
        threading.Timer(said_after, setattr, (self, "dead", True)).start()

    def close(self):
        for chan in self.channels:
            chan.sock.close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def transport():
    t = Transport()
    yield t
    t.close()


# --- the server is what the tests say it is --------------------------------------


def test_the_server_refuses_http_1_0(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
        s.sendall(b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400 ")


# --- plain HTTP ------------------------------------------------------------------


def test_a_get_speaks_http_1_1_with_host_and_reads_a_keep_alive_answer(server, transport):
    stats = {}
    resp = http_channel.get(transport, server.port, "health?x=1", host_header="app.example.com",
                     timeout=2.0, stats=stats)
    assert (resp.status, resp.reason, resp.body) == (200, "OK", b"ok\n")
    assert resp.headers["x-deploy-colour"] == "green"
    assert resp.headers["set-cookie"] == "a=1, b=2"  # repeated headers, one key
    assert resp.status_line == "HTTP/1.1 200 OK"
    assert resp.request == "GET /health?x=1 HTTP/1.1, Host: app.example.com"
    [(line, headers)] = server.requests
    assert line == "GET /health?x=1 HTTP/1.1"
    assert headers["host"] == "app.example.com"
    assert headers["user-agent"] == USER_AGENT and headers["connection"] == "close"
    assert transport.opened == [("direct-tcpip", ("127.0.0.1", server.port),
                                 ("127.0.0.1", 0), 2.0)]
    assert stats == {"channels": 1}
    assert transport.channels[0].closed  # every channel is closed after its answer


def test_a_chunked_answer_is_read_whole(server, transport):
    resp = http_channel.get(transport, server.port, "/chunked", timeout=2.0)
    assert resp.status == 200 and resp.body == b"hello chunked world"
    assert server.requests[0][1]["host"] == "_"


def test_a_4xx_answer_names_the_request(server, transport):
    resp = http_channel.get(transport, server.port, "/missing", host_header="x", timeout=2.0)
    assert (resp.status, resp.body) == (404, b"not found")
    assert resp.request == "GET /missing HTTP/1.1, Host: x"
    assert describe_answer(resp) == "HTTP/1.1 404 Not Found to `GET /missing HTTP/1.1, Host: x`"


def test_a_body_is_capped(server, transport):
    resp = http_channel.get(transport, server.port, "/big", timeout=5.0)
    assert len(resp.body) == MAX_BODY


def test_the_connection_can_serve_several_requests_when_kept_alive(server, transport):
    chan = transport.open_channel("direct-tcpip", ("127.0.0.1", server.port), ("127.0.0.1", 0),
                                  timeout=2.0)
    conn = _Connection("app.example.com", http_channel.ChannelSocket(chan, 2.0), 2.0)
    for path in ("/health", "/chunked", "/health"):
        conn.request("GET", path)
        answer = conn.getresponse()
        assert answer.status == 200 and answer.read()
    assert [line for line, _ in server.requests] == [
        "GET /health HTTP/1.1", "GET /chunked HTTP/1.1", "GET /health HTTP/1.1"]
    assert len(transport.opened) == 1


# Was a bug (tasks/connection/http_channel.py, get/ChannelSocket.close): get() sends
# "Connection: close"; when the server says it will close (nginx, gunicorn
# and http.server all echo it), http.client's getresponse() "passes the
# connection to the response" by calling HTTPConnection.close(), which calls
# ChannelSocket.close() -> chan.close() BEFORE get() reads the body. A
# closed paramiko channel returns only what has already arrived, then b"":
# a body that comes after the headers is silently cut (Content-Length), or
# a chunked one fails as "not an HTTP answer: IncompleteRead" and a healthy
# app fails its health check. A socket's close() waits for its makefile()
# readers; ChannelSocket.close() does not (get's own `finally` already
# closes the channel, so ChannelSocket.close could leave it open).
@pytest.mark.parametrize("path", ["/late-body", "/late-chunks"])
def test_a_body_that_comes_after_the_headers_is_read(server, transport, path):
    resp = http_channel.get(transport, server.port, path, timeout=2.0)
    assert resp.body == b"later"


@pytest.mark.parametrize("path, reason", [
    ("/silent", "no answer within 0.5s"),
    ("/hangup", "the connection closed without an answer"),
    ("/ssh", "not an HTTP answer: BadStatusLine"),
])
def test_no_usable_answer_is_a_probe_error(server, transport, path, reason):
    with pytest.raises(ProbeError) as err:
        http_channel.get(transport, server.port, path, timeout=0.5)
    assert err.value.reason.startswith(reason)
    assert err.value.where == f"127.0.0.1:{server.port}"
    assert err.value.code == 1


def test_a_closed_port_is_refused_at_once(transport):
    with pytest.raises(ProbeError) as err:
        http_channel.get(transport, free_port(), "/", timeout=2.0)
    assert err.value.reason == "connection refused"


def test_a_server_that_forbids_forwarding_is_a_failure_naming_the_setting():
    with pytest.raises(Failure) as err:
        http_channel.get(Transport(refuse_code=OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED), 8081, "/",
                  host_name="prod")
    assert not isinstance(err.value, ProbeError)
    assert "the SSH server on prod refuses port forwarding" in err.value.message
    assert "AllowTcpForwarding" in err.value.hint


def test_a_lost_connection_is_the_connections_failure():
    lost = Failure("the connection to prod was lost", code=3)
    with pytest.raises(Failure) as err:
        http_channel.get(Transport(dead=True), 8081, "/", lost=lambda when: lost)
    assert err.value is lost


@pytest.mark.parametrize("tls", [False, True])
def test_a_connection_that_dies_under_a_probe_is_the_connections_failure(server, tls_server,
                                                                         transport, tls):
    """Not "the app closed the connection without an answer" (exit 1): the
    channel ended because the SSH connection did (exit 3)."""
    lost = Failure("the connection to prod was lost", code=3)
    port = tls_server.port if tls else server.port
    threading.Timer(0.2, transport.die).start()
    with pytest.raises(Failure) as err:
        http_channel.get(transport, port, "/silent", timeout=5.0, tls=tls, lost=lambda when: lost)
    assert err.value is lost


@pytest.mark.parametrize("path, host", [("/x\r\nEvil: 1", "_"), ("/", "a\r\nb"), ("/a b", "_"),
                                        ("/", "a b"), ("/\0", "_")])
def test_a_request_that_would_inject_is_refused_before_any_channel(path, host):
    t = Transport()
    with pytest.raises(ValueError):
        http_channel.get(t, 8081, path, host_header=host)
    assert t.opened == []


def test_the_bind_address_is_where_the_channel_goes(server, transport):
    http_channel.get(transport, server.port, "/health", bind="127.0.0.1", timeout=2.0)
    with pytest.raises(ProbeError) as err:
        http_channel.get(transport, free_port(), "/", bind="127.0.0.2", timeout=2.0)
    assert err.value.where.startswith("127.0.0.2:")


# --- TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    """A throwaway self-signed certificate for app.example.com."""
    d = tmp_path_factory.mktemp("tls")
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(crt), "-subj", "/CN=app.example.com",
                    "-addext", "subjectAltName=DNS:app.example.com"],
                   check=True, capture_output=True, timeout=60)
    return key, crt


@pytest.fixture
def tls_server(cert):
    key, crt = cert
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))
    srv = Server(tls=ctx)
    ctx.sni_callback = lambda sock, name, _ctx: srv.sni.append(name)
    yield srv
    srv.close()


def test_tls_with_the_sni_of_the_host_header(tls_server, transport):
    resp = http_channel.get(transport, tls_server.port, "/health", host_header="app.example.com",
                     tls=True, timeout=3.0)
    assert (resp.status, resp.body) == (200, b"ok\n")
    assert tls_server.sni == ["app.example.com"]
    assert tls_server.requests[0] == ("GET /health HTTP/1.1", tls_server.requests[0][1])
    assert tls_server.requests[0][1]["host"] == "app.example.com"


def test_tls_chunked_and_sni_choices(tls_server, transport):
    assert http_channel.get(transport, tls_server.port, "/chunked", tls=True,
                     timeout=3.0).body == b"hello chunked world"
    http_channel.get(transport, tls_server.port, "/health", host_header="shop.example.com:8443",
              tls=True, server_hostname="app.example.com", timeout=3.0)
    http_channel.get(transport, tls_server.port, "/health", host_header="shop.example.com:8443",
              tls=True, timeout=3.0)
    # "_" names no server: no SNI; a given server_hostname wins; a Host with a
    # port sends its name.
    assert tls_server.sni == [None, "app.example.com", "shop.example.com"]


def test_tls_verified_against_a_ca_file(tls_server, transport, cert):
    resp = http_channel.get(transport, tls_server.port, "/health", host_header="app.example.com",
                     tls=True, verify=True, cafile=str(cert[1]), timeout=3.0)
    assert resp.status == 200
    with pytest.raises(ProbeError) as err:
        http_channel.get(transport, tls_server.port, "/health", host_header="other.example.com",
                  tls=True, verify=True, cafile=str(cert[1]), timeout=3.0)
    assert err.value.reason.startswith("TLS failed: CERTIFICATE_VERIFY_FAILED")


def test_a_self_signed_certificate_fails_verification_against_the_system_cas(tls_server,
                                                                            transport):
    with pytest.raises(ProbeError) as err:
        http_channel.get(transport, tls_server.port, "/health", host_header="app.example.com",
                  tls=True, verify=True, timeout=3.0)
    assert err.value.reason == "TLS failed: CERTIFICATE_VERIFY_FAILED"


def test_tls_to_a_plain_http_port_is_a_tls_failure(transport):
    # A plain HTTP server that answers whatever it is sent with a 400.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def answer():
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(head("400 Bad Request", [("Content-Length", "0")], close=True))
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        with pytest.raises(ProbeError) as err:
            http_channel.get(transport, listener.getsockname()[1], "/health", tls=True, timeout=2.0)
    finally:
        listener.close()
    assert err.value.reason.startswith("TLS failed")


def test_a_4xx_over_tls_names_the_request(tls_server, transport):
    resp = http_channel.get(transport, tls_server.port, "/nope", host_header="app.example.com",
                     tls=True, timeout=3.0)
    assert resp.status == 404
    assert resp.request == "GET /nope HTTP/1.1, Host: app.example.com"


# --- the pure parts ------------------------------------------------------------------


def test_sni_from_host_header():
    assert _sni_from("_") is None
    assert _sni_from("app.example.com") == "app.example.com"
    assert _sni_from("app.example.com:8443") == "app.example.com"
    assert _sni_from("") is None
    assert _sni_from("[::1]:8443") is None
    assert _sni_from("a b") is None


def test_probe_error_is_a_clean_failure():
    e = ProbeError("connection refused", "127.0.0.1:8081")
    assert isinstance(e, Failure) and e.code == 1
    assert e.reason == "connection refused"
    assert str(e) == "error: no answer from 127.0.0.1:8081: connection refused"
    assert ProbeError("x").message == "x"


def test_describe_request_and_status_line():
    assert describe_request("/health", "_") == "GET /health HTTP/1.1, Host: _"
    r = Response(503, "", {}, b"", "GET / HTTP/1.1, Host: _")
    assert r.status_line == "HTTP/1.1 503"


def test_the_connection_never_dials():
    conn = _Connection("_", object(), 1.0)
    conn.connect()  # http.client calls it; the channel is already open
    assert conn.host == "localhost"
    assert _Connection("app.example.com", object(), 1.0).host == "app.example.com"
    assert isinstance(conn, http.client.HTTPConnection)
