"""HTTP requests to a port on the host, through the SSH connection.

Each request opens a `direct-tcpip` channel to the port (no local port, no
curl on the host) and lets `http.client` speak HTTP/1.1 over it, the way
docker-py talks to a daemon over `ssh://`: `http.client` frames the
request, sends `Host`, and reads chunked and keep-alive answers. TLS runs
over the channel through `ssl.SSLContext.wrap_bio` (a channel is not a
socket, so `wrap_socket` cannot take it).
"""

from __future__ import annotations

import http.client
import io
import re
import socket
import ssl
from typing import Callable, Dict, NamedTuple, Optional

import paramiko
from paramiko.common import OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED, OPEN_FAILED_CONNECT_FAILED

from ..errors import FAILED, Failure
from .step_shell import transport_died

# A health answer is a status line and a few headers; the cap only protects
# the laptop from an app that streams forever.
MAX_BODY = 1 << 20
USER_AGENT = "bluegreen-health"


class Response(NamedTuple):
    status: int
    reason: str
    headers: Dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    request: str  # what was sent, in a line: "GET /health HTTP/1.1, Host: app.example.com"

    @property
    def status_line(self) -> str:
        return f"HTTP/1.1 {self.status} {self.reason}".rstrip()


class ProbeError(Failure):
    """A probe got no usable answer; `reason` says why in a few words.

    A Failure (code 1), so one that escapes a health loop still prints as a
    clean error instead of a traceback.
    """

    def __init__(self, reason: str, where: Optional[str] = None):
        self.reason = reason
        self.where = where
        message = f"no answer from {where}: {reason}" if where else reason
        super().__init__(message, code=FAILED)


def describe_request(path: str, host_header: str) -> str:
    return f"GET {path} HTTP/1.1, Host: {host_header}"


def get(transport: paramiko.Transport, port: int, path: str, *, host_header: str = "_",
        timeout: float = 2.0, tls: bool = False, server_hostname: Optional[str] = None,
        bind: str = "127.0.0.1", verify: bool = False, cafile: Optional[str] = None,
        stats: Optional[dict] = None, lost: Optional[Callable[[str], Failure]] = None,
        host_name: str = "the host", user_agent: str = USER_AGENT,
        headers: Optional[Dict[str, str]] = None) -> Response:
    """GET ``path`` from ``bind:port`` on the host; ProbeError when there is no usable answer.

    With tls=True the SNI name is server_hostname, else the Host header when
    it is a real name; certificates are not checked unless verify=True
    (then against cafile or the system CAs).
    """
    if not path.startswith("/"):
        path = "/" + path
    for what, value in (("path", path), ("Host header", host_header)):
        if any(c in value for c in "\r\n\0 \t"):
            raise ValueError(f"HTTP {what} {value!r} contains whitespace or control characters")
    where = f"{bind}:{port}"
    if stats is not None:
        stats["channels"] = stats.get("channels", 0) + 1
    chan = open_channel(transport, bind, port, timeout, where, lost, host_name)
    sock = ChannelSocket(chan, timeout)
    try:
        if tls:
            sock = TlsChannelSocket(chan, timeout, _ssl_context(verify, cafile),
                                    server_hostname or _sni_from(host_header))
        conn = _Connection(host_header, sock, timeout)
        conn.request("GET", path, headers={"Host": host_header, "User-Agent": user_agent,
                                           "Accept": "*/*", "Connection": "close",
                                           **(headers or {})})
        answer = conn.getresponse()
        body = answer.read(MAX_BODY)
        headers: Dict[str, str] = {}
        for name, value in answer.getheaders():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return Response(answer.status, answer.reason, headers, body,
                        describe_request(path, host_header))
    except socket.timeout:
        raise ProbeError(f"no answer within {timeout:g}s", where) from None
    except (ssl.SSLError, http.client.HTTPException, OSError, EOFError,
            paramiko.SSHException) as exc:
        # The SSH connection dying closes the channel too: that is the
        # connection's failure (exit 3), not the app's (exit 1).
        if lost is not None and ended_with_the_connection(chan, transport):
            raise lost("during a health probe") from exc
        raise ProbeError(no_answer_reason(exc), where) from None
    finally:
        try:
            chan.close()
        except (OSError, EOFError, paramiko.SSHException):
            # A connection that died under the probe: closing it says so with
            # an EOFError, which must not hide the probe's own error.
            pass


def ended_with_the_connection(chan, transport) -> bool:
    """Whether the channel ended because the SSH connection did.

    The host ends a channel whose port closed with an EOF first; a dying
    connection closes every channel without one, a moment before paramiko
    says the transport is gone (transport_died waits for that moment).
    """
    return not chan.eof_received and transport_died(transport)


def no_answer_reason(exc) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {exc.reason or exc}"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the connection closed without an answer"
    if isinstance(exc, http.client.HTTPException):
        return f"not an HTTP answer: {type(exc).__name__} {exc}".strip()
    return f"channel failed: {exc}"


def open_channel(transport, bind, port, timeout, where, lost, host_name):
    try:
        return transport.open_channel("direct-tcpip", (bind, int(port)), ("127.0.0.1", 0),
                                      timeout=timeout)
    except paramiko.ChannelException as exc:
        if exc.code == OPEN_FAILED_CONNECT_FAILED:
            raise ProbeError("connection refused", where) from None
        if exc.code == OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED:
            raise Failure(
                f"the SSH server on {host_name} refuses port forwarding, which the "
                "health check needs",
                "set AllowTcpForwarding yes (or local) in the host's sshd_config",
                code=FAILED) from None
        raise ProbeError(f"channel refused: {exc.text}", where) from None
    except (paramiko.SSHException, EOFError, OSError) as exc:
        if lost is not None and transport_died(transport):
            raise lost("during a health probe") from exc
        raise ProbeError(f"no answer within {timeout:g}s", where) from None


class _Connection(http.client.HTTPConnection):
    """An HTTPConnection whose socket is already open: a channel, plain or TLS."""

    def __init__(self, host_header, sock, timeout):
        super().__init__(host_header if _sni_from(host_header) else "localhost",
                         timeout=timeout)
        self.sock = sock

    def connect(self):  # the channel is the connection; http.client must not dial
        pass


class _RawReader(io.RawIOBase):
    def __init__(self, source):
        self.source = source

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self.source.recv(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class ChannelSocket:
    """What http.client needs of a socket (sendall, makefile, close), over a channel."""

    def __init__(self, chan, timeout):
        self.chan = chan
        chan.settimeout(timeout)

    def sendall(self, data):
        self.chan.sendall(data)

    def recv(self, size):
        return self.chan.recv(size)

    def makefile(self, mode="rb", buffering=None):
        return io.BufferedReader(_RawReader(self))

    def close(self):
        # http.client closes its socket as soon as it has the head of a
        # "Connection: close" answer, before the body is read; the channel
        # is closed by get() once the answer is in.
        pass


class TlsChannelSocket(ChannelSocket):
    """TLS over a channel with in-memory BIOs; the handshake happens here."""

    def __init__(self, chan, timeout, context, server_hostname):
        super().__init__(chan, timeout)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing,
                                    server_hostname=server_hostname)
        self._retry(self.tls.do_handshake)

    def _retry(self, operation, *args):
        while True:
            try:
                result = operation(*args)
                self._flush()
                return result
            except ssl.SSLWantReadError:
                self._flush()
                data = self.chan.recv(65536)
                if data:
                    self.incoming.write(data)
                else:
                    self.incoming.write_eof()

    def _flush(self):
        data = self.outgoing.read()
        if data:
            self.chan.sendall(data)

    def sendall(self, data):
        self._retry(self.tls.write, data)

    def recv(self, size):
        try:
            return self._retry(self.tls.read, size)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""  # a clean close, or a server that skipped close_notify


def _sni_from(host_header: str) -> Optional[str]:
    name = host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header
    if not name or name == "_" or not re.fullmatch(r"[A-Za-z0-9.-]+", name):
        return None
    return name


def _ssl_context(verify: bool, cafile: Optional[str]) -> ssl.SSLContext:
    if verify:
        return ssl.create_default_context(cafile=cafile)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
