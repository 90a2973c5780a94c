"""A failed release leaves both colours as they were: the rollback target runs.

The tool's central promise is "the old colour keeps running, so a rollback
takes seconds". A release rebuilds the idle colour, which is the rollback
target; when the release fails (build, start, health gate, PRE_SWITCH_CMD,
verification through nginx), the idle colour's previous release comes back
from its kept image, running and healthy, so `rollback` works at once. All
of it under load, with not one failed request: on the current nginx
(1.27.4+, with keepalive_min_timeout) keep-alive clients included.
"""

import pytest

import loadgen
from released import (container_states, fab, history_json, module_project, output,
                      serves, status_json, version)

HEALTH_TIMEOUT = 4


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, loophost_current):
    """v1 in blue, then v2 live in green: blue (v1) is the rollback target."""
    for project in module_project(request, tmp_path_factory, loophost_current,
                                  HEALTH_TIMEOUT=HEALTH_TIMEOUT):
        fab(project, "setup")
        project.app.commit("v2")
        fab(project, "release")
        serves(project, "v2", colour="green")
        yield project


def broken_build(project, label):
    """A commit whose Docker build fails (COPY of a file that does not exist)."""
    app = project.app
    app.commit(label)
    dockerfile = app.work / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "COPY no-such-file /nowhere\n")
    app._git("commit", "-qam", f"{label}: a build that fails")
    app._git("push", "-q", "origin", "HEAD:refs/heads/main")
    return app._git("rev-parse", "HEAD")


def fail_release(project, kind):
    """A release that fails in the phase named by ``kind``; returns (phase, output)."""
    if kind == "build":
        broken_build(project, "bad-build")
        return "build", output(fab(project, "release", code=1))
    if kind in ("crash", "http500"):
        project.app.commit(f"bad-{kind}", kind=kind)
        return "health", output(fab(project, "release", code=1))
    project.app.commit(f"good-but-{kind}")
    if kind == "pre-switch":
        key, value, phase = "PRE_SWITCH_CMD", "echo migrating; exit 7", "pre-switch"
    else:  # verify: nginx is told to reload but does not, so it never serves the target
        key, value, phase = "NGINX_RELOAD_CMD", "true", "verify"
    old = project.settings.get(key)
    project.set(**{key: value})
    try:
        return phase, output(fab(project, "release", code=1))
    finally:
        project.set(**{key: old})


@pytest.mark.parametrize("kind", ["build", "crash", "http500", "pre-switch", "verify"])
def test_a_failed_release_keeps_the_rollback_target_running(shared_project, kind):
    p = shared_project
    before = status_json(p)
    live, idle = before["live"], "blue" if before["live"] == "green" else "green"
    idle_commit = before["colours"][idle]["commit"]
    idle_label, live_label = version(p, getattr(p, f"{idle}_port")), version(p)
    history_before = len(history_json(p))

    with loadgen.Load(p.public_port, rate_fresh=40, rate_keepalive=20, threads_fresh=2,
                      keepalive_connections=2, post_path=loadgen.SAMPLE_POST_PATH,
                      timeout=5.0, max_seconds=240, max_requests=20000,
                      name=f"failed {kind} release, rollback") as load:
        phase, out = fail_release(p, kind)
        assert "nothing live changed" in out or "switching back" in out, out
        # The idle colour runs its previous release again, healthy.
        assert f"{idle} runs its previous release {idle_commit[:12]} again" in out \
            or kind == "build", out
        serves(p, live_label, colour=live)
        assert container_states(p)[idle] == "running"
        assert version(p, getattr(p, f"{idle}_port")) == idle_label
        now = status_json(p)
        assert now["live"] == live
        assert now["colours"][idle]["commit"] == idle_commit
        assert now["colours"][idle]["healthy"] is True, now["colours"][idle]
        entries = history_json(p)
        assert len(entries) == history_before + 1
        assert (entries[-1]["result"], entries[-1]["phase"]) == ("failed", phase)

        # The promise: a rollback works at once...
        r = fab(p, "rollback")
        serves(p, idle_label, colour=idle)
        # ...and back again, for the next case.
        fab(p, "rollback")
        serves(p, live_label, colour=live)
    summary = load.summary()
    print(summary.text())
    summary.require(min_requests=100, max_failed=0, kinds=("fresh",))
    summary.require(min_requests=50, max_failed=0, kinds=("keepalive",))
    assert "Traceback" not in output(r)
