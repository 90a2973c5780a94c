"""What the operator sees: one line per phase with its duration, progress
while long phases run, a summary, and JSON lines for machines.

Human lines go to stdout, or to stderr when --json puts JSON on stdout.
Several hosts may report at once (--parallel, status): lines never interleave.
"""

import json as jsonlib
import sys
import threading
import time
from contextlib import contextmanager

_print_lock = threading.Lock()
_secrets = set()  # values never shown: SECRETS_CMD's and the env's (configuration/app_env.py)


def hide(values):
    """From now on, print these values as *** (this run's secrets)."""
    _secrets.update(v for v in values if v)


def masked(text):
    """``text`` with every secret value of this run replaced by ***, longest first
    (a secret that contains another is masked whole)."""
    if not _secrets or not isinstance(text, str):
        return text
    for value in sorted(_secrets, key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def emit(text, stream=None):
    with _print_lock:
        print(masked(text), file=stream or sys.stdout, flush=True)


def emit_json(obj):
    emit(jsonlib.dumps(obj, sort_keys=True, default=str))


class Phase:
    def __init__(self, name):
        self.name = name
        self.detail = ""
        self.seconds = 0.0
        self.ended = False

    def end(self):
        """End the phase before its block does (work that follows in the same
        round trip belongs to the next phase). Set by Reporter.phase."""


class Reporter:
    """Prints one host's progress; remembers phase durations for summaries."""

    def __init__(self, host_name, *, json_mode=False, verbose=False, quiet=False):
        self.host_name = host_name
        self.stream = sys.stderr if json_mode else sys.stdout
        self.verbose = verbose
        self.quiet = quiet
        self.phases = []
        self.width = max(len(host_name), 4)

    def line(self, text):
        if not self.quiet:
            emit(f"{self.host_name:<{self.width}}  {text}", self.stream)

    def progress(self, text):
        self.line(f"  | {text}")

    @contextmanager
    def phase(self, name):
        """Time a phase; print its line when it ends (with FAILED if it raised)."""
        phase = Phase(name)
        start = time.monotonic()

        def end(failed=False):
            if phase.ended:
                return
            phase.ended = True
            phase.seconds = time.monotonic() - start
            self.phases.append(phase)
            mark = "FAILED " if failed else ""
            self.line(f"{name:<9}{phase.seconds:6.2f}s  {mark}{phase.detail}".rstrip())

        phase.end = end
        try:
            yield phase
        except BaseException as exc:
            if getattr(exc, "blames_phase", True):
                end(failed=True)
            else:  # e.g. the app is not set up: the lock was not the problem
                phase.ended = True
            raise
        end()

    def durations(self):
        out = {}
        for phase in self.phases:
            out[phase.name] = round(out.get(phase.name, 0.0) + phase.seconds, 3)
        return out


def table(rows, headers):
    """A plain text table: columns as wide as their widest cell."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in cells)
