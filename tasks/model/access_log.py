"""The app's nginx access log, as `release --watch` reads it: pure parsing and verdicts.

nginx writes one line per request in the format below (templates/nginx.conf.j2
declares it with ``log_format``); the watch reads the lines written during
its window, sums them up per colour and decides whether the new colour
answers well enough to keep.
"""

import re
from dataclasses import dataclass

# Space-separated; $upstream_response_time goes last because it can itself
# hold spaces ("0.004, 0.002" after a retry, "0.001 : 0.003" after an
# internal redirect).
FIELDS = ("$msec", "{colour}", "$status", "$request_method", "$upstream_response_time")
LINE_RE = re.compile(r"(?P<time>\d+(?:\.\d+)?) (?P<colour>blue|green) (?P<status>\d{3}) "
                     r"(?P<method>[A-Z]+)(?: (?P<upstream>.*))?")
UPSTREAM_TIME_RE = re.compile(r"\d+(?:\.\d+)?")


def log_format(colour_expr):
    """The ``log_format`` string; ``colour_expr`` is the colour, or the variable holding it."""
    return " ".join(colour_expr if f == "{colour}" else f for f in FIELDS)


@dataclass(frozen=True)
class Record:
    """One request: when it ended, which colour nginx chose, and how it went."""

    time: float  # seconds since the epoch ($msec)
    colour: str
    status: int
    method: str
    upstream: float  # seconds the colour took (all tries summed); None: not proxied

    @property
    def proxied(self):
        """True when a colour served it (not a redirect or file nginx answered itself)."""
        return self.upstream is not None


def parse_line(line):
    """A Record from one log line, or None for a line in another format."""
    m = LINE_RE.fullmatch(line.strip())
    if not m:
        return None
    times = UPSTREAM_TIME_RE.findall(m.group("upstream") or "")
    return Record(time=float(m.group("time")), colour=m.group("colour"),
                  status=int(m.group("status")), method=m.group("method"),
                  upstream=sum(float(t) for t in times) if times else None)


def parse_log(text, since=None, until=None):
    """The Records of ``text`` whose time is in [since, until); other lines skipped."""
    records = []
    for line in text.splitlines():
        record = parse_line(line)
        if record is None:
            continue
        if since is not None and record.time < since:
            continue
        if until is not None and record.time >= until:
            continue
        records.append(record)
    return records


@dataclass(frozen=True)
class ColourSummary:
    """What one colour served in a window."""

    requests: int
    errors: int  # 5xx answers
    p50: float  # upstream seconds; None when there were no requests
    p99: float

    @property
    def error_rate(self):
        return self.errors / self.requests if self.requests else 0.0


def percentile(values, fraction):
    """The nearest-rank percentile of ``values`` (None for none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil, at least the first
    return ordered[int(rank) - 1]


def summarize(records):
    """{colour: ColourSummary} over the requests a colour served (proxied ones only)."""
    by_colour = {}
    for record in records:
        if record.proxied:
            by_colour.setdefault(record.colour, []).append(record)
    summary = {}
    for colour, served in sorted(by_colour.items()):
        times = [r.upstream for r in served]
        summary[colour] = ColourSummary(
            requests=len(served), errors=sum(1 for r in served if r.status >= 500),
            p50=percentile(times, 0.50), p99=percentile(times, 0.99))
    return summary


REVERT, OK, TOO_FEW = "revert", "ok", "too few"


def watch_verdict(summary, new_colour, max_error_rate, min_requests):
    """"revert", "ok" or "too few": the judgement on the new colour in one window.

    Below ``min_requests`` (WATCH_MIN_REQUESTS) the window proves nothing
    either way, errors or not: the caller decides what "too few" means at the
    end of a watch. Above it, a 5xx share over ``max_error_rate``
    (WATCH_MAX_ERROR_RATE) reverts.
    """
    mine = summary.get(new_colour)
    if mine is None or mine.requests < min_requests:
        return TOO_FEW
    return REVERT if mine.error_rate > max_error_rate else OK
