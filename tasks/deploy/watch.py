"""--watch: read the app's access log after a switch, and judge the new colour.

Every second, one step in the task's remote shell reads only the bytes the
log gained since the last read (the byte offset is kept here), so a long
watch of a busy app costs the host a `wc`, a `tail` and a `head` a second.
The lines are summed up per colour (accesslog.summarize), printed, and
judged (accesslog.watch_verdict); what to do with a verdict is the
caller's: revert, promote a canary, or keep a release.
"""

import time
from dataclasses import dataclass, field

from ..commands.base import block, mark, q
from ..model import access_log
from ..model.access_log import REVERT, parse_log, summarize, watch_verdict

# A trailing window besides the whole watch: a colour that turns bad after a
# long good start is judged on what it does now, not diluted by its past.
RECENT_SECONDS = 10.0


def read_step(settings, offset):
    """Print the log's size and the bytes from ``offset`` up to it; the shell's CPU.

    nginx writes each line with one write(2) to a file opened O_APPEND, so
    the bytes up to a size read before them end at a line's end. A size
    below the offset means the log was rotated: read the new file from 0.
    /proc/$$/stat fields 14-17 are the shell's user and system time and
    those of its waited-for children (every step runs in a child): the
    watch's cost on the host, in clock ticks.
    """
    path = q(settings.access_log_path)
    return f"""off={int(offset)}
size=$(wc -c 2>/dev/null < {path} || echo 0)
if [ "$size" -lt "$off" ]; then off=0; fi
{mark('from', '$off')}
{mark('size', '$size')}
{mark('cpu', "$(cut -d' ' -f14-17 /proc/$$/stat 2>/dev/null) $(getconf CLK_TCK 2>/dev/null || echo 100)")}
{mark('now', '$(date +%s.%N)')}
if [ "$size" -gt "$off" ]; then
  {block('log', f'tail -c +$((off + 1)) {path} | head -c $((size - off))')}
fi
"""


def cpu_seconds(value):
    """Seconds of CPU from the `cpu` marker (four tick counts and the tick rate)."""
    parts = (value or "").split()
    if len(parts) != 5 or not all(p.isascii() and p.isdigit() for p in parts):
        return None
    return sum(int(p) for p in parts[:4]) / int(parts[4])


def describe(colour, summary):
    """One colour's figures in a few words."""
    if summary is None or not summary.requests:
        return f"{colour} 0 req"
    return (f"{colour} {summary.requests} req {summary.errors} 5xx "
            f"p50 {ms(summary.p50)} p99 {ms(summary.p99)}")


def ms(seconds):
    return "-" if seconds is None else f"{seconds * 1000:.0f}ms"


def figures(summary):
    """{colour: {requests, errors, error_rate, p50, p99}} for history and --json."""
    return {colour: {"requests": s.requests, "errors": s.errors,
                     "error_rate": round(s.error_rate, 4),
                     "p50": s.p50, "p99": s.p99} for colour, s in summary.items()}


def judge(records, new, max_error_rate, min_requests):
    """The verdict on ``new`` over the whole watch and over its last seconds.

    Either window with enough requests and too many 5xx reverts; otherwise
    the whole watch decides ok or too few.
    """
    whole = watch_verdict(summarize(records), new,
                                    max_error_rate, min_requests)
    if whole == REVERT or not records:
        return whole
    latest = max(r.time for r in records)
    recent = [r for r in records if r.time >= latest - RECENT_SECONDS]
    if watch_verdict(summarize(recent), new, max_error_rate,
                               min_requests) == REVERT:
        return REVERT
    return whole


@dataclass
class Outcome:
    verdict: str  # REVERT, OK or TOO_FEW
    new: str
    old: str
    seconds: float  # how long it watched
    summary: dict = field(default_factory=dict)  # colour -> ColourSummary
    host_cpu: float = None  # CPU seconds the host's shell spent on the watch
    # Seconds from the new colour's first 5xx (nginx's time of it) to the read
    # that saw enough of them to revert (the host's clock both).
    detected_after_first_5xx: float = None

    def as_dict(self, max_error_rate, min_requests):
        mine = self.summary.get(self.new)
        return {"verdict": self.verdict, "new": self.new, "old": self.old,
                "seconds": round(self.seconds, 2), "colours": figures(self.summary),
                "new_error_rate": round(mine.error_rate, 4) if mine else 0.0,
                "max_error_rate": max_error_rate, "min_requests": min_requests,
                "host_cpu_seconds": None if self.host_cpu is None else round(self.host_cpu, 3),
                "detected_after_first_5xx": (None if self.detected_after_first_5xx is None
                                             else round(self.detected_after_first_5xx, 2))}

    def sentence(self, max_error_rate, min_requests):
        mine = self.summary.get(self.new)
        n, e = (mine.requests, mine.errors) if mine else (0, 0)
        if self.verdict == REVERT:
            return (f"{self.new} answered {e} of {n} requests with 5xx "
                    f"({e / n:.0%} > WATCH_MAX_ERROR_RATE={max_error_rate:g})")
        if self.verdict == access_log.TOO_FEW:
            return (f"{self.new} served {n} requests in {self.seconds:.0f}s, fewer than "
                    f"WATCH_MIN_REQUESTS={min_requests}: too few to judge")
        return (f"{self.new} answered {e} of {n} requests with 5xx in {self.seconds:.0f}s "
                f"(within WATCH_MAX_ERROR_RATE={max_error_rate:g})")


def watch(session, *, new, old, seconds, clock=time.monotonic, sleep=time.sleep):
    """Watch the access log for ``seconds``; stop early on a revert verdict.

    Prints a line a second: per colour, the last second's requests, 5xx
    and upstream p50/p99. Returns an Outcome; Ctrl-C propagates.
    """
    s, rep = session.settings, session.reporter
    first = session.run(read_step(s, 0))
    offset = int(first.values.get("size") or 0)
    cpu_start = cpu_seconds(first.values.get("cpu"))
    rep.line(f"watch    {seconds:g}s of {s.access_log_path}: {new} is new, {old} was live; "
             f"revert above WATCH_MAX_ERROR_RATE={s.watch_max_error_rate:g} over at least "
             f"WATCH_MIN_REQUESTS={s.watch_min_requests}")
    start = clock()
    records, verdict, cpu_end = [], access_log.TOO_FEW, cpu_start
    first_error = host_now = None  # nginx's time of the new colour's first 5xx; the host's now
    tick = start
    while True:
        tick += 1.0
        sleep(max(0.0, min(tick, start + seconds) - clock()))
        result = session.run(read_step(s, offset))
        offset = int(result.values.get("size") or offset)
        cpu_end = cpu_seconds(result.values.get("cpu")) or cpu_end
        fresh = parse_log(result.blocks.get("log", ""))
        records += fresh
        elapsed = clock() - start
        host_now = seconds_or_none(result.values.get("now"))
        if first_error is None:
            first_error = next((r.time for r in fresh if r.colour == new and r.status >= 500
                                and r.proxied), None)
        last = summarize(fresh)
        rep.progress(f"{elapsed:4.0f}s  " + "; ".join(
            describe(c, last.get(c)) for c in (new, old)))
        verdict = judge(records, new, s.watch_max_error_rate, s.watch_min_requests)
        if verdict == REVERT or elapsed >= seconds:
            break
    return Outcome(verdict=verdict, new=new, old=old, seconds=clock() - start,
                   summary=summarize(records),
                   host_cpu=(cpu_end - cpu_start) if None not in (cpu_start, cpu_end) else None,
                   detected_after_first_5xx=(
                       host_now - first_error if verdict == REVERT
                       and None not in (host_now, first_error) else None))


def seconds_or_none(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
