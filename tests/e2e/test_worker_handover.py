"""Workers follow the colour that serves everyone, under a steady stream of jobs.

One project for the module: v1 with a worker and a scheduler (`clock`), then
release, rollback, canary + promote, staged + promote, a failed release, a
worker that crashes at start, a SCALE change, a worker image whose
HEALTHCHECK never passes. After every step: workers run
in the serving colour only, the scheduler never ran twice at once, and in
the end every job was done exactly once.
"""

import pytest

from released import fab, output, serves, state_file, status_json
from support.project import Project
from workerkit import (CRASHING_PROCFILE, JobStream, assert_one_clock, assert_promise, commit,
                      commit_with_healthcheck, worker_project, workers)


@pytest.fixture(scope="module")
def proj(request, tmp_path_factory, loophost):
    base = tmp_path_factory.mktemp("workers")
    yield from worker_project(base, lambda app: Project(base / "p", loophost, app),
                              WORKER_READY_SECONDS=2, WORKER_STOP_TIMEOUT=5)


def test_workers_follow_the_serving_colour_and_every_job_runs_once(proj):
    assert_promise(proj)
    with JobStream(proj.jobs) as stream:
        commit(proj.app, "v2")
        r = fab(proj, "release")
        assert "workers" in output(r)
        serves(proj, "v2", "green")
        assert_promise(proj)

        fab(proj, "rollback")
        serves(proj, "v1", "blue")
        assert_promise(proj)

        commit(proj.app, "v3")
        fab(proj, "release", "--canary", "50")
        assert_promise(proj)  # the canary serves a share: workers stay in blue
        assert state_file(proj)["workers"] == "blue"
        fab(proj, "promote")
        assert_promise(proj)
        assert state_file(proj)["live"] == "green"

        commit(proj.app, "v4")
        fab(proj, "release", "--no-switch")
        assert_promise(proj)
        assert state_file(proj)["workers"] == "green"
        fab(proj, "promote")
        assert_promise(proj)
        assert state_file(proj)["live"] == "blue"

        proj.app.commit("v5", kind="crash")  # the web fails its health gate
        fab(proj, "release", code=1)
        assert_promise(proj)

        commit(proj.app, "v6", procfile=CRASHING_PROCFILE)
        r = fab(proj, "release", code=1)
        assert "did not stay up" in output(r), output(r)
        serves(proj, "v4", "blue")
        assert_promise(proj)

        commit(proj.app, "v7")
        proj.set(SCALE="worker=2")
        fab(proj, "release")
        assert_promise(proj)
        running = [r for r in workers(proj) if r[2] == "running" and r[1] == "worker"]
        assert len(running) == 2, workers(proj)
        status = status_json(proj)
        live = status.get("live")
        assert status["colours"][live]["processes"]["worker"] == {
            "running": 2, "wanted": 2, "restarts": 0}
    stream.assert_exactly_once()
    assert_one_clock(proj.jobs)


def test_a_worker_that_never_turns_docker_healthy_fails_the_release(proj):
    """WORKER_READY_SECONDS with a HEALTHCHECK: healthy within it, else the
    release fails, web switches back and the old workers keep running."""
    before = state_file(proj)
    commit_with_healthcheck(proj.app, "v8")
    r = fab(proj, "release", code=1)
    assert "did not turn healthy" in output(r) and "healthy" in output(r), output(r)
    after = state_file(proj)
    live = before["live"]
    assert after["live"] == live and after["workers"] == before["workers"]
    assert after["colours"][live]["commit"] == before["colours"][live]["commit"]
    assert_promise(proj)
