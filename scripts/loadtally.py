"""What counts as a failed request, and the summary of a load (pure).

scripts/loadgen.py says what a failed request is and runs the load; this is
its pure half: the record of one request (Request), the classification of
an error or an answer, and the counts (tally, Summary, require). loadgen
re-exports every name, so `loadgen.X` keeps working. Standard library only.
"""

import http.client
import math
import socket
import ssl
from collections import Counter
from typing import Dict, List, NamedTuple, Optional, Tuple

LOOPBACK = "127.0.0.1"
KINDS = ("fresh", "keepalive")
METHODS = ("GET", "POST")
# The busybox sample app (scripts/loophost/) takes a POST only on a CGI
# path: busybox httpd answers 501 to a POST of a static file.
SAMPLE_POST_PATH = "/cgi-bin/slow?0"
POST_BODY = b"note=a+small+form+post&n=1"


class Request(NamedTuple):
    t: float  # seconds since the load started, when the request was sent
    latency: float  # seconds until the answer was read (or the error came)
    client: str  # "fresh" or "keepalive"
    method: str  # "GET" or "POST"
    status: Optional[int]  # HTTP status, None when no answer came
    colour: str  # X-Deploy-Colour, "" when absent
    version: str  # what a good answer names (version_named), else ""
    error: str  # "" when it succeeded, else the reason (see the module's docstring)
    reused: bool  # sent on a keep-alive connection that had served before
    retry_ok: bool = False  # a failed GET on a reused connection that one retry
    #                         on a new connection (what HTTP libraries do) fixed

    @property
    def ok(self):
        return not self.error


# --- what counts as failed (pure) ----------------------------------------------------


def classify_error(exc):
    """The reason a request that got no answer failed, in a word or two."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout"
    # RemoteDisconnected (closed before an answer) is a ConnectionResetError;
    # an EOF in the middle of a TLS handshake is the same thing seen through TLS.
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError,
                        ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return "reset"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, http.client.HTTPException):
        return "bad answer"
    return type(exc).__name__


def version_named(body):
    """The version a short one-line answer names: its last word ("v2" from the
    sample app's /version, and from "slow v2", its POST path); else ""."""
    text = body.strip()
    if not text or "\n" in text or len(text) > 60:
        return ""
    return text.split()[-1][:40]


def expected_location(redirect_to, path):
    """Where a redirect of `path` must point: `redirect_to` plus the same path."""
    return redirect_to.rstrip("/") + path


def classify_answer(status, headers, body, path, redirect_to=None, accept=None):
    """'' when an answer counts as a success, else why it does not.

    headers has lower-case names. A 3xx is a success only when `redirect_to`
    is given and Location is `expected_location(redirect_to, path)`.
    """
    if 200 <= status < 300:
        if accept is not None and not accept(status, headers, body):
            return "unexpected answer"
        return ""
    if 300 <= status < 400:
        if redirect_to and headers.get("location") == expected_location(redirect_to, path):
            return ""
        return "wrong redirect"
    if status >= 400:
        return f"http {status}"
    return "bad answer"  # 1xx as a final answer


# --- the summary (pure) ----------------------------------------------------------------


class Tally(NamedTuple):
    """Counts of one slice of the records (a client kind, a method, or all)."""
    sent: int
    failed: int
    reasons: Dict[str, int]  # failure reason -> count
    failed_on_reused: int  # failures on a reused keep-alive connection
    retry_ok: int  # of those, fixed by one retry on a new connection

    @property
    def ok(self):
        return self.sent - self.failed

    @property
    def timeouts(self):
        return self.reasons.get("timeout", 0)


def select(records, kinds=None, methods=None):
    """The records of the given client kinds and methods (None: all)."""
    _check_names(kinds, KINDS, "kinds")
    _check_names(methods, METHODS, "methods")
    return [r for r in records if (kinds is None or r.client in kinds)
            and (methods is None or r.method in methods)]


def _check_names(names, allowed, what):
    if names is None:
        return
    if isinstance(names, str) or not set(names) <= set(allowed):
        raise ValueError(f"{what}={names!r}: a tuple of {', '.join(allowed)}")


def tally(records, kinds=None, methods=None):
    rows = select(records, kinds, methods)
    reasons = Counter(r.error for r in rows if r.error)
    return Tally(len(rows), sum(reasons.values()), dict(reasons.most_common()),
                 sum(1 for r in rows if r.error and r.reused),
                 sum(1 for r in rows if r.retry_ok))


def versions_in_order(records):
    """The versions good answers named, in time order, repeats collapsed."""
    order = []
    for r in sorted(records, key=lambda r: r.t):
        if r.ok and r.version and (not order or order[-1] != r.version):
            order.append(r.version)
    return order


class Summary(NamedTuple):
    name: str
    total: Tally
    parts: Dict[Tuple[str, str], Tally]  # (client kind, method) -> counts, those sent only
    seconds: float  # how long the load ran
    skipped: int  # request slots not used because a client fell behind
    answers: Dict[Tuple[str, str], int]  # (colour, version) of good answers -> count
    versions: List[str]  # versions_in_order
    failures: List[Request]  # the first few failed requests, for the reader

    @property
    def rate(self):
        """Requests per second achieved."""
        return self.total.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def colours(self):
        """{colour: good answers}"""
        out = Counter()
        for (colour, _), n in self.answers.items():
            out[colour or "-"] += n
        return dict(out)

    def text(self):
        t = self.total
        lines = [f"{self.name}: {t.sent} requests sent in {self.seconds:.1f}s "
                 f"({self.rate:.0f}/s), {t.failed} failed"]
        for (kind, method), part in self.parts.items():
            line = f"  {kind + ' ' + method:<15} {part.sent:6d} sent, {part.failed} failed"
            if part.failed:
                line += ": " + ", ".join(f"{k} {v}" for k, v in part.reasons.items())
            if part.failed_on_reused:
                retried = (f"one retry fixed {part.retry_ok}" if method == "GET"
                           else "a POST is not retried")
                line += f" ({part.failed_on_reused} on a reused connection; {retried})"
            lines.append(line)
        lines.append(f"  timeouts {t.timeouts}; request slots not used (client behind) "
                     f"{self.skipped}")
        by = ", ".join(f"{colour or '-'} {version or '-'} x{n}" for (colour, version), n in
                       sorted(self.answers.items(), key=lambda kv: -kv[1]))
        lines.append(f"  answered by: {by or 'nobody'}")
        if self.versions:
            lines.append(f"  versions in order: {' '.join(self.versions)}")
        lines += [f"  failed: {r.t:7.2f}s {r.client} {r.method} {r.error} "
                  f"(colour {r.colour or '-'}, {r.latency * 1000:.0f} ms)"
                  for r in self.failures]
        return "\n".join(lines)

    __str__ = text

    def require(self, *, min_requests, max_failed=0, kinds=None, methods=None):
        """require() on this summary (see the module function)."""
        return require(self, min_requests=min_requests, max_failed=max_failed, kinds=kinds,
                       methods=methods)


def summarise(records, seconds=None, skipped=0, name="load", show_failures=8):
    """A Summary of `records`; seconds defaults to the span they cover."""
    records = sorted(records, key=lambda r: r.t)
    if seconds is None:
        seconds = max((r.t + r.latency for r in records), default=0.0)
    parts = {}
    for kind in KINDS:
        for method in METHODS:
            part = tally(records, (kind,), (method,))
            if part.sent:
                parts[(kind, method)] = part
    answers = Counter((r.colour, r.version) for r in records if r.ok)
    return Summary(name, tally(records), parts, seconds, skipped, dict(answers),
                   versions_in_order(records), [r for r in records if r.error][:show_failures])


def require(summary_or_records, *, min_requests, max_failed=0, kinds=None, methods=None):
    """Assert that at least `min_requests` of the given kinds and methods were
    sent and at most `max_failed` of them failed (None: do not judge failures,
    only count). Raises AssertionError with the whole breakdown; returns the
    Tally of that slice."""
    if min_requests < 1:
        raise ValueError(f"min_requests={min_requests}: at least 1, or '0 failed' means nothing")
    summary = summary_or_records
    if not isinstance(summary, Summary):
        summary = summarise(summary_or_records)
    part = _slice(summary, kinds, methods)
    which = " ".join(x for x in (" ".join(kinds or ()), "/".join(methods or ())) if x) or "all"
    problems = []
    if max_failed is not None and part.failed > max_failed:
        reasons = ", ".join(f"{k} {v}" for k, v in part.reasons.items())
        problems.append(f"{part.failed} of {part.sent} requests ({which}) failed ({reasons}); "
                        f"at most {max_failed} allowed")
    if part.sent < min_requests:
        problems.append(f"only {part.sent} requests ({which}) were sent, {min_requests} "
                        f"needed before their failures say anything")
    if problems:
        raise AssertionError("; ".join(problems) + ":\n" + summary.text())
    return part


def _slice(summary, kinds, methods):
    """The Tally of some (kind, method) parts of a Summary, added up."""
    _check_names(kinds, KINDS, "kinds")
    _check_names(methods, METHODS, "methods")
    sent = failed = reused = retry = 0
    reasons = Counter()
    for (kind, method), part in summary.parts.items():
        if (kinds is None or kind in kinds) and (methods is None or method in methods):
            sent += part.sent
            failed += part.failed
            reused += part.failed_on_reused
            retry += part.retry_ok
            reasons.update(part.reasons)
    return Tally(sent, failed, dict(reasons.most_common()), reused, retry)


def percentile(values, p):
    """The p-th percentile (0-100) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100.0 * len(ordered))))
    return ordered[rank - 1]
