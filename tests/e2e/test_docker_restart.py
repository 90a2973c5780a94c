"""The Docker daemon restarted during a build, and a "reboot" (the Docker
daemon and nginx restarted): the release fails cleanly, and once the host
is back both colours run again and `status` agrees with what is served.

The host here has a Docker daemon of its own (scripts/ownhost.py: its own
data root, exec root, socket and bridge; its sshd sees that socket as
/run/docker.sock), and that is the daemon these tests restart: never the
machine's, so they run on any machine, whoever started its daemon, and
beside other tests.
"""

import pytest

from faultkit import assert_status_tells_the_truth, history, owner, run_ok, status_json
from hostile import Background
from ownhostkit import own_project
from released import fab, serves, version, wait_until

import loophost as lh

# Marked so that scripts/test.sh runs them on their own, after the parallel
# run: they stop a daemon for a while, and the machine has two cores.
pytestmark = pytest.mark.docker_restart


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, own_host):
    """v1 in blue, then v2 live in green, on the host with its own daemon: both colours run."""
    base = tmp_path_factory.mktemp("docker-restart")
    app = lh.SampleApp(base / "sample-app")
    app.commit("v1")
    project = own_project(request, base / "p", own_host, app)
    project.set(HEALTH_TIMEOUT=30)
    try:
        fab(project, "setup")
        project.app.commit("v2")
        run_ok(project, "release")
        yield project
    finally:
        project.remove()


def restart_dockerd(project):
    """Stop the host's own dockerd (its containers stop with it) and start it again."""
    project.host.daemon.restart()


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


def test_the_docker_daemon_restarted_during_a_build(shared_project):
    p = shared_project
    live = status_json(p)["live"]
    label = version(p)
    slow_build(p, "v3-slow")
    bg = Background(p, "release")
    bg.wait_line("RUN [\"/bin/busybox\", \"sleep\", \"30\"]", timeout=120)
    restart_dockerd(p)
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


def test_a_reboot_brings_both_colours_back(shared_project):
    p = shared_project
    before = status_json(p)
    live = before["live"]
    label = version(p)
    restart_dockerd(p)
    p.host.restart_nginx("stop")
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
