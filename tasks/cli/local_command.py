"""A command on this machine, bounded in time: hooks and SECRETS_CMD.

It runs in a process group of its own, so a timeout ends everything it
started (a hook's `curl`, a `sleep` in a script): SIGTERM to the group, and
SIGKILL 5 s later to whatever is left.
"""

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

KILL_AFTER = 5.0  # seconds between SIGTERM and SIGKILL to the group


@dataclass
class LocalResult:
    code: int  # the exit code; negative: killed by that signal
    seconds: float
    timed_out: bool = False
    stdout: bytes = b""  # only when captured (SECRETS_CMD): never printed
    stderr: bytes = b""

    @property
    def ok(self):
        return self.code == 0 and not self.timed_out


def run_local(argv, *, cwd, env, timeout, on_line=None):
    """Run ``argv``; ``on_line(text)`` gets each line of its output (stdout and
    stderr together) as it comes. Without ``on_line`` both are captured in
    memory and returned."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd or None, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT if on_line else subprocess.PIPE,
                            start_new_session=True)
    captured = {"stdout": [], "stderr": []}
    readers = [threading.Thread(target=_pump, args=(proc.stdout, on_line, captured["stdout"]),
                                daemon=True)]
    if on_line is None:
        readers.append(threading.Thread(target=_pump, args=(proc.stderr, None,
                                                            captured["stderr"]), daemon=True))
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        stop_group(proc)
    for reader in readers:
        # A child left in the background may hold the pipe: do not wait on it.
        reader.join(timeout=1.0)
    return LocalResult(code=proc.returncode, seconds=time.monotonic() - start,
                       timed_out=timed_out, stdout=b"".join(captured["stdout"]),
                       stderr=b"".join(captured["stderr"]))


def _pump(stream, on_line, sink):
    for raw in iter(stream.readline, b""):
        if on_line is None:
            sink.append(raw)
        else:
            on_line(raw.decode("utf-8", "replace").rstrip("\r\n"))
    stream.close()


def stop_group(proc, kill_after=KILL_AFTER):
    """SIGTERM to the process group; SIGKILL to it once ``kill_after`` seconds
    passed with any member left."""
    _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + kill_after
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader, so an empty group reads as gone
        if proc.returncode is not None and not _group_alive(proc.pid):
            return
        time.sleep(0.05)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
