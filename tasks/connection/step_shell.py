"""The task's one remote shell: every step of a task runs in it, in order.

A task opens one SSH channel running `sh -s` and writes each step's script
to its stdin as a function whose body is a subshell, then calls it. The
login shell and the channel are paid for once per task (about 0.1 s on the
loopback host, more on a real link); each further step costs a few
milliseconds. The shell's process lives exactly as long as the task's
connection, which makes its pid the task's identity on the host (the lock
records it).

Each step's output is read line by line until the step ends. Marker lines
carry a random token of this task, so nothing a step prints (a docker
build, a git message, an app's log) can pass for one:

    ::<token> key value        one value (the last one of a key wins)
    ::<token> begin name       a block of text, up to
    ::<token> end name         (printed after a newline of its own)
    ::<token> exit <status>    the step ended (stdout; stderr gets a bare
                               ``::<token> exit``)

Scripts print markers as ``echo "$M key value"``: the shell exports ``M``
(``::<token>``) before the first step.
"""

from __future__ import annotations

import secrets
import select
import time
from typing import Callable, Dict, List, NamedTuple, Optional

import paramiko

from ..errors import FAILED, Failure


class ShellIdentity(NamedTuple):
    """The shell's process on the host (None where /proc did not say)."""

    pid: Optional[int] = None
    pgid: Optional[int] = None  # its process group (sshd's session)
    started: Optional[int] = None  # its start time, in clock ticks since boot
    parent: Optional[int] = None  # its parent's pid (sshd's session process)


class StepResult(NamedTuple):
    """What one step did: its exit status, its plain output, and its markers."""

    code: int
    stdout: str  # lines that are not markers, with their newlines
    stderr: str
    values: Dict[str, str]  # the last value of each key
    blocks: Dict[str, str]
    marks: tuple = ()  # every (key, value), in order, for keys that repeat

    @property
    def ok(self) -> bool:
        return self.code == 0


class StepReader:
    """Parses one step's output as it comes (pure: no I/O).

    feed(stream, line) takes one complete line of stdout or stderr; done
    says whether both streams have reached the step's end marker.
    """

    def __init__(self, token: str, on_line=None, on_mark=None):
        self.prefix = f"::{token} "
        self.end = f"::{token} exit"
        self.on_line, self.on_mark = on_line, on_mark
        self.values: Dict[str, str] = {}
        self.marks: List[tuple] = []
        self.blocks: Dict[str, str] = {}
        self.lines: Dict[str, List[str]] = {"stdout": [], "stderr": []}
        self.code: Optional[int] = None
        self.stderr_done = False
        self._block: Optional[str] = None
        self._block_lines: List[str] = []
        self._held: Dict[str, Optional[str]] = {"stdout": None, "stderr": None}

    @property
    def done(self) -> bool:
        return self.code is not None and self.stderr_done

    def feed(self, stream: str, line: str) -> None:
        if stream == "stderr":
            if line == self.end:
                self._flush("stderr", final=True)
                self.stderr_done = True
            else:
                self._plain("stderr", line)
            return
        if self._block is not None and line.startswith(f"{self.prefix}exit"):
            # The step ended inside a block (killed, `exit`, a `set -u` error).
            self._block, self._block_lines = None, []
        if self._block is not None:
            if line == f"{self.prefix}end {self._block}":
                if self._block_lines and self._block_lines[-1] == "":
                    self._block_lines.pop()  # the newline the end marker starts with
                self.blocks[self._block] = "".join(f"{text}\n" for text in self._block_lines)
                self._block, self._block_lines = None, []
            else:
                self._block_lines.append(line)
            return
        if not line.startswith(self.prefix):
            self._plain("stdout", line)
            return
        key, _, value = line[len(self.prefix):].partition(" ")
        value = value.strip()
        if key == "exit":
            self._flush("stdout", final=True)
            self.code = int(value) if value.isascii() and value.isdigit() else 255
        elif key == "begin":
            self._block, self._block_lines = value, []
        else:
            self.values[key] = value
            self.marks.append((key, value))
            if self.on_mark is not None:
                self.on_mark(key, value)

    def _plain(self, stream: str, line: str) -> None:
        # An empty line is held back: the end marker is printed after a
        # newline of its own, so the step's last empty line may be ours.
        self._flush(stream)
        if line == "":
            self._held[stream] = line
        else:
            self._emit(stream, line)

    def _flush(self, stream: str, final: bool = False) -> None:
        line = self._held[stream]
        self._held[stream] = None
        if line is None or (final and line == ""):
            return
        self._emit(stream, line)

    def _emit(self, stream: str, line: str) -> None:
        self.lines[stream].append(line)
        if self.on_line is not None:
            self.on_line(stream, line)

    def result(self) -> StepResult:
        return StepResult(
            code=self.code if self.code is not None else 255,
            stdout="".join(f"{line}\n" for line in self.lines["stdout"]),
            stderr="".join(f"{line}\n" for line in self.lines["stderr"]),
            values=dict(self.values), blocks=dict(self.blocks), marks=tuple(self.marks))


class Pending:
    """A step sent to the shell whose output is read later (StepShell.send)."""

    def __init__(self, shell: "StepShell", reader: "StepReader"):
        self.shell, self.reader = shell, reader
        self._result: Optional[StepResult] = None

    def result(self) -> StepResult:
        """The step's result; waits for it (a step sent later waits for it too)."""
        if self._result is None:
            self.shell.settle()
        return self._result


def step_input(script: str) -> str:
    """What is written to the shell for one step.

    The body is a subshell: its ``exit`` and ``set -u`` end with the step,
    not the task. Its stdin is /dev/null, so a command that reads stdin
    cannot swallow the next step.
    """
    # ":" keeps a script of only comments a valid function body.
    return ("bluegreen_step() (\n:\n" + script.rstrip("\n") + "\n)\n"
            "bluegreen_step </dev/null\n"
            "printf '\\n%s exit %d\\n' \"$M\" $?; printf '\\n%s exit\\n' \"$M\" >&2\n")


class StepShell:
    """One `sh -s` on the host for the whole task; run() is one step in it."""

    def __init__(self, transport: paramiko.Transport, name: str, stats: dict,
                 lost: Callable[[str], Failure], open_timeout: float = 10.0):
        self.transport, self.name, self.stats, self.lost = transport, name, stats, lost
        self.open_timeout = open_timeout
        self.token = secrets.token_hex(8)
        self.chan: Optional[paramiko.Channel] = None
        self._identity: Optional[ShellIdentity] = None
        self._identifying: Optional[StepReader] = None  # sent by start(), not yet read
        self._pending: Optional[Pending] = None  # sent by send(), not yet read
        self.alive = False
        self._buffers = {"stdout": b"", "stderr": b""}

    def start(self) -> None:
        """Open the channel and start the shell; its first answer is read later.

        The host's login shell takes its time before `sh -s` runs (0.1 s
        here, for root's ~/.bashrc); start() returns at once, so the task
        can do its own work meanwhile; ready() (or the first run()) waits.
        """
        try:
            self.chan = self.transport.open_session(timeout=self.open_timeout)
            self.stats["commands"] = self.stats.get("commands", 0) + 1
            self.chan.exec_command("sh -s")
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if not self.transport.is_active():
                raise self.lost("while starting the remote shell") from exc
            raise Failure(f"the host refused a new SSH session: {exc}",
                          "the host may limit sessions per connection (MaxSessions)") from exc
        self.alive = True
        init = (f"M='::{self.token}'; export M; BLUEGREEN_TASK_PID=$$; "
                "export BLUEGREEN_TASK_PID\n")
        try:
            self.chan.sendall(init.encode())
        except (paramiko.SSHException, EOFError, OSError) as exc:
            # The connection can go between opening the channel and this
            # first write (a cut right after connecting): exit 3, no traceback.
            self.alive = False
            if transport_died(self.transport):
                raise self.lost("while starting the remote shell") from exc
            raise Failure(f"starting the remote shell on {self.name} failed: {exc}",
                          "try again; if it persists, run `ssh` to the host by hand") from exc
        # pid, process group, start time (clock ticks since boot: with the
        # pid, it tells this shell from a later process given the same pid).
        # And its parent, sshd's session process: it ends with the connection,
        # while the shell may outlive it in the middle of a step. Fields 4, 5
        # and 22 of /proc/PID/stat, read by the shell itself (no process).
        self._identifying = self._send(
            "read -r x x x BLUEGREEN_PPID BLUEGREEN_PGID x x x x x x x x x x x x x x x x "
            "BLUEGREEN_START x 2>/dev/null < /proc/$BLUEGREEN_TASK_PID/stat; "
            "echo \"$M shell $BLUEGREEN_TASK_PID $BLUEGREEN_PGID $BLUEGREEN_START "
            "$BLUEGREEN_PPID\"")

    def ready(self) -> ShellIdentity:
        """Wait for the shell's first answer (once): who it is on the host."""
        if self._identifying is not None:
            reader, self._identifying = self._identifying, None
            result = self._finish(reader, time.monotonic() + self.open_timeout,
                                  self.open_timeout)
            fields = [int(f) for f in result.values.get("shell", "").split()
                      if f.isascii() and f.isdigit()]
            pid = fields[0] if fields else None
            self._identity = ShellIdentity(
                pid=pid, pgid=fields[1] if len(fields) > 1 else pid,
                started=fields[2] if len(fields) > 2 else None,
                parent=fields[3] if len(fields) > 3 else None)
        return self._identity or ShellIdentity()

    @property
    def pid(self) -> Optional[int]:
        return self.ready().pid

    @property
    def started(self) -> Optional[int]:
        return self.ready().started

    @property
    def parent(self) -> Optional[int]:
        return self.ready().parent

    def run(self, script: str, on_line=None, on_mark=None,
            timeout: Optional[float] = None) -> StepResult:
        """Run one step; its non-zero exit is a result, not an error.

        Raises Failure(code=1) when ``timeout`` passes, and the connection's
        Failure(code=3) when it dies under the step. A step stopped part-way
        (timeout, Ctrl-C, an exception from a callback) ends the shell and
        every process of it on the host; the next run() starts a new one.
        """
        self.settle()  # what was sent before comes first
        deadline = time.monotonic() + timeout if timeout is not None else None
        return self._finish(self._send(script, on_line, on_mark), deadline, timeout)

    def send(self, script: str) -> Pending:
        """Start one step and return at once: it runs on the host while the
        task goes on (probes, a wait). Its result is read by Pending.result(),
        or before the next step runs; one step is pending at a time."""
        self.settle()
        self._pending = Pending(self, self._send(script))
        return self._pending

    def settle(self) -> None:
        """Read the answers of what was sent and not read yet, in order."""
        self.ready()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending._result = self._finish(pending.reader, None, None)

    def _send(self, script: str, on_line=None, on_mark=None) -> StepReader:
        """Write one step to the shell; the reader gets its output."""
        if not self.alive:
            raise Failure(f"the remote shell on {self.name} has ended",
                          "start the task again", code=FAILED)
        self.stats["steps"] = self.stats.get("steps", 0) + 1
        try:
            self.chan.sendall(step_input(script).encode("utf-8"))
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self.kill()
            self._broken(exc)
        return StepReader(self.token, on_line, on_mark)

    def _finish(self, reader: StepReader, deadline: Optional[float],
                timeout: Optional[float]) -> StepResult:
        """Read a step's output until it ends."""
        finished = False
        try:
            while not reader.done:
                if self._read(reader, deadline):
                    continue
                if self.chan.closed or self.chan.eof_received:
                    self.alive = False
                    if transport_died(self.transport):
                        raise self.lost("while a step was running")
                    raise Failure(f"the remote shell on {self.name} ended in the middle "
                                  "of a step", "try again; `fab check` looks at the host",
                                  code=FAILED)
                if deadline is not None and time.monotonic() >= deadline:
                    raise Failure(
                        f"a step on {self.name} did not finish within {timeout:g}s",
                        "it was stopped (SIGTERM to the task's processes on the host)",
                        code=FAILED)
            finished = True
            return reader.result()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            self._broken(exc)
        finally:
            if not finished:
                self.kill()

    def _broken(self, exc: Exception):
        self.alive = False
        if transport_died(self.transport):
            raise self.lost("while a step was running") from exc
        raise Failure(f"running a step on {self.name} failed: {exc}",
                      "try again; if it persists, run `ssh` to the host by hand") from exc

    def _read(self, reader: StepReader, deadline: Optional[float]) -> bool:
        """Read what has arrived into the reader; False when nothing came."""
        got = False
        while self.chan.recv_ready():
            self._take("stdout", self.chan.recv(65536), reader)
            got = True
        while self.chan.recv_stderr_ready():
            self._take("stderr", self.chan.recv_stderr(65536), reader)
            got = True
        if got or reader.done:
            return True
        if self.chan.closed or self.chan.eof_received:
            return False
        wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
        select.select([self.chan], [], [], wait)
        return self.chan.recv_ready() or self.chan.recv_stderr_ready()

    def _take(self, stream: str, data: bytes, reader: StepReader) -> None:
        data = self._buffers[stream] + data
        *lines, self._buffers[stream] = data.split(b"\n")
        for line in lines:
            reader.feed(stream, line.decode("utf-8", errors="replace").rstrip("\r"))

    def kill(self) -> None:
        """Stop the shell and everything it started on the host; best effort, bounded.

        Without a pty, closing the channel would leave a running step going,
        and the SSH "signal" request is refused for root logins: a second
        channel sends SIGTERM to the shell's process group.
        """
        self.alive = False
        me = self._identity or ShellIdentity()  # never waits: the shell may not answer
        target = f"-{me.pgid}" if me.pgid else (str(me.pid) if me.pid else "")
        if target and self.transport.is_active():
            try:
                chan = self.transport.open_session(timeout=2.0)
                self.stats["commands"] = self.stats.get("commands", 0) + 1
                # The whole session too: timeout(1) runs a bounded build in
                # a process group of its own.
                session = f"pkill -TERM -s {me.pid} 2>/dev/null; " if me.pid else ""
                chan.exec_command(f"{session}kill -TERM -- {target} 2>/dev/null; true")
                chan.status_event.wait(2.0)
                chan.close()
            except Exception:
                pass
        self.close()

    def close(self) -> None:
        self.alive = False
        if self.chan is not None:
            try:
                self.chan.close()
            except Exception:
                pass


def transport_died(transport, wait: float = 0.2) -> bool:
    """Whether the transport is gone (paramiko closes channels a moment before it says so)."""
    end = time.monotonic() + wait
    while transport.is_active():
        if time.monotonic() >= end:
            return False
        time.sleep(0.01)
    return True
