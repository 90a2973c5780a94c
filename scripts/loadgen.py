"""The one HTTP load generator: the benchmark, the e2e tests and the demo.

A bounded load on one loopback port that records every request, and ONE
definition of a failed request, so that "0 failed" means the same thing
wherever it is printed. A request failed when:

- the connection was refused, reset (also a connection closed before the
  answer, or a TLS handshake cut off), or it timed out (counted apart:
  ``timeout`` is a failure of its own, never folded into ``reset``);
- the answer could not be read (``bad answer``: a garbled status line, a
  body cut short) or the TLS handshake failed (``tls``);
- the answer was HTTP 4xx or 5xx (``http 502``, ...);
- it was a redirect the caller did not expect (``wrong redirect``): a 3xx
  is a success only when the caller named where redirects must go
  (``redirect_to``, e.g. ``https://shop.test:8443``) and the Location is
  that plus the very path asked for;
- a 2xx that the caller's ``accept(status, headers, body)`` rejects
  (``unexpected answer``: another app's page, say).

Two kinds of client, measured apart because they fail differently during an
nginx reload (docs/security.md):

- ``fresh``: one new TCP (or TLS) connection per request
  (``Connection: close``), as a crowd of first-time visitors. A graceful
  reload must cost them nothing.
- ``keepalive``: connections reused request after request, as browsers and
  API clients do; every ``post_every``-th request on them is a POST with a
  small body (to ``post_path``), because a POST is not retried by browsers
  after a reset. When a request on a reused connection fails without an
  answer, it counts as failed all the same; a GET is then tried once more
  on a new connection only to record whether a retrying client would have
  noticed (``retry_ok``).

A summary (``Summary``) counts sent and failed per client kind and method,
failures by reason, timeouts apart, the rate achieved and which colour and
version answered over time; ``require()`` is the one assertion the tests
make, and it fails when fewer than ``min_requests`` were sent, so that
"0 failed" cannot come from a load that never ran.

Standard library only (the demo runs it with the system's python3), and
traffic goes to loopback only; every load is bounded in time and count and
stops by itself.

The pure half (Request, the classification, the counts) is loadtally.py;
its names are re-exported here. This module opens the connections and runs
the load.
"""

import http.client
import itertools
import ipaddress
import socket
import ssl
import threading
import time
from typing import List

from loadtally import (  # noqa: F401  (the pure half; callers use loadgen.X)
    LOOPBACK, KINDS, METHODS, SAMPLE_POST_PATH, POST_BODY, Request, classify_error,
    version_named, expected_location, classify_answer, Tally, select, tally,
    versions_in_order, Summary, summarise, require, percentile,
)


# --- connections -------------------------------------------------------------------------


def tls_context(cafile):
    """A client context that trusts only `cafile` and checks the host name."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class LoopbackHTTPS(http.client.HTTPSConnection):
    """HTTPS to `server_name` (SNI, Host, certificate check) at address:port."""

    def __init__(self, server_name, port, context, timeout, address=LOOPBACK):
        super().__init__(server_name, port, context=context, timeout=timeout)
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def require_loopback(address):
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"address={address!r}: load goes to loopback only (127.0.0.0/8, ::1)")
    return address


# --- the load ------------------------------------------------------------------------------


class Load:
    """Requests to `address`:`port` from both kinds of client until stop().

    GET `path` from fresh connections at `rate_fresh` requests/s over
    `threads_fresh` threads, and from `keepalive_connections` reused
    connections at `rate_keepalive` in all, every `post_every`-th of those a
    POST to `post_path` (None: no POSTs). A rate of 0 turns a kind off.
    `host` sets the Host header (and, with `cafile` or `tls`, makes the load
    HTTPS with that name as SNI, checked against the CA). Each thread keeps
    its own schedule; one that falls behind (a request that hung) skips the
    slots it missed instead of bursting, and counts them in `skipped`. Hard
    bounds: `max_seconds` and `max_requests` stop it whatever the caller does.
    """

    def __init__(self, port, path="/version", *, host=None, cafile=None, tls=None,
                 rate_fresh=200.0, rate_keepalive=100.0, threads_fresh=8,
                 keepalive_connections=4, post_path=None, post_every=4, timeout=2.0,
                 max_seconds=600.0, max_requests=1_000_000, redirect_to=None, accept=None,
                 address=LOOPBACK, name="load", distinct_clients=False):
        self.port, self.path, self.host = int(port), path, host
        # Every request a new client (its own User-Agent): nginx's split_clients
        # picks a canary's colour per client, and a loopback load has one address.
        self.distinct_clients = distinct_clients
        self._clients = itertools.count()
        self.address = require_loopback(address)
        self.tls = tls or (tls_context(cafile) if cafile else None)
        if self.tls is not None and not host:
            raise ValueError("host: HTTPS needs the server name (SNI)")
        self.rate = {"fresh": float(rate_fresh), "keepalive": float(rate_keepalive)}
        self.threads = {"fresh": max(1, int(threads_fresh)),
                        "keepalive": max(1, int(keepalive_connections))}
        self.post_path, self.post_every = post_path, max(1, int(post_every))
        self.timeout = float(timeout)
        self.max_seconds, self.max_requests = float(max_seconds), int(max_requests)
        self.redirect_to, self.accept, self.name = redirect_to, accept, name
        self.records: List[Request] = []
        self.skipped = {"fresh": 0, "keepalive": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._issued = 0
        self.t0 = self.stopped = None

    def now(self):
        """Seconds on the load's clock (switch times, plots)."""
        return time.monotonic() - self.t0

    # -- running

    def start(self):
        self.t0 = time.monotonic()
        self._deadline = self.t0 + self.max_seconds
        for kind in KINDS:
            if self.rate[kind] <= 0:
                continue
            count = self.threads[kind]
            interval = count / self.rate[kind]
            for i in range(count):
                self._threads.append(threading.Thread(
                    target=self._loop, args=(kind, interval, i * interval / count),
                    name=f"{self.name}-{kind}-{i}", daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        """Stop sending, wait for requests in flight; the records in time order."""
        self._stop.set()
        for t in self._threads:
            t.join(2 * self.timeout + 2)  # a GET and its one retry
        if self.stopped is None:
            self.stopped = time.monotonic()
        return self.snapshot()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def snapshot(self):
        with self._lock:
            return sorted(self.records, key=lambda r: r.t)

    @property
    def sent(self):
        """Requests made so far (answered or failed)."""
        return len(self.records)

    def wait_for(self, count, timeout=30.0):
        """Block until at least `count` requests were made (or timeout)."""
        deadline = time.monotonic() + timeout
        while self.sent < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def summary(self):
        if self.t0 is None:
            return summarise([], seconds=0.0, name=self.name)
        # The load ran until stop() or its own bound, whichever came first.
        records = self.snapshot()
        end = min(self.stopped or time.monotonic(), self._deadline)
        if len(records) >= self.max_requests:
            end = min(end, self.t0 + max(r.t + r.latency for r in records))
        return summarise(records, seconds=end - self.t0,
                         skipped=sum(self.skipped.values()), name=self.name)

    def require(self, *, min_requests, max_failed=0, kinds=None, methods=None):
        """require() on this load's summary (see the module function)."""
        return require(self.summary(), min_requests=min_requests, max_failed=max_failed,
                       kinds=kinds, methods=methods)

    def _may_send(self):
        """True, and one request counted against max_requests, while the load runs."""
        if self._stop.is_set() or time.monotonic() >= self._deadline:
            return False
        with self._lock:
            if self._issued >= self.max_requests:
                return False
            self._issued += 1
            return True

    def _loop(self, kind, interval, offset):
        conn, n = None, 0
        slot = self.t0 + offset
        try:
            while True:
                now = time.monotonic()
                if now < slot:
                    if self._stop.wait(slot - now):
                        break
                elif now - slot > interval:
                    missed = int((now - slot) / interval)
                    with self._lock:
                        self.skipped[kind] += missed
                    slot += missed * interval
                slot += interval
                if not self._may_send():
                    break
                if kind == "fresh":
                    record = self._one(None, kind, "GET", reused=False)
                else:
                    n += 1
                    method = "POST" if self.post_path and n % self.post_every == 0 else "GET"
                    if conn is None:
                        conn = self._connection()
                    # http.client reconnects by itself after the server closed
                    # the connection; only a live socket makes this a reuse.
                    record = self._one(conn, kind, method, reused=conn.sock is not None)
                    if record.error:
                        conn.close()  # a client starts over on a new connection
                        conn = None
                        if record.reused and record.status is None and method == "GET":
                            retry = self._one(None, kind, "GET", reused=False)
                            record = record._replace(retry_ok=retry.ok)
                with self._lock:
                    self.records.append(record)
        finally:
            if conn is not None:
                conn.close()

    def _connection(self):
        if self.tls is not None:
            return LoopbackHTTPS(self.host, self.port, self.tls, self.timeout, self.address)
        return http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)

    def _one(self, conn, kind, method, reused):
        fresh = conn is None
        if fresh:
            conn = self._connection()
        path = self.post_path if method == "POST" else self.path
        headers = {"Host": self.host} if self.host and self.tls is None else {}
        if self.distinct_clients:
            headers["User-Agent"] = f"client-{next(self._clients)}"
        if fresh:
            headers["Connection"] = "close"
        body = None
        if method == "POST":
            body = POST_BODY
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        sent = time.monotonic()
        status, colour, version, error = None, "", "", ""
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            status = resp.status
            answer_headers = {k.lower(): v for k, v in resp.getheaders()}
            colour = answer_headers.get("x-deploy-colour", "")
            error = classify_answer(status, answer_headers, text, path,
                                    self.redirect_to, self.accept)
            if not error and status < 300:
                version = version_named(text)
        except Exception as exc:  # noqa: BLE001  every failure is a record, never a dead thread
            error = classify_error(exc)
        finally:
            if fresh:
                conn.close()
        return Request(sent - self.t0, time.monotonic() - sent, kind, method, status, colour,
                       version, error, reused)
