"""The Docker daemon restarted during a build, and a "reboot" (the Docker
daemon and nginx restarted): the release fails cleanly, and once the host
is back both colours run again and `status` agrees with what is served.

These restart the machine's dockerd, which every other e2e test shares: they
are marked `docker_restart` and scripts/test.sh runs them on their own, after
the parallel run. They restart only a dockerd that scripts/setup-host.sh
started (the pid in $DOCKERD_PIDFILE) and start it again the same way; on a
machine whose daemon someone else runs they fail, saying so.
"""

import os
import signal
import subprocess
from pathlib import Path

import pytest

import loophost as lh
from faultkit import assert_status_tells_the_truth, history, owner, run_ok, status_json
from hostile import Background
from released import module_project, serves, version, wait_until

pytestmark = pytest.mark.docker_restart

REPO_ROOT = Path(__file__).resolve().parents[2]
PIDFILE = os.environ.get("DOCKERD_PIDFILE", "/run/bluegreen-dockerd.pid")


def restart_dockerd():
    """Stop the dockerd setup-host.sh started and let setup-host.sh start it again."""
    try:
        pid = int(Path(PIDFILE).read_text().strip())
    except (OSError, ValueError):
        pid = None
    assert pid and lh.pid_alive(pid) and open(f"/proc/{pid}/comm").read().strip() == "dockerd", (
        f"{PIDFILE} names no dockerd that scripts/setup-host.sh started: this test restarts "
        "only such a daemon (run the tests with scripts/test.sh)")
    os.kill(pid, signal.SIGTERM)
    assert lh.wait_gone(pid, 60.0), f"dockerd {pid} did not stop within 60 s"
    r = subprocess.run([str(REPO_ROOT / "scripts" / "setup-host.sh")], capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert lh.docker("info", timeout=30).returncode == 0


@pytest.fixture(scope="module")
def proj(request, tmp_path_factory, loophost):
    """v1 in blue, then v2 live in green: both colours run."""
    for project in module_project(request, tmp_path_factory, loophost, setup=True,
                                  HEALTH_TIMEOUT=30):
        project.app.commit("v2")
        run_ok(project, "release")
        yield project


def both_running(project):
    states = {c["service"]: c["state"] for c in project.containers()}
    return states.get("blue") == "running" and states.get("green") == "running"


def slow_build(project, label):
    """A commit whose Docker build spends 30 s in a RUN step."""
    app = project.app
    app.commit(label)
    dockerfile = app.work / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text()
                          + 'RUN ["/bin/busybox", "sleep", "30"]\n')
    app._git("commit", "-qam", f"{label}: a slow build")
    app._git("push", "-q", "origin", "HEAD:refs/heads/main")


def test_the_docker_daemon_restarted_during_a_build(proj):
    p = proj
    live = status_json(p)["live"]
    label = version(p)
    slow_build(p, "v3-slow")
    bg = Background(p, "release")
    bg.wait_line("RUN [\"/bin/busybox\", \"sleep\", \"30\"]", timeout=120)
    restart_dockerd()
    code = bg.wait()
    text = bg.text()
    assert code == 1, text
    assert "Traceback" not in text, text
    assert "docker build failed" in text and "nothing live changed" in text, text
    assert owner(p) is None, "the lock was left behind"
    last = history(p)[-1]
    assert (last["result"], last["phase"]) == ("failed", "build"), last

    # Back: both colours run again (restart: unless-stopped), nginx still
    # serves the colour that was live, and status agrees.
    assert wait_until(lambda: both_running(p), timeout=60), p.containers()
    serves(p, label, colour=live, timeout=30)
    assert_status_tells_the_truth(p)
    now = status_json(p)
    assert now["live"] == live and all(c["healthy"] for c in now["colours"].values()), now

    p.app.commit("v4")
    run_ok(p, "release")
    serves(p, "v4", colour="blue" if live == "green" else "green")


def test_a_reboot_brings_both_colours_back(proj, loophost):
    p = proj
    before = status_json(p)
    live = before["live"]
    label = version(p)
    restart_dockerd()
    loophost.restart_nginx("stop")
    assert wait_until(lambda: both_running(p), timeout=60), p.containers()
    serves(p, label, colour=live, timeout=30)
    assert_status_tells_the_truth(p)
    after = status_json(p)
    assert after["live"] == live
    for colour in ("blue", "green"):
        assert after["colours"][colour]["commit"] == before["colours"][colour]["commit"]
        assert after["colours"][colour]["healthy"] is True, after["colours"][colour]
    # And the next release works as on any day.
    p.app.commit("v5")
    run_ok(p, "release")
    serves(p, "v5", colour="blue" if live == "green" else "green")
