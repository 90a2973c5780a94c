"""A bounded HTTP load on one loopback port, recording every request.

Two kinds of client, measured apart because they fail differently during a
reload (see shared NOTES, nginx):

- ``fresh``: one new TCP connection per request (``Connection: close``), as
  a crowd of first-time visitors. A graceful reload must cost them nothing.
- ``keepalive``: a few ``http.client.HTTPConnection`` objects reused for
  request after request, as browsers and API clients do. An old nginx worker
  that closes an idle connection during a reload can reset the next request
  on it; such a request was sent on a reused connection (``reused=True``),
  which is what HTTP libraries retry.

Standard library only: the benchmark (bench/zero_downtime.py) and the e2e
guard (tests/e2e/test_zero_downtime.py) both use it, so the guard measures
the same thing the benchmark reports. Traffic goes to 127.0.0.1 only, and
every run is bounded in time and in count.
"""

import http.client
import math
import socket
import threading
import time
from typing import List, NamedTuple, Optional

LOOPBACK = "127.0.0.1"


class Request(NamedTuple):
    t: float  # seconds since the load's clock started, when the request was sent
    latency: float  # seconds until the answer was read (or the error came)
    client: str  # "fresh" or "keepalive"
    status: Optional[int]  # HTTP status, None on a connection error
    colour: str  # X-Deploy-Colour, "" when absent
    version: str  # the body of the sample app's /version, "" when absent
    error: str  # "" when it succeeded; refused, reset, timeout, http 5xx, ...
    reused: bool  # sent on a keep-alive connection that had served before
    retry_ok: bool = False  # a failure on a reused connection that one retry on a
    #                         new connection (what browsers and HTTP libraries do) fixed

    @property
    def ok(self):
        return not self.error


def classify(exc):
    """A connection error in a word or two."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
                        http.client.RemoteDisconnected)):
        return "reset"
    if isinstance(exc, http.client.HTTPException):
        return "bad answer"
    return type(exc).__name__


class Load:
    """Send GET ``path`` to 127.0.0.1:``port`` from both kinds of client until stop().

    rate_fresh / rate_keepalive are requests per second for each kind (0
    turns a kind off), spread over ``threads_fresh`` threads and
    ``keepalive_connections`` connections. Each thread keeps its own
    schedule; a thread that falls behind (a request that hung) skips the
    slots it missed instead of bursting, and counts them in ``skipped``.
    Hard bounds: ``max_seconds`` and ``max_requests`` stop the load whatever
    the caller does.
    """

    def __init__(self, port, path="/version", *, rate_fresh=200.0, rate_keepalive=100.0,
                 threads_fresh=8, keepalive_connections=4, timeout=2.0,
                 max_seconds=600.0, max_requests=1_000_000, host_header=None):
        self.port, self.path = int(port), path
        self.rate_fresh, self.rate_keepalive = float(rate_fresh), float(rate_keepalive)
        self.threads_fresh = max(1, int(threads_fresh))
        self.keepalive_connections = max(1, int(keepalive_connections))
        self.timeout = float(timeout)
        self.max_seconds, self.max_requests = float(max_seconds), int(max_requests)
        self.headers = {"Host": host_header} if host_header else {}
        self.records: List[Request] = []
        self.skipped = {"fresh": 0, "keepalive": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self.t0 = None

    # -- the clock shared with the caller (switch times, plots)

    def now(self):
        return time.monotonic() - self.t0

    # -- running

    def start(self):
        self.t0 = time.monotonic()
        self._deadline = self.t0 + self.max_seconds
        plan = []
        if self.rate_fresh > 0:
            plan += [("fresh", i, self.threads_fresh, self.rate_fresh)
                     for i in range(self.threads_fresh)]
        if self.rate_keepalive > 0:
            plan += [("keepalive", i, self.keepalive_connections, self.rate_keepalive)
                     for i in range(self.keepalive_connections)]
        for kind, index, count, rate in plan:
            interval = count / rate
            t = threading.Thread(target=self._loop, args=(kind, interval, index * interval / count),
                                 name=f"load-{kind}-{index}", daemon=True)
            self._threads.append(t)
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        """Stop sending, wait for requests in flight; returns the records in time order."""
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 2)
        with self._lock:
            self.records.sort(key=lambda r: r.t)
            return list(self.records)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _running(self):
        return (not self._stop.is_set() and time.monotonic() < self._deadline
                and len(self.records) < self.max_requests)

    def _loop(self, kind, interval, offset):
        conn = None
        slot = self.t0 + offset
        try:
            while self._running():
                now = time.monotonic()
                if now < slot:
                    if self._stop.wait(slot - now):
                        break
                elif now - slot > interval:
                    missed = int((now - slot) / interval)
                    self.skipped[kind] += missed
                    slot += missed * interval
                slot += interval
                if kind == "fresh":
                    record = self._one(None, kind, reused=False)
                else:
                    if conn is None:
                        conn = http.client.HTTPConnection(LOOPBACK, self.port,
                                                          timeout=self.timeout)
                    # http.client reconnects by itself after the server closed
                    # the connection; only a live socket makes this a reuse.
                    record = self._one(conn, kind, reused=conn.sock is not None)
                    if record.error:
                        conn.close()  # a client starts over on a new connection
                        conn = None
                        if record.reused and record.status is None:
                            # Counted as failed all the same; the retry only
                            # says whether a retrying client would have noticed.
                            retry = self._one(None, kind, reused=False)
                            record = record._replace(retry_ok=retry.ok)
                with self._lock:
                    self.records.append(record)
        finally:
            if conn is not None:
                conn.close()

    def _one(self, conn, kind, reused):
        fresh = conn is None
        if fresh:
            conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=self.timeout)
        sent = time.monotonic()
        status, colour, version, error = None, "", "", ""
        try:
            headers = dict(self.headers)
            if fresh:
                headers["Connection"] = "close"
            conn.request("GET", self.path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            status = resp.status
            colour = resp.getheader("X-Deploy-Colour", "") or ""
            if status < 400:
                version = body.decode("utf-8", "replace").strip()[:40]
            if status >= 400:
                error = f"http {status}"
        except (OSError, http.client.HTTPException) as exc:
            error = classify(exc)
        finally:
            if fresh:
                conn.close()
        done = time.monotonic()
        return Request(sent - self.t0, done - sent, kind, status, colour, version, error, reused)


def summarise(records, kind=None):
    """Counts for one client kind (or all): sent, ok, failed, failures by error."""
    rows = [r for r in records if kind is None or r.client == kind]
    errors = {}
    for r in rows:
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
    failed = sum(errors.values())
    return {"sent": len(rows), "ok": len(rows) - failed, "failed": failed, "errors": errors,
            "failed_on_reused": sum(1 for r in rows if r.error and r.reused),
            "retry_ok": sum(1 for r in rows if r.retry_ok)}


def percentile(values, p):
    """The p-th percentile (0-100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100.0 * len(ordered))))
    return ordered[rank - 1]
