"""Kept releases of the real web stack (pyweb, bridge mode): releases under
load prune the app's images to KEEP_RELEASES, `releases --json` lists them,
`rollback --to` starts an older one with no git and no build, and bad
`--to` values stop with one clear line.

One project lives for the module; the tests run in file order.
"""

import json

import pytest

import loadgen
import loophost as lh
from released import (fab, module_project, output, serves, state_file, status_json,
                      summary_json)

KEEP = 3


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, loophost_current):
    """pyweb "v1" set up in blue, KEEP_RELEASES=3, in bridge mode."""
    for project in module_project(request, tmp_path_factory, loophost_current, setup=True,
                                  kind="pyweb", slow=1, KEEP_RELEASES=KEEP, HEALTH_TIMEOUT=60, DRAIN_TIMEOUT=5):
        yield project


def commit_images(project):
    """{commit: image id} of the app's commit-tagged images."""
    r = lh.docker("images", "--no-trunc", "--format", "{{.Tag}} {{.ID}}",
                  f"bluegreen-{project.name}")
    found = {}
    for line in lh.nonblank_lines(r):
        tag, image = line.split()
        if len(tag) == 40:
            found[tag] = image
    return found


def releases_json(project):
    r = fab(project, "releases", "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert all(row["host"] == project.HOST_NAME for row in rows), rows
    return rows


def test_releases_under_load_keep_only_keep_releases_images(shared_project):
    p = shared_project
    load = loadgen.Load(p.public_port, rate_fresh=30, rate_keepalive=20, threads_fresh=2,
                        keepalive_connections=2, post_path="/upload", timeout=5.0,
                        max_seconds=240, max_requests=20000, name="pyweb releases")
    load.start()
    try:
        for label in ("v2", "v3", "v4"):
            p.app.commit(label, kind="pyweb", slow=1)
            out = output(fab(p, "release"))
            assert " prune " in out, out
    finally:
        records = load.stop()
    # The current nginx keeps keep-alive clients (POSTs included) whole too.
    summary = load.summary()
    print(summary.text())
    summary.require(min_requests=150, max_failed=0, kinds=("fresh",))
    summary.require(min_requests=50, max_failed=0, kinds=("keepalive",))
    assert {"v1", "v2", "v3", "v4"} <= {r.version for r in records}
    serves(p, "v4", colour="green")

    commits = p.app.commits
    kept = commit_images(p)
    assert set(kept) == {commits["v2"], commits["v3"], commits["v4"]}, kept
    # Colour tags point at kept images; nothing untagged is left over.
    assert len(lh.app_image_ids(p.name)) <= KEEP + 2, lh.app_image_ids(p.name)
    assert set(kept.values()) == lh.app_image_ids(p.name)


def test_releases_json_lists_the_kept_releases_and_who_runs_them(shared_project):
    p = shared_project
    commits = p.app.commits
    rows = releases_json(p)
    assert [r["commit"] for r in rows] == [commits["v4"], commits["v3"], commits["v2"]], rows
    by = {r["commit"]: r for r in rows}
    assert by[commits["v4"]]["colours"] == ["green"] and by[commits["v4"]]["live"]
    assert by[commits["v3"]]["colours"] == ["blue"] and not by[commits["v3"]]["live"]
    assert by[commits["v2"]]["colours"] == []
    for row in rows:
        assert row["branch"] == "main" and row["size"] > 0 and row["built_at"], row
    text = fab(p, "releases").stdout
    assert commits["v2"][:12] in text and "green (live)" in text, text


def test_rollback_to_an_older_kept_release_needs_no_git_and_no_build(shared_project):
    p = shared_project
    v2 = p.app.commits["v2"]
    r = fab(p, "rollback", "--to", v2[:7], "--json")
    summary = summary_json(r)
    assert summary["commit"] == v2 and summary["live"] == "blue", summary
    phases = set(summary["phases"])
    assert {"start", "health", "switch", "verify", "record"} <= phases, phases
    assert not phases & {"git", "build"}, phases
    assert " git " not in r.stderr and " build " not in r.stderr, r.stderr
    serves(p, "v2", colour="blue")
    state = state_file(p)
    assert state["live"] == "blue"
    assert state["colours"]["blue"]["commit"] == v2
    assert state["colours"]["blue"]["branch"] == "main"
    assert state["colours"]["blue"]["image"] == commit_images(p)[v2]
    status = status_json(p)
    assert status["live"] == "blue", status
    # The release v2 replaced in blue (v3) is still kept: KEEP_RELEASES=3.
    assert set(commit_images(p)) == {v2, p.app.commits["v3"], p.app.commits["v4"]}


def test_rollback_to_the_live_release_is_refused(shared_project):
    p = shared_project
    r = fab(p, "rollback", "--to", p.app.commits["v2"], code=1)
    assert "already live" in output(r), output(r)
    serves(p, "v2", colour="blue")


def test_rollback_to_a_release_that_is_not_kept_says_how_to_rebuild_it(shared_project):
    p = shared_project
    v1 = p.app.commits["v1"]
    r = fab(p, "rollback", "--to", v1[:10], code=1)
    text = output(r)
    assert "not a kept release" in text and f"release --ref {v1[:10]}" in text, text
    serves(p, "v2", colour="blue")


@pytest.mark.parametrize("value", [";rm -rf /", "abc", "v2", "x" * 70, "--help2"])
def test_rollback_to_a_malformed_commit_is_bad_input_before_connecting(shared_project, value):
    r = fab(shared_project, "rollback", f"--to={value}", code=2)
    text = output(r)
    lines = [line for line in text.splitlines() if line.strip()]
    assert "--to" in lines[0] and "hex" in text, text
    assert "connect" not in text and "lock" not in text, text


def test_rollback_to_an_ambiguous_prefix_is_bad_input(shared_project):
    p = shared_project
    v3 = p.app.commits["v3"]
    # Another kept release whose commit starts like v3's: as two real commits could.
    twin = v3[:6] + ("0" if v3[6] != "0" else "1") + v3[7:]
    image = f"bluegreen-{p.name}"
    assert lh.docker("tag", f"{image}:{v3}", f"{image}:{twin}").returncode == 0
    try:
        r = fab(p, "rollback", "--to", v3[:6], code=2)
        text = output(r)
        assert "matches 2 kept releases" in text, text
        assert status_json(p)["lock"] is None  # the lock was dropped
    finally:
        lh.docker("rmi", f"{image}:{twin}")
    serves(p, "v2", colour="blue")
