"""Helpers for the fault tests (test_stale_lock, test_fault_matrix,
test_host_faults): a load of at least 100 requests/s from several clients,
`fab` watched phase by phase, the two ways a task dies (SIGKILL of `fab`,
its SSH connection cut on the host side), and the checks that follow
every fault: what `status` says, what is left on the host.
"""

import json
import os
import re
import signal
import subprocess
import time

import loadgen
import loophost as lh
from hostile import Background, history, serving, state  # noqa: F401
from released import status_json, wait_until  # noqa: F401 (faultkit's users take them from here)

# Fresh connections and keep-alive ones, from several clients: 110 requests/s.
RATE_FRESH, RATE_KEEPALIVE = 70, 40


def start_load(port, rate_fresh=RATE_FRESH, rate_keepalive=RATE_KEEPALIVE, max_seconds=900):
    return loadgen.Load(port, rate_fresh=rate_fresh, rate_keepalive=rate_keepalive,
                        threads_fresh=4, keepalive_connections=3, timeout=5.0,
                        max_seconds=max_seconds, max_requests=1_000_000).start()


def load_report(records):
    """{sent, failed, fresh_failed, keepalive_failed, errors} of a stopped load."""
    failed = [r for r in records if not r.ok]
    return {"sent": len(records), "failed": len(failed),
            "fresh_failed": sum(1 for r in failed if r.client == "fresh"),
            "keepalive_failed": sum(1 for r in failed if r.client == "keepalive"),
            "errors": [f"{r.t:.2f}s {r.client} {r.error}" for r in failed[:8]]}


def phase_line(bg, phase, timeout=120):
    """Wait until `fab` printed the line of `phase` ending (`host  phase  1.23s ...`)."""
    pattern = re.compile(rf"^\S+\s+{re.escape(phase)}\s+\d+\.\d\ds")
    deadline = time.monotonic() + timeout
    while True:
        with bg._cond:
            for line in bg.lines:
                if pattern.match(line):
                    return line
            if time.monotonic() > deadline or (bg.proc.poll() is not None
                                               and not bg._alive_readers()):
                raise AssertionError(f"fab never ended phase {phase!r}:\n" + "\n".join(bg.lines))
            bg._cond.wait(0.05)


def owner(project):
    path = project.deploy_dir / ".lock" / "owner.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def held_by(record, bg):
    """True when the lock's owner record names the process of `bg` (a
    Background): its pid and its start time, so a later process that got
    the same pid is never taken for it."""
    return bool(record) and record.get("pid") == bg.pid and \
        record.get("pid_start") == bg.start_ticks


def proc_field(pid, index):
    """Field `index` (1-based, as in proc(5)) of /proc/PID/stat; None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return rest[index - 3]


def sshd_session_of(project, bg, timeout=30):
    """The sshd process serving `bg`'s connection: the parent of the shell the
    lock names (owner.json host_pid), checked to be an sshd started after fab."""
    deadline = time.monotonic() + timeout
    while True:
        rec = owner(project)
        if held_by(rec, bg) and rec.get("host_pid"):
            parent = int(proc_field(rec["host_pid"], 4) or 0)
            if parent > 1:
                with open(f"/proc/{parent}/cmdline", "rb") as f:
                    assert f.read().startswith(b"sshd"), parent
                return parent
        if time.monotonic() > deadline:
            raise AssertionError(f"no lock of fab pid {bg.pid}: {rec}\n{bg.text()}")
        time.sleep(0.02)


def connection_of(loophost, bg, timeout=30):
    """The sshd session process of `bg`'s connection before it holds a lock:
    the one child of the listener started after `bg` (see hostile.connection_child)."""
    from hostile import connection_child

    return connection_child(loophost.sshd_pid, bg.start_ticks, timeout=timeout)


def strike(fault, bg, project, loophost):
    """SIGKILL `fab`, or cut its SSH connection (SIGKILL to the sshd process
    serving it); returns fab's exit code."""
    if fault == "kill":
        bg.kill(signal.SIGKILL)
        return bg.proc.returncode
    session = sshd_session_of(project, bg, timeout=0.5) if held_by(owner(project), bg) \
        else connection_of(loophost, bg)
    os.kill(session, signal.SIGKILL)
    return bg.wait()


def image_tags(project):
    r = lh.docker("images", "--format", "{{.Repository}}:{{.Tag}}",
                  f"bluegreen-{project.name}")
    return sorted(lh.nonblank_lines(r))


def served_colour(project):
    """The colour nginx serves right now, from a client's answer (during a
    canary, the colour everyone but the canary's share gets, from its file)."""
    status, headers, body = project.get("/version")
    assert status == 200, (status, body)
    header = re.search(r"^# bluegreen app=\S+ live=(\w+) canary=", project.nginx_file.read_text(),
                       re.M)
    return header.group(1) if header else headers.get("x-deploy-colour")


def assert_status_tells_the_truth(project):
    """`status` names the colour nginx serves, flags drift from state.json
    exactly when there is some, and shows the lock as it is on the host."""
    data = status_json(project)
    served = served_colour(project)
    recorded = state(project).get("live")
    assert data["live"] == served, (data, served)
    # A colour drifts when its container runs another commit than state.json
    # records for it (a killed release's build, before the next task's
    # takeover puts the recorded release back): status says so per colour.
    runs_other = {colour for colour, c in data["colours"].items()
                  if c["container"].startswith(("running", "restarting")) and c["commit"]
                  and c["commit"] != c.get("recorded_commit")}
    assert {colour for colour, c in data["colours"].items() if c.get("drift")} == runs_other, \
        (data, runs_other)
    assert bool(data.get("drift")) == (recorded != served or bool(runs_other)), \
        (data, recorded, served)
    return data


def assert_nothing_left_over(project):
    """Only the blue and green containers; images only the two colour tags
    and one per commit of the app (no stray or nameless ones). Pruning to
    KEEP_RELEASES is not on this branch: once it is, also assert
    len(by_commit) <= KEEP_RELEASES here."""
    services = sorted(c["service"] for c in project.containers())
    assert set(services) <= {"blue", "green"} and len(services) == len(set(services)), services
    tags = image_tags(project)
    known = set(project.app.commits.values()) | set(commits_of(project))
    by_commit = [t.rsplit(":", 1)[1] for t in tags if not t.endswith((":blue", ":green"))]
    assert set(by_commit) <= known, (tags, known)
    assert not [t for t in tags if t.endswith(":<none>")], tags
    stale = project.deploy_dir / ".lock.stale"
    assert not stale.exists()


def commits_of(project):
    r = subprocess.run(["git", "-C", str(project.app.repo), "rev-list", "--all"],
                       capture_output=True, text=True)
    return r.stdout.split()


def run_ok(project, *args, timeout=240):
    r = project.fab(*args, timeout=timeout)
    text = r.stdout + r.stderr
    assert r.returncode == 0 and "Traceback" not in text, f"fab {args} -> {r.returncode}\n{text}"
    return r


def processes_matching(text):
    """pids whose command line contains `text` (to check that nothing was left
    running; never used to signal anything)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read().replace(b"\0", b" "):
                        found.append(int(entry))
            except OSError:
                continue
    return found


__all__ = ["Background", "subprocess"]
