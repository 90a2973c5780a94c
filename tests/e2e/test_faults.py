"""Faults in the middle of a release: the live colour keeps serving.

One project for the module (set up once). Every test runs a light load (one
thread of sequential GETs through nginx, short timeouts) for the whole
fault and its recovery, and asserts that not one request failed; every test
ends with a release that succeeds.
"""

import json
import os
import signal
import subprocess

import pytest

from hostile import (Background, Load, connection_child, fab, history, module_project,
                     output, serving, serving_after_switch, snapshot, state)

pytestmark = pytest.mark.e2e

SLOW = 60  # seconds the slow app sleeps before it listens: the gate outlasts the fault


@pytest.fixture(scope="module")
def proj(request, tmp_path_factory, loophost):
    yield from module_project(request, tmp_path_factory, loophost)


_versions = iter(range(2, 1000))


def new_version(proj, slow=0):
    label = f"v{next(_versions)}"
    proj.app.commit(label, slow=slow)
    return label


def release_ok(proj, *flags):
    """A release of a fresh version that must succeed; (colour, version) it serves."""
    label = new_version(proj)
    live_before = serving(proj)[0]
    r = fab(proj, "release", *flags)
    target = "green" if live_before == "blue" else "blue"
    assert serving_after_switch(proj, (target, label)) == (target, label), output(r)
    return target, label, r


def lock_owner(proj):
    path = proj.deploy_dir / ".lock" / "owner.json"
    return json.loads(path.read_text()) if path.exists() else None


def interrupted_release(proj):
    """Start `fab release` of a slow version; return it once its health gate runs."""
    new_version(proj, slow=SLOW)
    bg = Background(proj, "release")
    bg.wait_line("health attempt")
    return bg


# --- the laptop dies --------------------------------------------------------------------


def test_fab_killed_during_the_health_gate(proj):
    live = serving(proj)
    with Load(proj.public_port) as load:
        bg = interrupted_release(proj)
        bg.kill(signal.SIGKILL)
        assert bg.proc.returncode == -signal.SIGKILL
        assert serving(proj) == live
        assert lock_owner(proj)["pid"] == bg.pid

        # `status` says whose lock it is, and that its process is gone.
        r = fab(proj, "status")
        assert f"pid {bg.pid}" in r.stdout and "that process is gone" in r.stdout, r.stdout

        # `fab unlock` recovers.
        r = fab(proj, "unlock")
        assert f"pid {bg.pid}" in r.stdout and "lock removed" in r.stdout
        assert lock_owner(proj) is None
        release_ok(proj)

        # Again, and this time the next release recovers by itself: the
        # killed fab's connection is gone, so its lock is taken over
        # (issue 15; tests/e2e/test_stale_lock.py has the rest).
        bg = interrupted_release(proj)
        bg.kill(signal.SIGKILL)
        _, _, r = release_ok(proj)
        assert "took over the lock of" in r.stdout and f"pid {bg.pid}" in r.stdout, r.stdout
    load.assert_clean()


def test_force_unlock_spares_a_holder_that_still_runs(proj):
    """--force-unlock removes only a dead local holder: a running one keeps its lock."""
    with Load(proj.public_port) as load:
        bg = interrupted_release(proj)
        try:
            r = fab(proj, "release", "--force-unlock", code=4)
            assert f"pid {bg.pid}" in r.stderr
            assert lock_owner(proj)["pid"] == bg.pid
        finally:
            bg.kill(signal.SIGKILL)
        fab(proj, "unlock")
        release_ok(proj)
    load.assert_clean()


# --- the network dies -------------------------------------------------------------------


def test_ssh_connection_cut_mid_release(proj, loophost):
    live = serving(proj)
    with Load(proj.public_port) as load:
        before = snapshot(proj)
        bg = interrupted_release(proj)
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
        after = snapshot(proj)
        assert serving(proj) == live
        assert after["nginx"] == before["nginx"]
        assert after["files"]["state.json"] == before["files"]["state.json"]
        _, _, r = release_ok(proj)
        if after["locked"]:  # left behind: its connection is gone, so it is taken over
            assert "took over the lock of" in r.stdout, r.stdout
    load.assert_clean()


# --- the host's records are damaged -----------------------------------------------------


@pytest.mark.parametrize("damage", ["corrupted", "deleted"])
def test_state_json_damaged(proj, damage):
    state_file = proj.deploy_dir / "state.json"
    colour, version = serving(proj)
    with Load(proj.public_port) as load:
        if damage == "corrupted":
            state_file.write_text('{"live": "blue", "colours": ')  # a write cut short
            why = "is not valid JSON"
        else:
            state_file.unlink()
            why = "is missing"

        r = fab(proj, "status")
        assert f"live: {colour} (nginx -> port {getattr(proj, colour + '_port')})" in r.stdout
        assert f"state.json {why}" in r.stdout and "repair" in r.stdout, r.stdout
        data = json.loads(fab(proj, "status", "--json").stdout)
        assert data["live"] == colour and data["nginx"]["colour"] == colour
        assert why in data["state_error"]

        before = snapshot(proj)
        r = fab(proj, "release", code=1)
        assert f"state.json {why}" in r.stderr and "fab repair" in r.stderr, output(r)
        after = snapshot(proj)
        assert after["nginx"] == before["nginx"] and after["containers"] == before["containers"]
        assert after["files"].get("state.json") == before["files"].get("state.json")
        assert not after["locked"]

        r = fab(proj, "repair")
        rebuilt = state(proj)
        assert rebuilt["live"] == colour
        checkout = proj.deploy_dir / colour
        head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        assert rebuilt["colours"][colour]["commit"] == head
        assert serving(proj) == (colour, version)

        release_ok(proj)
    load.assert_clean()


def test_nginx_file_edited_by_hand(proj, loophost):
    """nginx proxies to the idle colour while state.json (and the file's own
    header) say otherwise: status reports the drift, and a release trusts
    what nginx serves, building into the colour nginx does not serve."""
    with Load(proj.public_port) as load:
        colours = {c["service"] for c in proj.containers() if c["state"] == "running"}
        if colours != {"blue", "green"}:
            release_ok(proj)  # both colours up: the idle one can take the traffic
        recorded = state(proj)["live"]
        idle = "green" if recorded == "blue" else "blue"
        idle_version = proj.get("/version", port=getattr(proj, f"{idle}_port"))[2].strip()

        text = proj.nginx_file.read_text()
        old, new = (f":{getattr(proj, c + '_port')};" for c in (recorded, idle))
        assert text.count(old) == 1
        proj.nginx_file.write_text(text.replace(old, new))
        subprocess.run(f"{loophost.nginx_test_cmd} && {loophost.nginx_reload_cmd}",
                       shell=True, check=True, capture_output=True)
        answer = proj.wait_for(lambda s, h, b: b.strip() == idle_version, path="/version")
        assert answer[2].strip() == idle_version

        r = fab(proj, "status")
        assert "drift:" in r.stdout and f"proxies to {idle}" in r.stdout, r.stdout
        data = json.loads(fab(proj, "status", "--json").stdout)
        assert data["live"] == idle and data["drift"]

        label = new_version(proj)
        r = fab(proj, "release")
        assert f"trusting nginx: {idle} is live" in r.stdout, r.stdout
        assert f"released {recorded}" in r.stdout, r.stdout
        assert serving_after_switch(proj, (recorded, label)) == (recorded, label)
        assert state(proj)["live"] == recorded
        assert "drift:" not in fab(proj, "status").stdout
    load.assert_clean()


# --- two operators at once --------------------------------------------------------------


def test_two_releases_started_at_the_same_moment(proj):
    with Load(proj.public_port) as load:
        live = serving(proj)[0]
        label = new_version(proj)
        hist = history(proj)
        runs = [Background(proj, "release"), Background(proj, "release")]
        codes = [bg.wait() for bg in runs]
        assert sorted(codes) == [0, 4], "\n---\n".join(bg.text() for bg in runs)
        loser = runs[codes.index(4)]
        winner = runs[codes.index(0)]
        assert "is locked by" in loser.text() and f"pid {winner.pid}" in loser.text()
        assert "Traceback" not in loser.text() + winner.text()
        new = history(proj)[len(hist):]
        assert [e["result"] for e in new] == ["ok"], new
        target = "green" if live == "blue" else "blue"
        assert serving_after_switch(proj, (target, label)) == (target, label)
        assert lock_owner(proj) is None
    load.assert_clean()
