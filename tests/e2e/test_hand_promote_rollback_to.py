"""Two hand-driven moves under client load, 0 failed requests each:

- a running canary promoted by hand (`release --canary P`, then `promote`):
  during the canary both versions answer, after the promote only the new one,
  and `status` and the history say so;
- `rollback --to COMMIT` to an older kept release: its image starts in the
  idle colour (no git, no build), then everyone is switched to it.

The load: fresh and keep-alive connections, every request a distinct client
(nginx's split_clients picks a canary's colour per client), on the current
nginx (no keep-alive resets to excuse).
"""

import loadgen
from released import fab, history_json, output, serves, status_json


def start_load(p):
    return loadgen.Load(p.public_port, rate_fresh=40, rate_keepalive=20, threads_fresh=2,
                        keepalive_connections=2, timeout=5.0, max_seconds=900,
                        distinct_clients=True, name="clients").start()


def versions_after(records, t):
    return {r.version for r in records if r.t >= t and r.ok}


def test_a_running_canary_promoted_by_hand_under_load(make_project, loophost_current):
    p = make_project(host=loophost_current)
    fab(p, "setup")
    v2 = p.app.commit("v2")
    load = start_load(p)
    try:
        r = fab(p, "release", "--canary", "30")
        assert "canary" in output(r), output(r)
        status = status_json(p)
        assert status["colours"]["green"]["role"] == "canary", status
        assert status["colours"]["green"]["percent"] == 30, status
        # Both versions answer while the canary runs.
        canary_from = load.now()
        load.wait_for(load.sent + 200, timeout=120)
        assert versions_after(load.snapshot(), canary_from) == {"v1", "v2"}
        r = fab(p, "promote")
        promoted_at = load.now()
        serves(p, "v2", colour="green")
        load.wait_for(load.sent + 100, timeout=120)
    finally:
        records = load.stop()
    summary = loadgen.summarise(records)
    assert summary.total.failed == 0 and summary.total.sent >= 300, summary.text()
    # Once nginx's old workers are gone only v2 answers (a second is plenty).
    assert versions_after(records, promoted_at + 1.0) == {"v2"}, summary.text()
    status = status_json(p)
    assert status["live"] == "green" and status["canary"] is None, status
    assert status["colours"]["green"]["role"] == "live"
    assert status["colours"]["green"]["commit"] == v2
    last = history_json(p)[-1]
    assert (last["task"], last["result"], last["commit"]) == ("promote", "promoted", v2), last


def test_rollback_to_a_kept_release_under_load(make_project, loophost_current):
    p = make_project(host=loophost_current)
    fab(p, "setup")  # v1 in blue
    v1 = p.app.commits["v1"]
    p.app.commit("v2")
    fab(p, "release")  # v2 in green
    p.app.commit("v3")
    fab(p, "release")  # v3 in blue; green keeps v2
    serves(p, "v3", colour="blue")
    load = start_load(p)
    try:
        r = fab(p, "rollback", "--to", v1[:8])  # a unique prefix, as the README allows
        switched_at = load.now()
        serves(p, "v1", colour="green")
        load.wait_for(load.sent + 100, timeout=120)
    finally:
        records = load.stop()
    out = output(r)
    assert "git" not in [line.split()[1] for line in out.splitlines()
                         if len(line.split()) > 1 and line.startswith(p.HOST_NAME)], out
    summary = loadgen.summarise(records)
    assert summary.total.failed == 0 and summary.total.sent >= 100, summary.text()
    assert versions_after(records, switched_at + 1.0) == {"v1"}, summary.text()
    status = status_json(p)
    assert status["live"] == "green" and status["colours"]["green"]["commit"] == v1, status
    assert status["colours"]["blue"]["commit"] == p.app.commits["v3"]  # kept for rollback
    last = history_json(p)[-1]
    assert (last["result"], last["commit"]) == ("ok", v1), last
