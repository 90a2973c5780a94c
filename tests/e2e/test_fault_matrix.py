"""Every phase boundary, two faults each, under load (issue 15).

For each task (release, rollback, a canary, promote of a staged build, a
release while its --watch reads the log) and each of its phases, `fab` is
struck right after it printed that phase's line, in two ways: SIGKILL of
`fab` (the laptop dies) and SIGKILL of the sshd process serving its
connection (the network dies). Throughout, 110 requests/s on fresh and
keep-alive connections from several clients must all succeed (current
nginx: no keep-alive resets to excuse). After each strike: `status` names
what nginx serves, flags drift from state.json exactly when there is
some, and the next release succeeds (taking over the stale lock when one
was left) with nothing left over.

Every row must prove that the blow landed while the task ran: `fab` is
frozen (SIGSTOP) the moment its phase line is read and must still be
alive then; a killed `fab` must end by that SIGKILL (exit -9), a cut one
must report the lost connection (exit 3). A task that had finished first
(or had nothing left that needed its connection) is struck again with a
new attempt, at most ATTEMPTS times, else the row fails. After the
recovery, pruning must have held: no more than KEEP_RELEASES images of the
app beyond what the two colours run.

The rows run in three workers (threads, one project each, on the current
nginx's host) at the same time, as one module-scoped run (`matrix`); each
row is then its own pytest item that reports that row, so a failed row
hides none after it (a worker whose project cannot be recovered after a
failed row reports its remaining rows as not run, naming that row). The
measured table is printed (pytest -s) and written to the run's tmp dir as
matrix.md; docs/security.md holds a copy.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from faultkit import (Background, assert_nothing_left_over, assert_status_tells_the_truth,
                      held_by, load_report, owner, phase_line, served_colour, start_load,
                      state, wait_until)
import loophost as lh
from support.project import Project

# Each task's phases, in the order fab prints them. A row strikes right
# after the line of one phase.
TASKS = {
    "release": ["connect", "lock", "git", "build", "start", "health", "pre-switch",
                "switch", "verify", "record"],
    # A rollback's record step drops the lock too: once its "record" line is
    # printed nothing is left that needs the connection, so no blow can land
    # after it. The "verify" rows strike right before that step.
    "rollback": ["connect", "lock", "health", "switch", "verify"],
    "canary": ["connect", "lock", "git", "build", "start", "health", "pre-switch",
               "switch", "verify", "record"],
    "promote": ["connect", "lock", "health", "pre-switch", "switch", "verify", "record"],
    # Struck while the release's --watch reads the access log (after its record).
    "watch": ["watch"],
}
# The command line of each task (a canary is a release with --canary).
COMMANDS = {"release": ["release"], "rollback": ["rollback"],
            "canary": ["release", "--canary", "20"], "promote": ["promote"],
            "watch": ["release", "--watch", "30"]}
FAULTS = ["kill", "cut"]
ROWS = [(task, phase) for task, phases in TASKS.items() for phase in phases]
ITEMS = [(task, phase, fault) for task, phase in ROWS for fault in FAULTS]
# A row whose task ended before the blow is struck again, up to this often.
ATTEMPTS = 5
# Rows after whose line one short step is left (a rollback's record, which
# drops the lock too; a canary's or promote's unlock): fab often has that
# step's answer before the freeze lands, on a quick host every time. There,
# a task that ended first every time must have ended cleanly (exit 0,
# recorded, unlocked: the checks below), not fail the row.
THIN = {("rollback", "verify"), ("canary", "record"), ("promote", "record")}
KEEP_RELEASES = 2

# Three workers, each with its own project: the rows split about evenly in time.
WORKERS = [
    [("release", p) for p in TASKS["release"]],
    [("rollback", p) for p in TASKS["rollback"]] + [("promote", p) for p in TASKS["promote"]]
    + [("watch", "watch")],
    [("canary", p) for p in TASKS["canary"]],
]


def sshd_serving(pid, ssh_port):
    """The sshd processes holding the server end of process `pid`'s SSH
    connection to 127.0.0.1:ssh_port (found with `ss`, by the client's port)."""
    out = subprocess.run(["ss", "-Htnp"], capture_output=True, text=True).stdout
    client_ports = []
    for line in out.splitlines():
        if f"pid={pid}," in line and f"127.0.0.1:{ssh_port} " in line + " ":
            local = line.split()[3]
            client_ports.append(local.rsplit(":", 1)[1])
    pids = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[3] == f"127.0.0.1:{ssh_port}" and \
                fields[4].rsplit(":", 1)[1] in client_ports and "sshd" in line:
            for part in line.split("pid=")[1:]:
                pids.add(int(part.split(",")[0]))
    return sorted(pids)


class EndedFirst(Exception):
    """The task was over (or had nothing left needing its connection) when
    the blow came: the strike proves nothing, strike again."""


def frozen(pid, timeout=10):
    """Wait until process `pid` is stopped (state T in /proc/PID/stat)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                    return True
        except OSError:
            return False
        time.sleep(0.002)
    return False


class FreezingBackground(Background):
    """fab in the background, stopped (SIGSTOP) by the thread that reads its
    output the moment a line matches `freeze_on`: no hand-over to another
    thread first (after a canary's or promote's "record" line only its
    unlock is left, a few milliseconds)."""

    freeze_on = None  # a compiled pattern, set right after the start
    frozen_at_line = None

    def _read(self, stream):
        for line in stream:
            pattern = self.freeze_on
            if pattern is not None and self.frozen_at_line is None and pattern.match(line):
                try:
                    os.kill(self.pid, signal.SIGSTOP)
                except ProcessLookupError:
                    pass
                self.frozen_at_line = line
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()


def strike(fault, bg, ssh_port):
    """fab was frozen (SIGSTOP) the moment its phase line was read: check it
    still runs, strike; returns fab's exit code. Raises EndedFirst when the
    task had already finished (nothing was struck)."""
    if bg.proc.poll() is not None:  # exited before the freeze: reaped now
        bg.wait()
        raise EndedFirst(f"fab had exited ({bg.proc.returncode}) before the strike")
    assert frozen(bg.pid), f"fab {bg.pid} did not stop"
    if fault == "kill":
        os.kill(bg.pid, signal.SIGKILL)
        code = bg.wait()
        # Only our SIGKILL ends a process with -9: it was alive when struck.
        assert code == -signal.SIGKILL, f"exit {code}:\n{bg.text()}"
        return code
    sessions = sshd_serving(bg.pid, ssh_port)
    if not sessions:
        os.kill(bg.pid, signal.SIGCONT)
        code = bg.wait()
        assert code == 0, f"no sshd serves fab {bg.pid}, which failed:\n{bg.text()}"
        raise EndedFirst("fab had closed its connection before the strike")
    for pid in sessions:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_until(lambda: not any(lh.pid_alive(pid) for pid in sessions), timeout=10)
    os.kill(bg.pid, signal.SIGCONT)
    code = bg.wait()
    if code == 0:
        raise EndedFirst("fab needed its connection no more after the strike (exit 0)")
    assert code == 3 and "lost the SSH connection" in bg.text(), f"exit {code}:\n{bg.text()}"
    return code


def fresh_version(project, counter):
    counter[0] += 1
    label = f"m{counter[0]}"
    project.app.commit(label)
    return label


def run_rows(project, rows, ssh_port, results):
    """Run this worker's rows in order; each row's outcome (and the load it
    saw) goes into results[(task, phase, fault)] (this worker's own dict)."""
    counter = [1]
    # Bounded, but never shorter than a slow machine takes for a worker's rows.
    load = start_load(project.public_port, max_seconds=3600)
    broken = None
    try:
        for task, phase in rows:
            for fault in FAULTS:
                key = (task, phase, fault)
                row = {"task": task, "phase": phase, "fault": fault, "project": project.name}
                results[key] = row
                if broken:
                    row["error"] = f"not run: the project could not be recovered after {broken}"
                    continue
                start = load.now()
                try:
                    strike_row(project, task, phase, fault, ssh_port, counter, row)
                except BaseException as exc:  # noqa: B902 (reported by the row's own item)
                    row["error"] = f"{type(exc).__name__}: {exc}"[:20000]
                    if not recover(project, counter):
                        broken = "/".join(key)
                row["window"] = (start, load.now())
    finally:
        records = load.stop()
        for row in results.values():
            if "window" in row:
                lo, hi = row.pop("window")
                row.update(load_report([r for r in records if lo <= r.t < hi]))


def recover(project, counter):
    """After a failed row: try to bring the project back (unlock, send a
    canary's clients home, release). True when it serves a release again."""
    try:
        project.fab("unlock", timeout=240)
        if "canary=" in project.nginx_file.read_text().split("\n", 1)[0]:
            project.fab("rollback", timeout=240)
        fresh_version(project, counter)
        return project.fab("release", timeout=240).returncode == 0
    except BaseException:  # noqa: B902
        return False


def prepare(project, task, counter):
    """What a row's task needs first: a new commit, or a staged one to promote."""
    if task in ("release", "canary", "promote", "watch"):
        fresh_version(project, counter)
    if task == "promote":
        r = project.fab("release", "--no-switch", timeout=240)
        assert r.returncode == 0, r.stdout + r.stderr


def strike_row(project, task, phase, fault, ssh_port, counter, row):
    for attempt in range(1, ATTEMPTS + 1):
        row["attempts"] = attempt
        prepare(project, task, counter)
        bg = FreezingBackground(project, *COMMANDS[task])
        if phase == "watch":  # the watch's first line: it reads the log now
            bg.freeze_on = re.compile(r".* is new, ")
            bg.wait_line(" is new, ")
        else:
            bg.freeze_on = re.compile(rf"^\S+\s+{re.escape(phase)}\s+\d+\.\d\ds")
            phase_line(bg, phase)
        try:
            row["fab_exit"] = strike(fault, bg, ssh_port)
            break
        except EndedFirst as exc:
            row.setdefault("ended_first", []).append(str(exc))
            assert "Traceback" not in bg.text(), bg.text()
            withdraw_canary(project, row)
    else:
        if (task, phase) not in THIN:
            raise AssertionError(f"the task ended before the blow in all {ATTEMPTS} "
                                 f"attempts: {row['ended_first']}")
        # Ended, each time, with its work done: never by an error of its own.
        assert all("exited (" not in why or "exited (0)" in why
                   for why in row["ended_first"]), row["ended_first"]
        row["fab_exit"] = 0  # done before every blow: what follows checks it ended cleanly
    text = bg.text()
    assert "Traceback" not in text, text
    # A step fab sent before the blow (the unlock after "record") may still
    # run: look once the struck task's shell on the host has ended.
    held = owner(project)
    if held and held.get("host_pid"):
        wait_until(lambda: not os.path.exists(f"/proc/{held['host_pid']}")
                   or lh.pid_alive(held["host_pid"]) is False, timeout=30)
    row["lock_left"] = owner(project) is not None
    assert not (row["fab_exit"] == 0 and row["lock_left"]), "a task that ended cleanly left its lock"

    data = assert_status_tells_the_truth(project)
    if row["lock_left"]:
        assert data["lock"] and f"pid {bg.pid}" in data["lock"]["holder"], data
        assert held_by(owner(project), bg), owner(project)
    row["drift"] = bool(data.get("drift"))
    withdraw_canary(project, row)

    label = fresh_version(project, counter)
    before = served_colour(project)
    r = project.fab("release", timeout=240)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "Traceback" not in out, out
    row["took_over"] = row.get("took_over") or "took over the lock of" in r.stdout
    assert row["took_over"] == row["lock_left"], out
    target = "green" if before == "blue" else "blue"
    assert wait_until(lambda: project.get("/version")[2].strip() == label, timeout=5), out
    assert served_colour(project) == target
    assert owner(project) is None
    assert state(project)["live"] == target
    assert_nothing_left_over(project)
    # Pruning held: the newest KEEP_RELEASES, plus at most what the two colours run.
    images = lh.app_image_ids(project.name)
    row["images"] = len(images)
    assert len(images) <= KEEP_RELEASES + 2, (sorted(images), out)


def withdraw_canary(project, row):
    """A canary left running (recorded or not): a release refuses to rebuild
    it under its clients, so everyone goes back first."""
    if "canary=" in project.nginx_file.read_text().split("\n", 1)[0]:
        r = project.fab("rollback", timeout=240)
        assert r.returncode == 0, r.stdout + r.stderr
        row["took_over"] = row.get("took_over") or "took over the lock of" in r.stdout
        row["canary_withdrawn"] = True


def table(rows):
    lines = ["| task | phase | fault | fab exit | lock left | drift | next release | "
             "requests sent | failed (fresh / keep-alive) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fault = "SIGKILL fab" if r["fault"] == "kill" else "SSH cut"
        nxt = "error" if "error" in r else ("ok, took the lock over" if r.get("took_over")
                                            else "ok")
        if r.get("canary_withdrawn"):
            nxt = "rollback of the canary, then " + nxt
        code = r.get("fab_exit")
        if r.get("ended_first"):
            code = f"{code} (struck again: ended first {len(r['ended_first'])}x)"
        lines.append(f"| {r['task']} | {r['phase']} | {fault} | {code} | "
                     f"{'yes' if r.get('lock_left') else 'no'} | "
                     f"{'yes' if r.get('drift') else 'no'} | {nxt} | {r.get('sent', '?')} | "
                     f"{r.get('failed', '?')} ({r.get('fresh_failed', '?')} / "
                     f"{r.get('keepalive_failed', '?')}) |")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory, loophost_current):
    """Every row, run once for the module by three workers side by side:
    {(task, phase, fault): row}."""
    base = tmp_path_factory.mktemp("fault-matrix")
    projects = []
    try:
        for i, _ in enumerate(WORKERS):
            app = lh.SampleApp(base / f"app{i}")
            app.commit("v1")
            p = Project(base / f"p{i}", loophost_current, app)
            projects.append(p)
            p.set(PRE_SWITCH_CMD="true", KEEP_RELEASES=KEEP_RELEASES)
            r = p.fab("setup", timeout=240)
            assert r.returncode == 0, r.stdout + r.stderr
            p.app.commit("m1")
            r = p.fab("release", timeout=240)  # both colours run: rollback has a target
            assert r.returncode == 0, r.stdout + r.stderr

        per_worker = [{} for _ in WORKERS]
        threads = [threading.Thread(target=run_rows, args=(p, rows, loophost_current.ssh_port,
                                                           per_worker[i]))
                   for i, (p, rows) in enumerate(zip(projects, WORKERS))]
        started = time.monotonic()
        # The reader threads that freeze fab share the GIL with the load's
        # threads: hand it over often, so a freeze is not held back.
        interval = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)
        for t in threads:
            t.start()
        for t in threads:
            t.join(3600)
        sys.setswitchinterval(interval)
        results = {k: v for worker in per_worker for k, v in worker.items()}
        rows = [results[key] for key in ITEMS if key in results]
        text = table(rows)
        (base / "matrix.md").write_text(text + "\n")
        (base / "matrix.json").write_text(json.dumps(rows, indent=1))
        print(f"\nfault matrix: {len(rows)} rows in {time.monotonic() - started:.0f}s\n{text}")
        yield results
    finally:
        for p in projects:
            p.remove()


@pytest.mark.parametrize("task, phase, fault", ITEMS,
                         ids=[f"{t}-{p}-{f}" for t, p, f in ITEMS])
def test_fault_at_every_phase_boundary_under_load(matrix, task, phase, fault):
    row = matrix.get((task, phase, fault))
    assert row is not None, "the row never ran (its worker did not finish)"
    assert "error" not in row, row["error"]
    assert row["sent"] >= 100, row  # the load ran through the row
    assert row["failed"] == 0, row
