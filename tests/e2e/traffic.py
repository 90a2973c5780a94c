"""Client traffic for the e2e tests: HTTPS requests with SNI, and steady load.

Every request opens a fresh connection (no keep-alive): a graceful nginx
reload must not fail a single one of those (see NOTES.md). Traffic goes to
127.0.0.1 only, at a bounded rate.
"""

import http.client
import socket
import ssl
import threading
import time

import loophost as lh

LOOPBACK = "127.0.0.1"


def tls_context(cafile):
    """A client context that trusts only `cafile` and checks the host name."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class _LoopbackHTTPS(http.client.HTTPSConnection):
    """HTTPS to `server_name` (SNI, Host, certificate check) at 127.0.0.1:port."""

    def __init__(self, server_name, port, context, timeout):
        super().__init__(server_name, port, context=context, timeout=timeout)

    def connect(self):
        sock = socket.create_connection((LOOPBACK, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def https_get(port, path, server_name, context, timeout=5.0):
    """GET https://server_name:port/path at 127.0.0.1 -> (status, headers, body).

    headers has lower-case names. Never raises: a refused connection, a TLS
    failure or a timeout gives status None and the error as body.
    """
    conn = _LoopbackHTTPS(server_name, port, context, timeout)
    return lh.fetch(conn, path, {"Connection": "close"})


class Load:
    """Background threads that call `request()` until stopped; a context manager.

    request() returns (status, headers, body). A request fails when status
    is not 200 or accept(status, headers, body) is false (e.g. an answer
    from another app). ok, failed (a list of (time, answer)) and colours
    (how many answers named each X-Deploy-Colour) are read after the block.
    """

    def __init__(self, request, threads=2, pause=0.02, name="load", accept=None):
        self.request = request
        self.accept = accept or (lambda status, headers, body: True)
        self.threads = threads
        self.pause = pause
        self.name = name
        self.ok = 0
        self.failed = []
        self.colours = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = []

    @property
    def total(self):
        return self.ok + len(self.failed)

    def _run(self):
        while not self._stop.is_set():
            answer = self.request()
            status, headers, body = answer
            with self._lock:
                if status == 200 and self.accept(*answer):
                    self.ok += 1
                    colour = headers.get("x-deploy-colour", "?")
                    self.colours[colour] = self.colours.get(colour, 0) + 1
                else:
                    self.failed.append((time.monotonic(), answer))
            self._stop.wait(self.pause)

    def start(self):
        for i in range(self.threads):
            t = threading.Thread(target=self._run, name=f"{self.name}-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._workers:
            t.join(timeout=30)

    def wait_for(self, count, timeout=30):
        """Block until at least `count` requests were made (or timeout)."""
        deadline = time.monotonic() + timeout
        while self.total < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def summary(self):
        shown = [a for _, a in self.failed[:5]]
        return (f"{self.name}: {self.ok} ok, {len(self.failed)} failed, colours "
                f"{self.colours}; first failures: {shown}")


def settled(request, expected, timeout=3.0, interval=0.02):
    """Poll request() -> (status, headers, body) until expected(*answer); return the last.

    For checks right after a switch. `fab` returns once nginx serves the
    new file, but nginx lets the old workers take new connections until it
    tells them to quit, about 100 ms after the new workers start (measured
    here: one request in five that followed `fab release` at once still got
    the old colour, the next one 50 ms later the new).
    """
    deadline = time.monotonic() + timeout
    while True:
        answer = request()
        if expected(*answer) or time.monotonic() > deadline:
            return answer
        time.sleep(interval)
