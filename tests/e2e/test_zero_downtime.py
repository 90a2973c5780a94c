"""Zero downtime, kept honest: real releases and a rollback under load, and
an old colour that is stopped only after nginx has finished with it.

The load is scripts/loadgen.py, the same client the benchmark reports with
(bench/zero_downtime.py): fresh connections and keep-alive connections (with
POSTs) at a few hundred requests a second in all, from several connections.
"""

import threading
import time

import pytest

import loadgen  # scripts/ is on pytest's pythonpath (pyproject.toml)

FAB_TIMEOUT = 240  # other engineers run e2e tests on this 2-core machine at the same time

# What clients of each nginx may see across switches. Fresh connections never
# fail (a graceful reload); keep-alive ones depend on nginx: Debian's 1.22
# closes idle keep-alive connections as a retiring worker leaves, a few resets
# per switch (bench/README.md), so those are counted and printed, not judged; 1.27.4+
# with keepalive_min_timeout loses none.
NGINX_FLAVOURS = {
    "nginx-distro": {"keepalive_max_failed": None},
    "nginx-current": {"keepalive_max_failed": 0},
}
# (nginx, DOCKER_NETWORK): the default bridge on both nginx versions, and
# host networking on the current one.
CASES = [("nginx-distro", "bridge"), ("nginx-current", "bridge"), ("nginx-current", "host")]

LOAD = dict(rate_fresh=200, threads_fresh=4, rate_keepalive=120, keepalive_connections=4,
            post_path=loadgen.SAMPLE_POST_PATH, post_every=4, timeout=3.0)
BASELINE_SECONDS = 4.0
# Floors under which "0 failed" would say nothing (the switches take 7-15 s:
# 2,200 requests in 6.8 s on a quiet machine).
MIN_FRESH, MIN_KEEPALIVE, MIN_POST = 1000, 500, 100


def fab(project, *args):
    r = project.fab(*args, timeout=FAB_TIMEOUT, check=0)
    assert "Traceback" not in r.stdout + r.stderr
    return r


@pytest.mark.parametrize("flavour,network", CASES, ids=[f"{f}-{n}" for f, n in CASES])
def test_no_request_fails_across_two_releases_and_a_rollback(request, make_project, flavour,
                                                              network):
    expected = NGINX_FLAVOURS[flavour]
    host = request.getfixturevalue("loophost_current" if flavour == "nginx-current"
                                   else "loophost")
    project = make_project(host=host, network=network)
    assert host.nginx.name == flavour
    fab(project, "setup")

    # The same load with no switch: what this machine costs by itself (the
    # busybox app listens with a backlog of 9, so saturation brings timeouts).
    with loadgen.Load(project.public_port, max_seconds=BASELINE_SECONDS + 5,
                      name="baseline (no switch)", **LOAD) as baseline:
        time.sleep(BASELINE_SECONDS)
    base = baseline.summary()

    load = loadgen.Load(project.public_port, max_seconds=150, max_requests=60_000,
                        name="two releases and a rollback", **LOAD)
    load.start()
    try:
        time.sleep(0.5)
        project.app.commit("v2")
        fab(project, "release")  # v2 into green
        project.app.commit("v3")
        fab(project, "release")  # v3 into blue
        fab(project, "rollback")  # back to v2 in green
        time.sleep(0.5)
    finally:
        records = load.stop()
    summary = load.summary()
    print(f"\n{flavour} ({host.nginx.version}), {network} network\n{base.text()}\n"
          f"{summary.text()}")
    print(f"timeouts: {base.total.timeouts} in {base.total.sent} with no switch, "
          f"{summary.total.timeouts} in {summary.total.sent} across the switches")

    base.require(min_requests=int(BASELINE_SECONDS * 100), kinds=("fresh",))
    load.require(min_requests=MIN_FRESH, kinds=("fresh",))
    load.require(min_requests=MIN_KEEPALIVE, max_failed=expected["keepalive_max_failed"],
                 kinds=("keepalive",))
    load.require(min_requests=MIN_POST, max_failed=expected["keepalive_max_failed"],
                 kinds=("keepalive",), methods=("POST",))

    fresh = loadgen.select(records, kinds=("fresh",))
    seen = loadgen.versions_in_order(fresh)
    assert {"v1", "v2", "v3"} <= set(seen), f"versions answered: {seen}"
    # In order: v1 until the first switch, then v2, v3, and v2 again at the end.
    assert seen[0] == "v1" and seen[-1] == "v2", seen
    assert fresh[-1].colour == "green"


def slow_request(project, seconds, into):
    """GET /cgi-bin/slow?N through nginx in a thread; `into` gets the answer and times."""

    def go():
        into["sent"] = time.monotonic()
        into["answer"] = project.get(f"/cgi-bin/slow?{seconds}", timeout=seconds + 30)
        into["done"] = time.monotonic()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def service_state(project, colour):
    return {c["service"]: c["state"] for c in project.containers()}.get(colour)


def test_release_stop_old_waits_for_requests_in_flight_to_the_old_colour(project):
    fab(project, "setup")  # v1 in blue
    project.app.commit("v2")

    # A request in flight to blue through nginx while the release switches to
    # green and stops blue: nginx's old worker is still proxying it.
    slow = {}
    thread = slow_request(project, 8, slow)
    time.sleep(0.5)
    fab(project, "release", "--stop-old")
    released = time.monotonic()
    thread.join(40)
    assert slow["answer"][0] == 200, f"the request in flight failed: {slow['answer']}"
    assert slow["answer"][2] == "slow v1\n", slow["answer"]
    # The release waited for it: blue was stopped only after it was answered.
    assert released >= slow["done"] - 0.05, (
        f"the release ended {slow['done'] - released:.1f}s before the request it had to wait for")
    assert service_state(project, "blue") == "exited"
    assert project.get("/version")[2] == "v2\n"

    # The control: with no time to drain, the same request is cut off, so the
    # check above does measure the drain.
    project.set(DRAIN_TIMEOUT=0)
    project.app.commit("v3")
    slow = {}
    thread = slow_request(project, 8, slow)
    time.sleep(0.5)
    fab(project, "release", "--stop-old")  # v3 into blue, stops green at once
    thread.join(40)
    status, _, body = slow["answer"]
    assert status != 200 or body != "slow v2\n", (
        "with DRAIN_TIMEOUT=0 the request to the stopped colour still succeeded: "
        "the drain check above proves nothing")
    assert service_state(project, "green") == "exited"
    assert project.get("/version")[2] == "v3\n"
