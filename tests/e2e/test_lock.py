"""The host's lock: a held lock stops a second task with exit 4 and names
its holder; `unlock` clears it; `--wait-lock` waits for a lock that goes away.
"""

import json
import re
import os
import signal
import socket
import subprocess
import time

import pytest

from hostile import Background, start_ticks
from released import (FAB_TIMEOUT, container_states, fab, history_json,
                      module_project, output, serves, status_json, version)
from sleepers import let_go, unique_seconds, wait_sleeping


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, loophost):
    """A project after `fab setup` (v1 live in blue)."""
    for project in module_project(request, tmp_path_factory, loophost):
        fab(project, "setup")
        yield project


def hold_lock(project, **record):
    """Take the lock by hand, as another operator's task would have."""
    lock = project.deploy_dir / ".lock"
    lock.mkdir()
    owner = {"pid": 4242, "command": "fab -H prod release --branch hotfix",
             "started_at": int(time.time()) - 150, "user": "alice",
             "machine": "ci-runner-7", **record}
    (lock / "owner.json").write_text(json.dumps(owner) + "\n")
    return lock


def test_a_held_lock_stops_release_with_exit_4_naming_its_holder(shared_project):
    p = shared_project
    lock = hold_lock(p)
    try:
        history_before = len(history_json(p))
        r = fab(p, "release", code=4)
        out = output(r)
        assert "locked by alice@ci-runner-7" in out
        assert "`fab -H prod release --branch hotfix`" in out  # the holder's command
        # Its age: 150 s when the lock was made, and counting while fab starts
        # and connects (12 s on a loaded machine once: "for 2m42s").
        assert "pid 4242" in out and re.search(r"for 2m[3-5][0-9]s", out)
        assert "unlock" in out  # what to do
        # Nothing ran: no build, no history entry, the lock is still alice's.
        assert container_states(p) == {"blue": "running"}
        assert len(history_json(p)) == history_before
        assert json.loads((lock / "owner.json").read_text())["user"] == "alice"

        # Every task that changes things respects it.
        for args in (("rollback",), ("switch", "--to", "green"), ("repair",)):
            r = fab(p, *args, code=4)
            assert "alice@ci-runner-7" in output(r), args

        # status shows the holder (and does not need the lock).
        s = status_json(p)
        assert "alice@ci-runner-7" in s["lock"]["holder"]
        assert s["lock"]["command"] == "fab -H prod release --branch hotfix"
        assert "lock: held by alice@ci-runner-7" in fab(p, "status").stdout
    finally:
        r = fab(p, "unlock")
    assert "lock held by alice@ci-runner-7" in r.stdout and "lock removed" in r.stdout
    assert not lock.exists()
    assert "lock is free" in fab(p, "unlock").stdout  # nothing to do, still exit 0
    assert status_json(p)["lock"] is None


def test_release_wait_lock_waits_for_a_lock_that_goes_away(shared_project):
    p = shared_project
    lock = hold_lock(p, user="bob", command="fab -H prod rollback")
    live = status_json(p)["live"]
    sha = p.app.commit("v2")

    # The lock goes away once the release says it waits for it (an event,
    # not a timer that a slow start of fab could outrun).
    bg = Background(p, "release", "--wait-lock", "120")
    try:
        bg.wait_line("waiting for the lock: bob@ci-runner-7")
        assert bg.proc.poll() is None
        subprocess.run(["rm", "-rf", str(lock)])
        code = bg.wait(timeout=FAB_TIMEOUT)
    finally:
        if bg.proc.poll() is None:
            bg.kill()
        subprocess.run(["rm", "-rf", str(lock)])
    out = bg.text()
    assert code == 0 and "Traceback" not in out, out
    target = "green" if live == "blue" else "blue"
    assert f"released {target}: {sha[:12]}" in out
    serves(p, "v2", colour=target)

    # A wait that is too short still ends in exit 4.
    hold_lock(p, user="carol")
    try:
        started = time.monotonic()
        r = fab(p, "release", "--wait-lock", "1.5", code=4)
        assert time.monotonic() - started >= 1.5
        assert "carol@ci-runner-7" in output(r)
    finally:
        fab(p, "unlock")


def test_a_release_in_progress_holds_the_lock_against_a_second_one(shared_project):
    p = shared_project
    live = status_json(p)["live"]
    target = "green" if live == "blue" else "blue"
    # The new version's start sleeps until the test lets it go (sleepers.py),
    # so the first release sits in its health gate holding the lock for as
    # long as the others take to try, however slow the machine.
    hold = unique_seconds()
    slow = p.app.commit("v3-slow", slow=hold)
    first = Background(p, "release", env={"BLUEGREEN_HEALTH_TIMEOUT": "600"})
    waiting = None
    try:
        owner = p.deploy_dir / ".lock" / "owner.json"
        wait_sleeping(hold, timeout=FAB_TIMEOUT, alive=lambda: first.proc.poll() is None)
        record = json.loads(owner.read_text())
        assert record["pid"] == first.pid and record["command"].endswith("release")
        assert record["pid_start"] == first.start_ticks  # this very process

        r = fab(p, "release", code=4)
        assert f"pid {first.pid} running `fab" in output(r)
        assert first.proc.poll() is None, "the first release ended before the second tried"

        # Meanwhile a fix lands; a release that waits for the lock ships it
        # right after the slow one.
        fixed = p.app.commit("v4")
        waiting = Background(p, "release", "--wait-lock", "600")
        waiting.wait_line("waiting for the lock")
        assert first.proc.poll() is None
        assert let_go(hold) >= 1  # the slow version starts; the first release ends
        first.wait()
        assert waiting.wait() == 0, waiting.text()
    finally:
        for bg in (first, waiting):
            if bg is not None and bg.proc.poll() is None:
                bg.kill()
        let_go(hold)
    assert f"released {live}: {fixed[:12]}" in waiting.text()
    out = first.text()
    assert first.proc.returncode == 0, out
    assert "Traceback" not in out
    assert f"released {target}: {slow[:12]}" in out
    serves(p, "v4", colour=live)
    entries = history_json(p)[-2:]
    assert [(e["task"], e["result"], e["commit"]) for e in entries] == \
        [("release", "ok", slow), ("release", "ok", fixed)]
    assert not (p.deploy_dir / ".lock").exists()
    # The slow build must not be what a later restore starts again (it would
    # sleep once more): both colours get quick-starting releases.
    p.app.commit("v4b")
    fab(p, "release")


def test_ctrl_c_during_a_release_drops_the_lock_and_records_the_attempt(shared_project):
    p = shared_project
    live = status_json(p)["live"]
    target = "green" if live == "blue" else "blue"
    label = version(p)
    before = container_states(p).get(target)
    idle_label = version(p, getattr(p, f"{target}_port")) if before == "running" else None
    # Its start sleeps until the test lets it go: the release sits in its
    # health gate when interrupted, however slow the machine is.
    hold = unique_seconds()
    sha = p.app.commit("v5-slow", slow=hold)
    run = Background(p, "release", env={"BLUEGREEN_HEALTH_TIMEOUT": "600"})
    try:
        wait_sleeping(hold, timeout=FAB_TIMEOUT, alive=lambda: run.proc.poll() is None)
        run.wait_line("health attempt")
        assert run.proc.poll() is None, run.text()
        run.proc.send_signal(signal.SIGINT)
        run.wait()
    finally:
        if run.proc.poll() is None:
            run.kill()
        let_go(hold)
    out = run.text()
    run.returncode = run.proc.returncode
    assert run.returncode == 130, out
    assert "Traceback" not in out
    assert "interrupted" in out and "lock was released" in out
    assert not (p.deploy_dir / ".lock").exists()
    serves(p, label, colour=live)
    last = history_json(p)[-1]
    assert (last["result"], last["phase"], last["to"], last["commit"]) == \
        ("failed", "health", target, sha)
    assert "interrupted" in last["error"]
    # What it started is undone: the colour is as it was before the release
    # (running its previous release again: the rollback target).
    assert container_states(p)[target] == (before if before == "running" else "exited")
    if idle_label:
        assert version(p, getattr(p, f"{target}_port")) == idle_label


def test_force_unlock_removes_only_a_lock_whose_process_is_gone(shared_project):
    p = shared_project
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid that no longer runs, on this machine
    hold_lock(p, machine=socket.gethostname(), pid=gone.pid, user="dave",
              command="fab release")
    try:
        r = fab(p, "release", code=4)
        assert "no longer runs" in output(r) and "--force-unlock" in output(r)
        assert status_json(p)["lock"]["gone"] is True
        # --force-unlock takes it over and releases (the head of main is the
        # slow commit of the test before: name v1's commit instead).
        r = fab(p, "release", "--force-unlock", "--ref", p.app.commits["v1"])
        assert "removing the lock of a process that is gone" in r.stdout
        assert "released" in r.stdout
    finally:
        subprocess.run(["rm", "-rf", str(p.deploy_dir / ".lock")])
    serves(p, "v1")

    # A holder whose pid the kernel has since given to another process (here:
    # this test's own, alive) is told apart by its start time: gone too.
    hold_lock(p, machine=socket.gethostname(), pid=os.getpid(),
              pid_start=start_ticks(os.getpid()) - 1, user="dave", command="fab release")
    try:
        assert status_json(p)["lock"]["gone"] is True
        r = fab(p, "release", "--force-unlock", "--ref", p.app.commits["v1"])
        assert "removing the lock of a process that is gone" in r.stdout
    finally:
        subprocess.run(["rm", "-rf", str(p.deploy_dir / ".lock")])

    # A live holder elsewhere is never taken over.
    hold_lock(p, user="erin")
    try:
        r = fab(p, "release", "--force-unlock", code=4)
        assert "erin@ci-runner-7" in output(r)
    finally:
        fab(p, "unlock")
