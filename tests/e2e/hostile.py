"""Helpers for the hostile-conditions e2e tests (test_hostkeys, test_bad_input,
test_faults, test_secrets, test_sudo_user): a project alive for a whole
module, `fab` in the background, a light client load that counts failures,
and a snapshot of everything a task could change on the host.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import loadgen
import loophost as lh
from released import FAB_TIMEOUT, fab, module_project, no_traceback, output  # noqa: F401

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]


def error_lines(result):
    """The lines a failed task printed on stderr (Invoke's Exit message)."""
    return [line for line in result.stderr.splitlines() if line.strip()]


# --- fab in the background -----------------------------------------------------------


def fab_command(*args):
    """The command line Project.fab runs: this environment's fab, pointed at the repo."""
    return [str(Path(sys.executable).parent / "fab"), "-r", str(REPO_ROOT), *map(str, args)]


class Background:
    """`fab ARGS` started with Popen in the project dir; its output is read
    by threads so a test can wait for a line and kill the process mid-task."""

    def __init__(self, project, *args, env=None):
        cmd = fab_command(*args)
        self.args = args
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=project.dir, env=project.child_env(env),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.pid = self.proc.pid
        self.start_ticks = start_ticks(self.pid)
        self.lines = []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(s,), daemon=True)
                         for s in (self.proc.stdout, self.proc.stderr)]
        for t in self._readers:
            t.start()

    def _read(self, stream):
        for line in stream:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_line(self, text, timeout=120):
        """Block until a line containing `text` was printed; the line."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._alive_readers()):
                    raise AssertionError(f"fab {' '.join(map(str, self.args))} never printed "
                                         f"{text!r}:\n" + "\n".join(self.lines))
                self._cond.wait(min(left, 0.2))

    def _alive_readers(self):
        return any(t.is_alive() for t in self._readers)

    def wait(self, timeout=FAB_TIMEOUT):
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"fab {' '.join(map(str, self.args))} still running after "
                                 f"{timeout}s:\n" + self.text()) from None
        for t in self._readers:
            t.join(timeout=10)
        return code

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
        self.proc.wait(timeout=30)

    def text(self):
        with self._cond:
            return "\n".join(self.lines)


def start_ticks(pid):
    """A process's start time (clock ticks since boot, /proc/PID/stat field 22)."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def connection_child(sshd_pid, since_ticks, timeout=30):
    """The one per-connection sshd child of the listener `sshd_pid` started at
    or after `since_ticks`: the process serving a connection made by a fab
    started then. Fails unless there is exactly one."""
    deadline = time.monotonic() + timeout
    while True:
        found = []
        for pid in lh.child_pids(sshd_pid):
            try:
                if start_ticks(pid) >= since_ticks:
                    found.append(pid)
            except (OSError, IndexError, ValueError):
                continue
        if len(found) == 1:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"expected one new connection child of sshd {sshd_pid}, "
                                 f"found {found}")
        time.sleep(0.1)


# --- what clients see ---------------------------------------------------------------


def client_load(project, rate=20):
    """Light client traffic through nginx for the length of a fault: GET
    /version on a fresh connection each, 5 s timeouts (scripts/loadgen.py, a
    context manager; judge it afterwards with load.require(min_requests=N))."""
    return loadgen.Load(project.public_port, rate_fresh=rate, threads_fresh=2,
                        rate_keepalive=0, timeout=5.0, max_seconds=900, name="clients")


# --- what is on the host ------------------------------------------------------------


def snapshot(project, skip=(".git",)):
    """Everything a task could change for this app: every file under DEPLOY_DIR
    (path -> mode, size, sha256, mtime) but in directories named in ``skip``,
    the nginx file, the lock, the containers (name -> id, image, state, start
    time)."""
    files = {}
    root = project.deploy_dir
    if root.exists():
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in skip]
            for name in sorted(filenames) + sorted(dirnames):
                p = Path(dirpath) / name
                st = p.lstat()
                digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
                files[str(p.relative_to(root))] = (oct(st.st_mode), st.st_size, digest,
                                                   st.st_mtime_ns)
    nginx = project.nginx_file.read_text() if project.nginx_file.exists() else None
    containers = {}
    ids = lh.nonblank_lines(lh.docker("ps", "-aq", "--filter",
                                      f"label={lh.PROJECT_LABEL}={project.name}"))
    if ids:
        r = lh.docker("inspect", "--format",
                      "{{.Name}} {{.Id}} {{.Image}} {{.State.Status}} {{.State.StartedAt}}", *ids)
        for line in lh.nonblank_lines(r):
            name, cid, image, state, started = line.split()
            containers[name] = (cid, image, state, started)
    return {"files": files, "nginx": nginx, "containers": containers,
            "locked": (root / ".lock").exists(), "dir_exists": root.exists()}


def history(project):
    path = project.deploy_dir / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def state(project):
    return json.loads((project.deploy_dir / "state.json").read_text())


def serving(project):
    """(X-Deploy-Colour, body of /version) that clients get right now."""
    status, headers, body = project.get("/version")
    assert status == 200, f"the app does not answer through nginx: {status} {body}"
    return headers.get("x-deploy-colour"), body.strip()


def serving_after_switch(project, expected, bound=5.0):
    """What clients get once nginx's old workers stopped taking connections.

    `nginx -s reload` returns at once; the old workers keep accepting new
    connections until they act on the master's signal. The tool's check
    through nginx waits for one answer from the new colour, so right after
    `fab` exits a client can still meet an old worker (measured here: about
    50 ms on a busy machine). Poll for `expected` (colour, version) within
    `bound` seconds; return the last answer.
    """
    deadline = time.monotonic() + bound
    while True:
        answer = serving(project)
        if answer == expected or time.monotonic() > deadline:
            return answer
        time.sleep(0.02)
