"""Zero downtime, kept honest: real releases and a rollback under load, and
an old colour that is stopped only after nginx has finished with it.

The load is bench/loadgen.py, the same client the benchmark reports with
(bench/zero_downtime.py), at a rate this shared 2-core machine keeps up with.
"""

import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "bench"))

import loadgen  # noqa: E402

FAB_TIMEOUT = 240  # other engineers run e2e tests on this 2-core machine at the same time


def fab(project, *args):
    r = project.fab(*args, timeout=FAB_TIMEOUT, check=0)
    assert "Traceback" not in r.stdout + r.stderr
    return r


def describe(failures, limit=8):
    return "; ".join(f"{r.t:.2f}s {r.client} {r.error} (colour {r.colour or '-'})"
                     for r in failures[:limit])


def test_no_request_fails_across_two_releases_and_a_rollback(project):
    fab(project, "setup")
    load = loadgen.Load(project.public_port, rate_fresh=60, rate_keepalive=0,
                        threads_fresh=3, timeout=3.0, max_seconds=120, max_requests=5000)
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
    failures = [r for r in records if not r.ok]
    assert len(records) >= 200, f"only {len(records)} requests: the load did not run"
    assert not failures, (f"{len(failures)} of {len(records)} requests on fresh "
                          f"connections failed: {describe(failures)}")
    seen = [r.version for r in records]
    assert {"v1", "v2", "v3"} <= set(seen), f"versions answered: {sorted(set(seen))}"
    # In order: v1 until the first switch, then v2, v3, and v2 again at the end.
    order = [v for i, v in enumerate(seen) if i == 0 or v != seen[i - 1]]
    assert order[0] == "v1" and order[-1] == "v2", order
    assert records[-1].colour == "green"


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
