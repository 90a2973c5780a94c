"""The screen tells the truth (issue 34): status, releases, repair and history name
what each colour's container runs; failed and reverted builds are no kept
releases; a release that would change nothing touches nothing; `release --plan`;
`remove --yes`; friendlier input.

One project lives for the module; the tests run in file order and each
starts from what the one before left.
"""

import json
import subprocess

import pytest

import loophost as lh
from released import (fab, history_json, module_project, output, serves, state_file,
                      status_json)

FAST = {"HEALTH_INTERVAL": "0.2", "HEALTH_PASSES": "1", "HEALTH_TIMEOUT": "8",
        "DRAIN_TIMEOUT": "0", "STOP_TIMEOUT": "1"}


@pytest.fixture(scope="module")
def p(request, tmp_path_factory, loophost_current):
    """v1 set up in blue, then v2 released into green: green live, blue idle on v1."""
    for project in module_project(request, tmp_path_factory, loophost_current, setup=True,
                                  **FAST):
        project.app.commit("v2")
        fab(project, "release")
        serves(project, "v2", colour="green")
        yield project


def releases_json(p):
    r = fab(p, "releases", "--json")
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def test_a_failed_build_is_no_release_and_repair_records_what_runs(p):
    v1, v2 = p.app.commits["v1"], p.app.commits["v2"]
    v3 = p.app.commit("v3", kind="crash")
    r = fab(p, "release", code=1)
    assert "blue" in output(r)
    # blue's checkout holds v3; its container runs v1 again.
    fab(p, "repair")
    state = state_file(p)
    assert state["colours"]["blue"]["commit"] == v1, state
    assert state["colours"]["green"]["commit"] == v2 and state["live"] == "green"
    status = status_json(p)
    assert status["colours"]["blue"]["commit"] == v1 and status["drift"] is None, status
    rows = releases_json(p)
    assert {row["commit"] for row in rows} == {v1, v2}, rows
    assert all(row["ever_live"] for row in rows), rows
    # rollback --to the crashing build: refused before anything changes.
    before = len(history_json(p, "--lines", "100"))
    r = fab(p, "rollback", "--to", v3[:12], code=1)
    assert f"release --ref {v3}" in output(r), output(r)
    assert len(history_json(p, "--lines", "100")) == before
    serves(p, "v2", colour="green")


def test_status_says_when_a_colour_runs_another_commit_than_recorded(p):
    v1, v2 = p.app.commits["v1"], p.app.commits["v2"]
    path = p.deploy_dir / "state.json"
    saved = path.read_text()
    state = json.loads(saved)
    state["colours"]["blue"]["commit"] = v2  # what a fab killed after its record leaves
    path.write_text(json.dumps(state))
    try:
        status = status_json(p)
        assert status["colours"]["blue"]["commit"] == v1, status
        assert status["colours"]["blue"]["drift"] and "blue runs" in status["drift"], status
        assert "drift:" in output(fab(p, "status"))
    finally:
        path.write_text(saved)


def test_plan_changes_nothing_and_says_what_a_release_would_do(p):
    v4 = p.app.commit("v4")
    lock, history = p.deploy_dir / ".lock", len(history_json(p, "--lines", "100"))
    saved = (p.deploy_dir / "state.json").read_text()
    r = fab(p, "release", "--plan", "--watch", "2m")  # durations as BUILD_TIMEOUT takes them
    out = output(r)
    for needle in ("target:     blue", f"@ {v4[:12]}", "build:      on the host",
                   "workers:", "pre-switch: none", "outcome:    a release into blue"):
        assert needle in out, out
    assert not lock.exists() and (p.deploy_dir / "state.json").read_text() == saved
    assert len(history_json(p, "--lines", "100")) == history
    fab(p, "release")
    serves(p, "v4", colour="blue")


def test_a_release_that_would_change_nothing_touches_nothing(p):
    v4, v2 = p.app.commits["v4"], p.app.commits["v2"]
    history = len(history_json(p, "--lines", "100"))
    saved = (p.deploy_dir / "state.json").read_text()
    r = fab(p, "release", "--ref", v4)  # queued behind a release of the same commit
    assert f"nothing to release: blue already runs {v4[:12]}" in output(r), output(r)
    assert (p.deploy_dir / "state.json").read_text() == saved
    assert len(history_json(p, "--lines", "100")) == history
    assert status_json(p)["colours"]["green"]["commit"] == v2  # the rollback target stays
    r = fab(p, "release", "--plan", "--ref", v4)
    assert "outcome:    nothing to release" in output(r), output(r)
    # A changed setting (a rendered file differs) is a real release.
    p.set(CLIENT_MAX_BODY_SIZE="20m")
    try:
        r = fab(p, "release", "--ref", v4)
        assert "released green" in output(r), output(r)
    finally:
        p.set(CLIENT_MAX_BODY_SIZE=None)
    r = fab(p, "release", "--force", "--ref", v4)
    assert "released blue" in output(r), output(r)


def test_a_plain_release_says_which_branch_its_colour_follows(p):
    p.app.commit("f1", branch="feature")
    fab(p, "release", "--branch", "feature")  # green now follows feature
    serves(p, "f1", colour="green")
    p.app.commit("v5")
    r = fab(p, "release", "--plan")
    assert "follows branch main, the live green follows feature" in output(r), output(r)
    r = fab(p, "release")
    first = output(r).splitlines()[:6]
    assert any("follows branch main, the live green follows feature" in x for x in first), first
    serves(p, "v5", colour="blue")


def test_did_you_mean_a_branch_or_a_host(p):
    r = fab(p, "release", "--branch", "mian", code=1)
    assert "did you mean main?" in output(r), output(r)
    r = fab(p, "-H", "testhots", "status", code=3)
    assert "did you mean testhost?" in output(r), output(r)


def test_one_meaning_per_short_flag_and_one_seconds_syntax(p):
    out = output(fab(p, "--help", "release"))
    assert "-c STRING, --canary" not in out and "--canary=STRING" in out  # -c: --colour
    assert "-t STRING, --watch" not in out and "-w STRING, --wait-lock" in out
    out = output(fab(p, "--help", "promote"))
    assert "-a STRING, --wait-lock" not in out and "-w STRING, --wait-lock" in out
    # --watch 2m as BUILD_TIMEOUT=2m: accepted (then nothing is staged: exit 1).
    r = fab(p, "promote", "--watch", "2m", code=1)
    assert "nothing is staged" in output(r), output(r)


def test_remove_takes_the_app_off_and_leaves_other_apps(p):
    other = f"bluegreen-{p.name}x"
    image = f"bluegreen-{p.name}:{p.app.commits['v5']}"
    lh.docker("tag", image, f"{other}:keep", check=True)
    # Another app's container (from an image of its own: an image of this app
    # carries this app's Compose project label into any container made from it).
    lh.docker("create", "--name", f"{p.name}x-keep", "--label", f"bluegreen.app={p.name}x",
              lh.base_image(), "true", check=True)
    try:
        r = fab(p, "remove", code=2)
        assert "would remove: container" in output(r) and "remove --yes" in output(r)
        assert (p.deploy_dir / "state.json").exists()
        r = fab(p, "remove", "--yes")
        assert f"removed {p.name}" in output(r), output(r)
        assert not p.deploy_dir.exists() and not p.nginx_file.exists()
        left = subprocess.run(["docker", "ps", "-a", "--filter", f"label=bluegreen.app={p.name}",
                               "-q"], capture_output=True, text=True).stdout.split()
        assert left == []
        tags = subprocess.run(["docker", "images", f"bluegreen-{p.name}", "-q"],
                              capture_output=True, text=True).stdout.split()
        assert tags == []
        assert subprocess.run(["docker", "image", "inspect", f"{other}:keep"],
                              capture_output=True).returncode == 0
        assert subprocess.run(["docker", "container", "inspect", f"{p.name}x-keep"],
                              capture_output=True).returncode == 0
        # remove + setup: the app comes back as new.
        fab(p, "setup")
        serves(p, "v5", colour="blue")
    finally:
        subprocess.run(["docker", "rm", "-f", f"{p.name}x-keep"], capture_output=True)
        subprocess.run(["docker", "rmi", f"{other}:keep"], capture_output=True)
