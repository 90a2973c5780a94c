"""Stage, promote, canary and --watch (issue 14), end to end under load.

The load is scripts/loadgen.py's; for a canary every request comes as a
different client (its own User-Agent), since nginx's split_clients picks
the colour per client and the loopback load has one address.
"""

import http.client
import json
import time

import loadgen
from released import (background, container_states, fab, history_json, interrupt, output, serves, state_file,
                      status_json, summary_json, version, wait_until)



def load(project, many_clients=False, **kwargs):
    options = dict(rate_fresh=60, rate_keepalive=20, threads_fresh=3, keepalive_connections=2,
                   timeout=3.0, max_seconds=180, max_requests=20000)
    options.update(kwargs)
    return loadgen.Load(project.public_port, distinct_clients=many_clients, **options)


def get_as(project, client):
    """GET /version through nginx as one client -> (status, colour, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", project.public_port, timeout=5)
    try:
        conn.request("GET", "/version", headers={"User-Agent": client})
        resp = conn.getresponse()
        return resp.status, resp.getheader("X-Deploy-Colour"), resp.read().decode().strip()
    finally:
        conn.close()


def describe(failures, limit=6):
    return "; ".join(f"{r.t:.2f}s {r.client} {r.error} ({r.colour or '-'})"
                     for r in failures[:limit])


def failure_json(result):
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, output(result)
    return json.loads(lines[-1])


def test_stage_then_qa_then_promote_under_load(loophost_current, make_project):
    project = make_project(host=loophost_current)
    fab(project, "setup")  # v1 in blue
    project.app.commit("v2")
    # PRE_SWITCH_CMD runs at promotion, not at staging: one that fails lets
    # the stage pass and stops the first promotion.
    project.set(PRE_SWITCH_CMD="exit 3")
    traffic = load(project).start()
    try:
        staged = summary_json(fab(project, "release", "--no-switch", "--json"))
        assert staged["result"] == "staged" and staged["target"] == "green", staged
        assert "preview" in staged["qa"] and str(project.green_port) in staged["qa"], staged
        # QA reaches the staged colour on its port; the public port still serves v1.
        assert version(project, port=project.green_port) == "v2"
        assert version(project) == "v1"
        status = status_json(project)
        assert status["live"] == "blue"
        assert status["colours"]["green"]["role"] == "staged", status["colours"]
        # A staged colour never becomes live through rollback (nor switch).
        r = fab(project, "rollback", code=1)
        assert "promote" in output(r) and "never live" in output(r), output(r)
        fab(project, "switch", "--to", "green", code=1)
        assert version(project) == "v1"

        r = fab(project, "promote", code=1)
        assert "PRE_SWITCH_CMD failed" in output(r), output(r)
        assert version(project) == "v1"
        project.set(PRE_SWITCH_CMD=None)

        promoted = summary_json(fab(project, "promote", "--json"))
        assert promoted["result"] == "promoted" and promoted["live"] == "green", promoted
        serves(project, "v2", "green")
        time.sleep(0.5)
    finally:
        records = traffic.stop()
    failures = [r for r in records if not r.ok]
    assert len(records) > 200, f"only {len(records)} requests: the load did not run"
    assert not failures, f"{len(failures)} of {len(records)} failed: {describe(failures)}"
    assert {r.version for r in records} == {"v1", "v2"}
    status = status_json(project)
    assert status["live"] == "green" and status["colours"]["green"]["role"] == "live"
    assert "pending" not in state_file(project)["colours"]["green"]
    results = [(e["task"], e["result"]) for e in history_json(project)]
    assert ("release", "staged") in results and ("promote", "promoted") in results, results
    # Nothing staged any more: promote refuses, exit 1.
    r = fab(project, "promote", code=1)
    assert "nothing is staged" in output(r), output(r)


def test_a_canary_of_a_version_whose_pages_fail_is_reverted_by_the_watch(
        loophost_current, make_project):
    # The current nginx: the only failures the load may see are the canary's 500s.
    project = make_project(host=loophost_current)
    fab(project, "setup")  # v1 in blue
    project.app.commit("v2", kind="pages500")  # health 200, every page 500
    traffic = load(project, many_clients=True, rate_fresh=80, rate_keepalive=20).start()
    try:
        time.sleep(0.5)
        started = traffic.now()
        r = fab(project, "release", "--canary", "20", "--watch", "30", "--json", code=1)
        ended = traffic.now()
        time.sleep(1.0)
    finally:
        records = traffic.stop()
    failed = failure_json(r)
    assert failed["result"] == "reverted" and failed["live"] == "blue", failed
    watch = failed["watch"]
    assert watch["verdict"] == "revert" and watch["colours"]["green"]["errors"] > 0, watch
    # How fast it reverts is a figure of bench/watch.py, not a bound here: the
    # watch must have reverted before its 30 s were up.
    assert watch["seconds"] < 30, f"the watch ran its full time before reverting: {watch}"
    # The load's failures are the canary's 500s, bounded by its share.
    failures = [r for r in records if not r.ok]
    assert failures, "the canary's 500s never reached the load"
    assert {(r.error, r.colour) for r in failures} == {("http 500", "green")}, describe(failures)
    window = [r for r in records if failures[0].t <= r.t <= failures[-1].t]
    share = len(failures) / len(window)
    assert share <= 0.35, f"{len(failures)} of {len(window)} in the canary window failed"
    assert started < failures[0].t < ended
    serves(project, "v1", "blue")
    assert all(r.ok for r in records if r.t > ended + 0.2), "requests failed after the revert"
    status = status_json(project)
    assert status["live"] == "blue" and status["canary"] is None
    assert status["colours"]["green"]["role"] == "reverted", status["colours"]["green"]
    last = history_json(project)[-1]
    assert last["result"] == "reverted" and last["watch"]["verdict"] == "revert", last
    r = fab(project, "rollback", code=1)
    # A reverted build is never promoted: nothing suggests it.
    assert "release again" in output(r) and "fab -H testhost promote" not in output(r), output(r)


def test_a_good_canary_is_promoted_by_its_watch(loophost_current, make_project):
    project = make_project(host=loophost_current)
    fab(project, "setup")
    project.app.commit("v2")
    traffic = load(project, many_clients=True).start()
    try:
        time.sleep(0.5)
        r = fab(project, "release", "--canary", "20", "--watch", "6", "--stop-old", "--json")
        serves(project, "v2", "green")
        time.sleep(0.5)
    finally:
        records = traffic.stop()
    summary = summary_json(r)
    assert summary["result"] == "promoted" and summary["live"] == "green", summary
    assert summary["watch"]["verdict"] == "ok" and summary["watch"]["promoted"], summary
    assert summary["watch"]["colours"]["green"]["requests"] >= 20, summary["watch"]
    failures = [r for r in records if not r.ok]
    assert not failures, f"{len(failures)} of {len(records)} failed: {describe(failures)}"
    canary_phase = [r for r in records if r.version == "v2"]
    assert canary_phase, "the canary never answered the load"
    results = [e["result"] for e in history_json(project)]
    assert results[-2:] == ["canary", "promoted"], results
    # --stop-old: the old colour stopped once the watch ended clean.
    assert wait_until(lambda: container_states(project).get("blue") == "exited"), \
        container_states(project)


def test_a_full_release_whose_pages_fail_is_reverted_and_the_old_colour_kept(project):
    fab(project, "setup")
    project.app.commit("v2", kind="pages500")
    traffic = load(project, rate_fresh=60, rate_keepalive=0).start()
    try:
        time.sleep(0.5)
        r = fab(project, "release", "--watch", "30", "--stop-old", "--json", code=1)
        time.sleep(0.5)
    finally:
        records = traffic.stop()
    failed = failure_json(r)
    assert failed["result"] == "reverted" and failed["watch"]["verdict"] == "revert", failed
    assert failed["watch"]["reverted_after_first_5xx"] < 4, failed["watch"]
    assert "switching everyone back to blue" in r.stderr, r.stderr
    serves(project, "v1", "blue")
    assert container_states(project)["blue"] == "running"  # --stop-old only after a clean watch
    assert state_file(project)["live"] == "blue"
    assert state_file(project)["colours"]["green"]["pending"] == "reverted"
    failures = [rec for rec in records if not rec.ok]
    assert failures and all(rec.colour == "green" for rec in failures), describe(failures)
    assert status_json(project)["lock"] is None


def test_rollback_during_a_canary_and_a_canary_too_quiet_to_judge(project):
    fab(project, "setup")
    project.app.commit("v2")
    # No traffic: the watch cannot judge, so the canary is left running.
    r = fab(project, "release", "--canary", "30", "--watch", "2")
    assert "NOT promoted" in output(r), output(r)
    status = status_json(project)
    assert status["canary"] == {"colour": "green", "percent": 30}, status["canary"]
    assert status["colours"]["green"]["role"] == "canary"
    assert status["colours"]["green"]["percent"] == 30
    assert "canary: green 30%" in fab(project, "status").stdout
    # Both colours answer through nginx, each client (its User-Agent) stickily.
    colours = {}
    for n in range(60):
        for _ in range(2):
            status, colour, body = get_as(project, f"client-{n}")
            assert status == 200, (status, body)
            colours.setdefault(n, set()).add((colour, body))
    assert all(len(answers) == 1 for answers in colours.values()), colours
    assert set().union(*colours.values()) == {("blue", "v1"), ("green", "v2")}, colours
    # A second release while the canary runs would rebuild it under its clients.
    r = fab(project, "release", code=1)
    assert "canary" in output(r)

    fab(project, "rollback")
    serves(project, "v1", "blue")
    status = status_json(project)
    assert status["live"] == "blue" and status["canary"] is None
    assert status["colours"]["green"]["role"] == "staged"
    # Its build was never live for everyone: rollback does not go there.
    r = fab(project, "rollback", code=1)
    assert "promote" in output(r)
    fab(project, "promote")
    serves(project, "v2", "green")


def test_ctrl_c_during_a_watch_keeps_the_recorded_switch_and_drops_the_lock(project, tmp_path):
    fab(project, "setup")
    project.app.commit("v2")
    log = tmp_path / "watch.log"
    with background(project, "release", "--watch", "60", log=log) as run:
        text = interrupt(run, log, once="watch ")
    assert run.returncode == 130, text
    assert "watch interrupted" in text and "Traceback" not in text, text
    assert "promote" not in text, text  # a plain release has nothing to promote
    assert "fab -H testhost rollback" in text, text  # the way back it offers instead
    status = status_json(project)
    assert status["live"] == "green" and status["lock"] is None, status
    assert state_file(project)["live"] == "green"
    serves(project, "v2", "green")


def test_bad_input_changes_nothing(project):
    for args, env, word in (
            (("--canary", "0"), None, "--canary"),
            (("--canary", "100"), None, "--canary"),
            (("--canary", "ten"), None, "--canary"),
            (("--watch", "-5"), None, "--watch"),
            (("--no-switch", "--canary", "10"), None, "--no-switch"),
            ((), {"BLUEGREEN_WATCH_MAX_ERROR_RATE": "2"}, "WATCH_MAX_ERROR_RATE"),
            ((), {"BLUEGREEN_WATCH_MIN_REQUESTS": "lots"}, "WATCH_MIN_REQUESTS")):
        r = fab(project, "release", *args, env=env, code=2)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert lines and word in lines[0] and r.stdout == "", (args, env, output(r))
    r = fab(project, "promote", "--watch", "nope", code=2)
    assert "--watch" in output(r)
    assert not project.deploy_dir.exists(), "bad input reached the host"
