"""tests/e2e/sleepers.own_seconds: test_stale_lock finds its own build's sleep,
never a concurrent run's (it failed once when run twice at once)."""

import subprocess
import sys
import time

from e2e.sleepers import own_seconds, sleeping_word


def test_a_concurrent_runs_sleep_is_not_taken_for_this_runs():
    ours = own_seconds(47)
    # Another run of the same test: another pid, so other decimals.
    other = subprocess.run([sys.executable, "-c", "import sys; sys.path[:0] = ['tests']; "
                            "from e2e.sleepers import own_seconds; print(own_seconds(47))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert other.startswith("47.") and other[:-2] != ours[:-2]
    theirs = subprocess.Popen(["sleep", other])
    mine = subprocess.Popen(["busybox", "sleep", ours])  # as a Dockerfile's RUN runs it
    try:
        deadline = time.monotonic() + 10  # until both have exec'd
        while (sleeping_word(ours), sleeping_word(other)) != ([mine.pid], [theirs.pid]) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sleeping_word(ours) == [mine.pid]
        assert sleeping_word(other) == [theirs.pid]
    finally:
        for proc in (theirs, mine):
            proc.kill()
            proc.wait()
