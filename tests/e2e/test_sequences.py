"""Promises that break under sequences of operations (issue 26, parts 1 and 7).

Each test is a sequence a newcomer ran by following the docs: a reverted
release, then a fix, then a plain release; a watch's revert, then promote;
an unjudged watch with --stop-old; a release with BLUEGREEN_GREEN_BRANCH;
a failed release, then rollbacks. Every step is the real `fab` against the
loopback host.
"""

import json
import os
import subprocess
import time

import loadgen
import yaml
from released import (container_states, fab, history_json, no_traceback, output, serves,
                      state_file, status_json, summary_json, wait_until)

# Few requests suffice to judge: the load below is light on a shared machine.
WATCH = {"WATCH_MIN_REQUESTS": "8"}


def load(project):
    """Light load from many clients (a canary's share is picked per client)."""
    return loadgen.Load(project.public_port, distinct_clients=True, rate_fresh=40,
                        rate_keepalive=0, threads_fresh=2, timeout=3.0, max_seconds=180,
                        max_requests=20000)


def no_promote_suggested(result):
    """No line of the output offers `promote` (a reverted build is never promoted)."""
    lines = [line for line in output(result).splitlines() if "promote" in line
             and "never promoted" not in line and "promoted" not in line.split("promote", 1)[0]]
    assert not [line for line in lines if "fab" in line and " promote" in line], output(result)


def test_a_reverted_branch_canary_does_not_poison_the_next_release(project):
    project.set(**WATCH)
    fab(project, "setup")  # v1 of main in blue
    project.app.commit("broken", kind="pages500", branch="broken")
    traffic = load(project).start()
    try:
        r = fab(project, "release", "--branch", "broken", "--canary", "20", "--watch", "30",
                code=1)
    finally:
        traffic.stop()
    assert "reverted by the watch" in output(r), output(r)
    green = state_file(project)["colours"]["green"]
    assert green["pending"] == "reverted" and green.get("branch") in (None, "main"), green
    no_promote_suggested(r)

    project.app.commit("v3")  # the fix, on main
    summary = summary_json(fab(project, "release", "--json"))
    assert summary["branch"] == "main" and summary["live"] == "green", summary
    serves(project, "v3", "green")
    green = state_file(project)["colours"]["green"]
    assert green["branch"] == "main" and "pending" not in green and "build" not in green, green
    entries = history_json(project, "--lines", "10")
    assert [(e["result"], e["branch"]) for e in entries if e["task"] == "release"] == [
        ("canary", "broken"), ("reverted", "broken"), ("ok", "main")], entries
    # And the release after it follows main too.
    project.app.commit("v4")
    assert summary_json(fab(project, "release", "--json"))["branch"] == "main"
    serves(project, "v4", "blue")


def test_a_build_its_watch_reverted_is_never_promoted(project):
    project.set(**WATCH)
    fab(project, "setup")
    sha = project.app.commit("v2", kind="pages500")
    traffic = load(project).start()
    try:
        r = fab(project, "release", "--ref", sha, "--watch", "20", code=1)
    finally:
        traffic.stop()
    assert "reverted by the watch" in output(r), output(r)
    no_promote_suggested(r)
    before = state_file(project)
    r = fab(project, "promote", code=1)
    assert "reverted" in output(r) and "never promoted" in output(r), output(r)
    no_promote_suggested(r)
    r = fab(project, "rollback", code=1)
    no_promote_suggested(r)
    serves(project, "v1", "blue")
    after = state_file(project)
    assert after["live"] == "blue" and after["colours"] == before["colours"]
    # The reverted --ref left blue's... and green's recorded ref as before: none.
    assert "ref" not in after["colours"]["green"], after["colours"]["green"]
    assert status_json(project)["colours"]["green"]["role"] == "reverted"


def test_promote_watch_reverts_a_bad_staged_build(project):
    """promote --watch: would exit 0 and leave the 5xx build live if --watch were ignored."""
    project.set(**WATCH)
    fab(project, "setup")
    project.app.commit("v2", kind="pages500")
    fab(project, "release", "--no-switch")
    traffic = load(project).start()
    try:
        r = fab(project, "promote", "--watch", "20", "--stop-old", code=1)
    finally:
        traffic.stop()
    assert "reverted by the watch" in output(r), output(r)
    serves(project, "v1", "blue")
    assert container_states(project)["blue"] == "running"  # not stopped: the watch was not clean
    assert "stopped blue" not in output(r), output(r)
    assert state_file(project)["colours"]["green"]["pending"] == "reverted"


def test_promote_stop_old_after_an_unjudged_watch_keeps_the_old_colour(project):
    """Too few requests to judge is not clean: --stop-old stops nothing, and says so."""
    fab(project, "setup")
    project.app.commit("v2")
    fab(project, "release", "--no-switch")
    r = fab(project, "promote", "--watch", "2", "--stop-old")
    serves(project, "v2", "green")
    text = output(r)
    assert "too few" in text and "blue keeps running" in text, text
    assert "stopped blue" not in text, text
    assert container_states(project)["blue"] == "running"
    project.app.commit("v3")  # main's newest is live in green: a new one to release
    r = fab(project, "release", "--watch", "2", "--stop-old")  # the same on a release
    assert "green keeps running" in output(r) and "stopped green" not in output(r), output(r)
    assert container_states(project)["green"] == "running"


def test_promote_stop_old_stops_the_old_colour(project):
    """promote --stop-old (no watch): the old colour is stopped; ignored, it would run."""
    fab(project, "setup")
    project.app.commit("v2")
    fab(project, "release", "--no-switch")
    summary = summary_json(fab(project, "promote", "--stop-old", "--json"))
    assert summary["stopped"] == "blue", summary
    serves(project, "v2", "green")
    assert wait_until(lambda: container_states(project).get("blue") == "exited"), \
        container_states(project)
    # The kept release of the stopped colour comes back with rollback --to, as the hint says.
    r = fab(project, "rollback", code=1)
    blue = state_file(project)["colours"]["blue"]["commit"][:12]
    assert f"rollback --to {blue}" in output(r), output(r)
    fab(project, "rollback", "--to", blue)
    serves(project, "v1", "blue")


def test_releases_and_status_name_what_a_promotion_and_an_env_branch_deployed(project):
    fab(project, "setup")  # blue: main v1
    project.app.commit("v2")
    fab(project, "release")  # green: main v2
    project.app.commit("f1", branch="feature")
    # BLUEGREEN_BLUE_BRANCH: deployed (and named) for this run; blue still follows main.
    r = fab(project, "release", "--json", env={"BLUEGREEN_BLUE_BRANCH": "feature"})
    assert summary_json(r)["branch"] == "feature"
    serves(project, "f1", "blue")
    assert history_json(project)[-1]["branch"] == "feature"
    blue = status_json(project)["colours"]["blue"]
    assert (blue["branch"], blue["follows"]) == ("feature", "main"), blue
    assert "feature (next release: main)" in fab(project, "status").stdout
    kept = [json.loads(line) for line in fab(project, "releases", "--json").stdout.splitlines()]
    assert [k["branch"] for k in kept if "blue" in k["colours"]] == ["feature"], kept

    project.app.commit("s1", branch="staging")
    fab(project, "release", "--no-switch", "--branch", "staging")  # into green
    assert state_file(project)["colours"]["green"]["branch"] == "main"  # staged: not recorded
    time.sleep(1.1)  # release times are whole seconds
    fab(project, "promote")
    serves(project, "s1", "green")
    assert state_file(project)["colours"]["green"]["branch"] == "staging"
    kept = [json.loads(line) for line in fab(project, "releases", "--json").stdout.splitlines()]
    top = kept[0]
    assert top["branch"] == "staging" and top["released_at"] and "green" in top["colours"], kept


def test_a_failed_colour_clears_once_it_went_live_and_a_canary_rollback_is_logged(project):
    fab(project, "setup")  # blue v1
    project.app.commit("v2")
    fab(project, "release")  # green v2 live
    project.app.commit("v3", kind="http500")  # never healthy
    fab(project, "release", code=1)  # into blue: failed, restored to v1
    assert status_json(project)["colours"]["blue"]["role"] == "failed"
    fab(project, "rollback")  # blue (v1) serves everyone
    fab(project, "rollback")  # green again; blue idle, not failed
    assert status_json(project)["colours"]["blue"]["role"] == "idle"

    project.app.commit("v4")
    fab(project, "release", "--canary", "30")  # blue canary
    fab(project, "rollback")
    last = history_json(project)[-1]
    assert (last["task"], last["from"], last["to"], last.get("was")) == (
        "rollback", "blue", "green", "canary"), last
    serves(project, "v2", "green")


def test_force_unlock_of_a_gone_holder_says_so_and_is_recorded(project):
    # (Ctrl-C in a plain release's watch: test_stage_canary.py.)
    fab(project, "setup")
    project.app.commit("v2")
    # A lock left by a process of this machine that is gone.
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock = project.deploy_dir / ".lock"
    lock.mkdir()
    (lock / "owner.json").write_text(json.dumps({
        "pid": gone.pid, "machine": os.uname().nodename, "user": "someone",
        "command": "fab release", "started_at": int(time.time())}) + "\n")
    fab(project, "release", code=4)
    r = fab(project, "release", "--force-unlock")
    assert "--force-unlock: removing the lock of a process that is gone" in output(r), output(r)
    entries = history_json(project, "--lines", "5")
    assert any(e["task"] == "lock" and e["result"] == "force-unlocked" for e in entries), entries


def test_stumbles_of_a_newcomer_before_and_after_setup(project):
    # check before setup, DEPLOY_DIR's parent missing: the space where it will be.
    deep = project.base / "not" / "yet" / "srv"
    project.set(DEPLOY_DIR=str(deep))
    r = project.fab("check")
    no_traceback(r)
    assert "could not read free space" not in output(r), output(r)
    assert "it does not exist yet" in output(r), output(r)
    project.set(DEPLOY_DIR=str(project.deploy_dir))

    # --no-switch --stop-old: the refusal names --stop-old, before connecting.
    r = fab(project, "release", "--no-switch", "--stop-old", code=2)
    assert "--stop-old" in r.stderr.splitlines()[0], r.stderr

    # Two hosts (two names for the test host): render renders for each, logs
    # prefixes each line with its host.
    hosts = yaml.safe_load(project.hosts_file.read_text())
    hosts["hosts"]["second"] = dict(hosts["hosts"][project.HOST_NAME])
    project.hosts_file.write_text(yaml.safe_dump(hosts, sort_keys=False))
    r = fab(project, "-H", f"{project.HOST_NAME},second", "render")
    assert "rendered for host testhost" in r.stdout and "rendered for host second" in r.stdout
    fab(project, "setup")
    r = fab(project, "-H", f"{project.HOST_NAME},second", "logs", "--lines", "3")
    lines = [line for line in r.stdout.splitlines()
             if line.strip() and not line.startswith("logs: done:")]
    assert lines and all(line.startswith(("testhost | ", "second | ")) for line in lines), lines
    assert {line.split(" | ")[0] for line in lines} == {"testhost", "second"}, lines
