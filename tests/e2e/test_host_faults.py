"""The host's own faults, Compose v2 missing, and bad input that never
reaches sshd (issue 15).

A private loopback host for the module (its own sshd, logging at VERBOSE
to its own file, and its own nginx), so a test may stop its nginx and read
its sshd log without disturbing any other test.

The Docker daemon restarted during a build, and a "reboot", are in
test_docker_restart.py: they restart a Docker daemon of their own
(scripts/ownhost.py), never the machine's.
"""

import json
import subprocess

import pytest
import yaml

import loophost as lh
from faultkit import (Background, assert_nothing_left_over, history, load_report, owner,
                      phase_line, run_ok, serving, start_load, state, wait_until)
from hostile import snapshot
from support.project import Project


@pytest.fixture(scope="module")
def host(tmp_path_factory, _clean_machine):
    h = lh.LoopHost(tmp_path_factory.mktemp("faulthost"), nginx="current",
                    sshd_options={"LogLevel": "VERBOSE"})
    h.start()
    yield h
    h.stop()


@pytest.fixture
def proj(tmp_path, host, make_sample_app):
    app = make_sample_app()
    p = Project(tmp_path / "p", host, app)
    yield p
    p.remove()


def stop_nginx(host):
    subprocess.run(host._nginx_quit_cmd, capture_output=True)
    assert lh.wait_gone(host.nginx_pid, 10.0, host._nginx)
    host.nginx_pid = host._nginx = None


def start_nginx(host):
    host._start_nginx()


# --- nginx not running at the switch ------------------------------------------------


def test_nginx_not_running_at_the_switch(proj, host):
    run_ok(proj, "setup")
    proj.app.commit("v2")
    before = snapshot(proj)
    hist = len(history(proj))
    stop_nginx(host)
    try:
        r = proj.fab("release", timeout=240)
        text = r.stdout + r.stderr
        assert r.returncode == 1 and "Traceback" not in text, text
        assert "failed; the old nginx file is back in place" in r.stderr, text
        assert "check that nginx runs" in r.stderr, text
        assert proj.nginx_file.read_text() == before["nginx"]
        assert owner(proj) is None
        [entry] = history(proj)[hist:]
        assert (entry["result"], entry["phase"]) == ("failed", "switch"), entry
        assert state(proj) == json.loads((proj.deploy_dir / "state.json").read_text())
        assert state(proj)["live"] == "blue"
    finally:
        start_nginx(host)
    assert wait_until(lambda: proj.get("/version")[0] == 200, timeout=10)
    assert serving(proj) == ("blue", "v1")
    run_ok(proj, "release")
    assert wait_until(lambda: serving(proj) == ("green", "v2"), timeout=5)


# --- DEPLOY_DIR's file system full at the record step -------------------------------


def test_deploy_dir_full_at_the_record_step(proj, host):
    """DEPLOY_DIR is a 24 MB tmpfs; it is filled while PRE_SWITCH_CMD runs
    (a window between the health gate and the switch), so the switch
    happens and state.json cannot be written: the switch is undone,
    state.json is whole, and the message says what happened."""
    proj.deploy_dir.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(proj.deploy_dir)],
                   check=True)
    try:
        deploy_dir_full(proj)
    finally:
        subprocess.run(["umount", "-l", str(proj.deploy_dir)], capture_output=True)


def deploy_dir_full(proj):
    filler = proj.deploy_dir / "filler"
    load = None
    try:
        run_ok(proj, "setup")
        proj.set(PRE_SWITCH_CMD="sleep 2")
        proj.app.commit("v2")
        state_before = (proj.deploy_dir / "state.json").read_bytes()
        nginx_before = proj.nginx_file.read_text()
        load = start_load(proj.public_port)
        bg = Background(proj, "release")
        phase_line(bg, "health")
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        code = bg.wait()
        text = bg.text()
        assert code == 1 and "Traceback" not in text, text
        assert "could not write" in text and "state.json" in text, text
        assert "nothing was recorded" in text, text
        assert "switching back to blue" in text, text
        assert (proj.deploy_dir / "state.json").read_bytes() == state_before
        assert not (proj.deploy_dir / "state.json.tmp").exists()
        assert proj.nginx_file.read_text() == nginx_before
        assert serving(proj) == ("blue", "v1")
        assert owner(proj) is None  # rmdir needs no space
    finally:
        report = load_report(load.stop()) if load else None
        filler.unlink(missing_ok=True)
    run_ok(proj, "release")
    assert wait_until(lambda: serving(proj) == ("green", "v2"), timeout=5)
    assert_nothing_left_over(proj)
    assert report and report["sent"] >= 100 and report["failed"] == 0, report


# --- setup on a host without Compose v2 ---------------------------------------------


@pytest.mark.parametrize("compose", ["v1", "missing"])
def test_setup_refuses_a_host_without_compose_v2(proj, tmp_path, compose):
    if compose == "v1":
        fake = tmp_path / "docker-compose-v1"
        fake.write_text("#!/bin/sh\necho 1.29.2\n")
        fake.chmod(0o755)
        proj.set(COMPOSE_CMD=str(fake))
        why = "Compose 1.29.2 is not v2"
    else:
        proj.set(COMPOSE_CMD=str(tmp_path / "no-such-compose"))
        why = "compose is not installed"
    r = proj.fab("setup", timeout=120)
    text = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in text, text
    assert why in r.stderr and "Compose v2 as a docker CLI plugin" in r.stderr, text
    assert not proj.deploy_dir.exists()
    assert not proj.nginx_file.exists()


# --- bad input opens no SSH session ------------------------------------------------


def sshd_log_since(host, offset):
    return host.sshd_log.read_bytes()[offset:].decode(errors="replace")


def test_bad_input_opens_no_ssh_session(proj, host, tmp_path):
    run_ok(proj, "status")  # the control: a good command is seen by sshd
    offset = host.sshd_log.stat().st_size
    # (a) a bad .env value, (b) a bad flag value, (c) a missing identity file
    r = proj.fab("release", env={"BLUEGREEN_APP_PORT": "80x"}, timeout=60)
    assert r.returncode == 2 and "APP_PORT" in r.stderr, r.stdout + r.stderr
    r = proj.fab("switch", "--to", "purple", timeout=60)
    assert r.returncode == 2 and "--to" in r.stderr, r.stdout + r.stderr
    hosts = yaml.safe_load(proj.hosts_file.read_text())
    entry = hosts["hosts"][proj.HOST_NAME]
    good = entry.get("identity_file")
    entry["identity_file"] = str(tmp_path / "no-such-key")
    proj.hosts_file.write_text(yaml.safe_dump(hosts))
    try:
        r = proj.fab("status", timeout=60)
        assert r.returncode == 2 and "no-such-key" in r.stdout + r.stderr, r.stdout + r.stderr
    finally:
        entry["identity_file"] = good
        proj.hosts_file.write_text(yaml.safe_dump(hosts))
    # The control again, then wait for its line: sshd logs connections in
    # the order it accepts them, so once the control's is there, any
    # connection of the bad commands would be logged before it.
    run_ok(proj, "status")
    assert wait_until(lambda: "Accepted publickey" in sshd_log_since(host, offset), 60), \
        sshd_log_since(host, offset)
    seen = sshd_log_since(host, offset)
    assert seen.count("Connection from") == 1 and seen.count("Accepted publickey") == 1, seen
