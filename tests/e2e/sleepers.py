"""A step held open until the test lets it go: an event, not a guess.

A sample app started with slow=S (or a Dockerfile `RUN sleep S`) runs
`sleep S` as a process of its own, visible from the host (containers share
the host's pid numbering from the host's side). A test gives S a value no
one else uses (`unique_seconds()`), waits until that sleep runs (the step
is under way), does what it must while the step is held, then ends that
sleep (`let_go`): the script after it goes on at once. So a race that a
short sleep used to settle ("the other task tries within 6 s") becomes an
order the test sets.
"""

import os
import random
import signal
import time


def unique_seconds():
    """A sleep length (as the sample app writes it, `%g`) that no other
    process on the machine is likely to run: 900-999 s with two decimals."""
    return float(f"{random.randint(900, 999)}.{random.randint(11, 99)}")


def own_seconds(whole):
    """A sleep length that only this test process uses: ``whole`` seconds and
    decimals made of its pid (two runs at once never share one), e.g.
    47.001234567. Match it with ``sleeping_word`` (exact argv, as written)."""
    return f"{int(whole)}.{os.getpid():07d}{random.randint(10, 99)}"


def sleeping_word(word):
    """pids of processes whose argv ends `sleep WORD` (no reformatting): `sleep
    WORD`, or busybox's `/bin/busybox sleep WORD` of a Dockerfile's RUN."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            argv = _argv(entry)
            if len(argv) >= 2 and os.path.basename(argv[-2]) == "sleep" and argv[-1] == word:
                found.append(int(entry))
    return found


def _argv(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def sleeping(seconds):
    """pids of processes running exactly `sleep <seconds>` (busybox's or coreutils')."""
    word = f"{float(seconds):g}"
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            argv = _argv(entry)
            if len(argv) == 2 and os.path.basename(argv[0]) == "sleep" and argv[1] == word:
                found.append(int(entry))
    return found


def wait_sleeping(seconds, timeout=120, alive=None):
    """Wait until `sleep <seconds>` runs; its pids. `alive()` false ends the wait early."""
    deadline = time.monotonic() + timeout
    while True:
        pids = sleeping(seconds)
        if pids:
            return pids
        if time.monotonic() > deadline or (alive is not None and not alive()):
            raise AssertionError(f"no process ran `sleep {seconds:g}`")
        time.sleep(0.05)


def let_go(seconds):
    """End every `sleep <seconds>` (SIGKILL to those pids): the script that
    ran it goes on. Returns how many were ended."""
    ended = 0
    for pid in sleeping(seconds):
        try:
            os.kill(pid, signal.SIGKILL)
            ended += 1
        except ProcessLookupError:
            pass
    return ended
