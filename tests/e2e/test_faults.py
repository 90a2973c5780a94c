"""Faults in the middle of a release: the live colour keeps serving.

One project for the module (set up once). Every test runs a light load
(hostile.client_load: 20 GETs a second through nginx, a fresh connection
each) for the whole fault and its recovery, and asserts that not one request
failed and that enough were sent to tell; every test ends with a release
that succeeds.
"""

import json
import os
import signal
import subprocess
import time

import pytest

from hostile import (Background, client_load, connection_child, fab, history, module_project,
                     output, serving, serving_after_switch, snapshot, state)

pytestmark = pytest.mark.e2e

SLOW = 60  # seconds the slow app sleeps before it listens: the gate outlasts the fault
# Every test's load spans at least one release (a few seconds at 20 requests/s).
MIN_REQUESTS = 40


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, loophost):
    yield from module_project(request, tmp_path_factory, loophost, setup=True)


_versions = iter(range(2, 1000))


def new_version(shared_project, slow=0):
    label = f"v{next(_versions)}"
    shared_project.app.commit(label, slow=slow)
    return label


def release_ok(shared_project, *flags):
    """A release of a fresh version that must succeed; (colour, version) it serves."""
    label = new_version(shared_project)
    live_before = serving(shared_project)[0]
    r = fab(shared_project, "release", *flags)
    target = "green" if live_before == "blue" else "blue"
    assert serving_after_switch(shared_project, (target, label)) == (target, label), output(r)
    return target, label, r


def lock_owner(shared_project):
    path = shared_project.deploy_dir / ".lock" / "owner.json"
    return json.loads(path.read_text()) if path.exists() else None


def interrupted_release(shared_project):
    """Start `fab release` of a slow version; return it once its health gate runs."""
    new_version(shared_project, slow=SLOW)
    bg = Background(shared_project, "release")
    bg.wait_line("health attempt")
    return bg


# --- the laptop dies --------------------------------------------------------------------


def holder_gone(owner, timeout=15):
    """Wait until the holder's shell on the host (this machine) has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{owner['host_pid']}"):
            return True
        time.sleep(0.05)
    return False


def test_fab_killed_during_the_health_gate(shared_project):
    live = serving(shared_project)
    with client_load(shared_project) as load:
        bg = interrupted_release(shared_project)
        owner = lock_owner(shared_project)
        assert owner["pid"] == bg.pid and owner["host_pid"]
        bg.kill(signal.SIGKILL)
        assert bg.proc.returncode == -signal.SIGKILL
        assert serving(shared_project) == live

        # Its connection closed, its shell on the host ended: the next task
        # takes the stale lock over by itself, says so and records it.
        assert holder_gone(owner), "the killed task's shell still runs on the host"
        _, _, r = release_ok(shared_project)
        assert f"took over the lock of" in r.stdout and f"pid {bg.pid}" in r.stdout, output(r)
        assert "its connection to testhost is gone" in r.stdout
        takeover = [e for e in history(shared_project) if e.get("result") == "taken-over"][-1]
        assert f"pid {bg.pid}" in takeover["error"]
        assert lock_owner(shared_project) is None
    load.require(min_requests=MIN_REQUESTS)


def test_a_lock_of_an_older_version_needs_unlock_or_force_unlock(shared_project):
    """A lock that names no shell on the host (written before takeover existed)
    is never taken over: the process it names is checked on this machine only."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    record = {"pid": gone.pid, "machine": os.uname().nodename, "user": "someone",
              "command": "fab release", "started_at": int(time.time())}
    lock = shared_project.deploy_dir / ".lock"
    with client_load(shared_project) as load:
        lock.mkdir()
        (lock / "owner.json").write_text(json.dumps(record) + "\n")
        r = fab(shared_project, "release", code=4)
        assert f"pid {gone.pid}" in r.stderr and "no longer runs on this machine" in r.stderr
        assert "--force-unlock" in r.stderr
        r = fab(shared_project, "status")
        assert f"pid {gone.pid}" in r.stdout and "that process is gone" in r.stdout, r.stdout
        _, _, r = release_ok(shared_project, "--force-unlock")
        assert "removing the lock of a process that is gone" in r.stdout
        assert f"pid {gone.pid}" in r.stdout
    load.require(min_requests=MIN_REQUESTS)


def test_force_unlock_spares_a_holder_that_still_runs(shared_project):
    """--force-unlock removes only a dead local holder: a running one keeps its lock."""
    with client_load(shared_project) as load:
        bg = interrupted_release(shared_project)
        try:
            r = fab(shared_project, "release", "--force-unlock", code=4)
            assert f"pid {bg.pid}" in r.stderr
            assert lock_owner(shared_project)["pid"] == bg.pid
        finally:
            bg.kill(signal.SIGKILL)
        fab(shared_project, "unlock")
        release_ok(shared_project)
    load.require(min_requests=MIN_REQUESTS)


# --- the network dies -------------------------------------------------------------------


def test_ssh_connection_cut_mid_release(shared_project, loophost):
    live = serving(shared_project)
    with client_load(shared_project) as load:
        before = snapshot(shared_project)
        bg = interrupted_release(shared_project)
        # The sshd process serving this fab's one connection: a child of the
        # loophost's listener started after fab. Kill that pid and no other.
        child = connection_child(loophost.sshd_pid, bg.start_ticks)
        assert "sshd" in open(f"/proc/{child}/cmdline").read()
        os.kill(child, signal.SIGKILL)
        code = bg.wait()

        text = bg.text()
        assert code == 3, text
        assert "Traceback" not in text, text
        assert "lost the SSH connection to testhost" in text, text
        assert "fab -H testhost unlock" in text, text
        after = snapshot(shared_project)
        assert serving(shared_project) == live
        assert after["nginx"] == before["nginx"]
        assert after["files"]["state.json"] == before["files"]["state.json"]
        owner = lock_owner(shared_project)
        if owner:  # the connection went before the lock could: its shell ends with it
            assert holder_gone(owner), "the cut connection's shell still runs on the host"
        _, _, r = release_ok(shared_project)
        if owner:
            assert "took over the lock of" in r.stdout, output(r)
    load.require(min_requests=MIN_REQUESTS)


# --- the host's records are damaged -----------------------------------------------------


@pytest.mark.parametrize("damage", ["corrupted", "deleted"])
def test_state_json_damaged(shared_project, damage):
    state_file = shared_project.deploy_dir / "state.json"
    colour, version = serving(shared_project)
    with client_load(shared_project) as load:
        if damage == "corrupted":
            state_file.write_text('{"live": "blue", "colours": ')  # a write cut short
            why = "is not valid JSON"
        else:
            state_file.unlink()
            why = "is missing"

        r = fab(shared_project, "status")
        assert f"live: {colour} (nginx -> port {getattr(shared_project, colour + '_port')})" in r.stdout
        assert f"state.json {why}" in r.stdout and "repair" in r.stdout, r.stdout
        data = json.loads(fab(shared_project, "status", "--json").stdout)
        assert data["live"] == colour and data["nginx"]["colour"] == colour
        assert why in data["state_error"]

        before = snapshot(shared_project)
        r = fab(shared_project, "release", code=1)
        assert f"state.json {why}" in r.stderr and "fab repair" in r.stderr, output(r)
        after = snapshot(shared_project)
        assert after["nginx"] == before["nginx"] and after["containers"] == before["containers"]
        assert after["files"].get("state.json") == before["files"].get("state.json")
        assert not after["locked"]

        r = fab(shared_project, "repair")
        rebuilt = state(shared_project)
        assert rebuilt["live"] == colour
        checkout = shared_project.deploy_dir / colour
        head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        assert rebuilt["colours"][colour]["commit"] == head
        assert serving(shared_project) == (colour, version)

        release_ok(shared_project)
    load.require(min_requests=MIN_REQUESTS)


def test_nginx_file_edited_by_hand(shared_project, loophost):
    """nginx proxies to the idle colour while state.json (and the file's own
    header) say otherwise: status reports the drift, and a release trusts
    what nginx serves, building into the colour nginx does not serve."""
    with client_load(shared_project) as load:
        colours = {c["service"] for c in shared_project.containers() if c["state"] == "running"}
        if colours != {"blue", "green"}:
            release_ok(shared_project)  # both colours up: the idle one can take the traffic
        recorded = state(shared_project)["live"]
        idle = "green" if recorded == "blue" else "blue"
        idle_port = getattr(shared_project, f"{idle}_port")
        idle_version = shared_project.get("/version", port=idle_port)[2].strip()

        text = shared_project.nginx_file.read_text()
        old, new = (f":{getattr(shared_project, c + '_port')};" for c in (recorded, idle))
        assert text.count(old) == 1
        shared_project.nginx_file.write_text(text.replace(old, new))
        subprocess.run(f"{loophost.nginx_test_cmd} && {loophost.nginx_reload_cmd}",
                       shell=True, check=True, capture_output=True)
        answer = shared_project.wait_for(lambda s, h, b: b.strip() == idle_version, path="/version")
        assert answer[2].strip() == idle_version

        r = fab(shared_project, "status")
        assert "drift:" in r.stdout and f"proxies to {idle}" in r.stdout, r.stdout
        data = json.loads(fab(shared_project, "status", "--json").stdout)
        assert data["live"] == idle and data["drift"]

        label = new_version(shared_project)
        r = fab(shared_project, "release")
        assert f"trusting nginx: {idle} is live" in r.stdout, r.stdout
        assert f"released {recorded}" in r.stdout, r.stdout
        assert serving_after_switch(shared_project, (recorded, label)) == (recorded, label)
        assert state(shared_project)["live"] == recorded
        assert "drift:" not in fab(shared_project, "status").stdout
    load.require(min_requests=MIN_REQUESTS)


# --- two operators at once --------------------------------------------------------------


def test_two_releases_started_at_the_same_moment(shared_project):
    with client_load(shared_project) as load:
        live = serving(shared_project)[0]
        label = new_version(shared_project)
        hist = history(shared_project)
        runs = [Background(shared_project, "release"), Background(shared_project, "release")]
        codes = [bg.wait() for bg in runs]
        assert sorted(codes) == [0, 4], "\n---\n".join(bg.text() for bg in runs)
        loser = runs[codes.index(4)]
        winner = runs[codes.index(0)]
        assert "is locked by" in loser.text() and f"pid {winner.pid}" in loser.text()
        assert "Traceback" not in loser.text() + winner.text()
        new = history(shared_project)[len(hist):]
        assert [e["result"] for e in new] == ["ok"], new
        target = "green" if live == "blue" else "blue"
        assert serving_after_switch(shared_project, (target, label)) == (target, label)
        assert lock_owner(shared_project) is None
    load.require(min_requests=MIN_REQUESTS)
