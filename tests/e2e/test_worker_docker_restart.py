"""A Docker restart ("reboot") brings back only the serving colour's workers.

The old colour's workers were stopped with `docker stop`, so `restart:
unless-stopped` leaves them stopped (NOTES.md, round four); the serving
colour's come back by themselves. The daemon restarted is the test's own
(scripts/ownhost.py), never the machine's.
"""

import pytest

from faultkit import run_ok
from ownhostkit import own_daemon, own_host, own_project  # noqa: F401  (fixtures)
from released import serves, state_file, wait_until
from workerkit import JobStream, assert_one_clock, assert_promise, commit, worker_project, workers


pytestmark = pytest.mark.docker_restart


@pytest.fixture(scope="module")
def proj(request, tmp_path_factory, own_host):
    base = tmp_path_factory.mktemp("worker-restart")
    yield from worker_project(base, lambda app: own_project(request, base / "p", own_host, app),
                              then=release_v2, HEALTH_TIMEOUT=30, WORKER_READY_SECONDS=2,
                              WORKER_STOP_TIMEOUT=5)


def release_v2(project):
    commit(project.app, "v2")
    run_ok(project, "release")


def test_a_docker_restart_brings_back_only_the_serving_colours_workers(proj):
    assert_promise(proj)
    live = state_file(proj)["live"]
    with JobStream(proj.jobs, rate=5) as stream:
        proj.host.daemon.restart()
        assert wait_until(lambda: {(c, k) for c, k, s in workers(proj) if s == "running"}
                          == {(live, "worker"), (live, "clock")}, timeout=60), workers(proj)
        serves(proj, "v2", colour=live, timeout=30)
        assert_promise(proj)
        commit(proj.app, "v3")
        run_ok(proj, "release")
        assert_promise(proj)
    stream.assert_exactly_once()
    assert_one_clock(proj.jobs)
