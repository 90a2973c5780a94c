"""The release pipeline as an operator drives it: setup, releases into the
idle colour, rollback, switch, branches and refs, and the phase timings.

One project lives for the whole module; the tests run in file order and
each one reads what is live before it acts, so a failure shows up where it
happens instead of cascading silently.
"""

import json
import os
import time

import pytest

from released import (container_states, fab, history_json, module_project, output,
                      serves, state_file, status_json, summary_json, version)


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, loophost):
    """A project after `fab setup` (v1 live in blue)."""
    for project in module_project(request, tmp_path_factory, loophost):
        project.setup_result = fab(project, "setup")
        yield project


def other(colour):
    return "green" if colour == "blue" else "blue"


def test_setup_releases_the_first_commit_into_blue(shared_project):
    p = shared_project
    out = output(p.setup_result)
    # One line per phase with its duration, then the summary.
    for phase in ("connect", "tools", "dirs", "lock", "git", "build", "start", "health",
                  "switch", "verify", "record"):
        assert any(line.split()[1:2] == [phase] and line.split()[2].endswith("s")
                   for line in out.splitlines() if len(line.split()) > 2), (phase, out)
    v1 = p.app.commits["v1"]
    assert f"released blue: {v1[:12]} (main)" in out

    status, headers, body = serves(p, "v1", colour="blue")
    assert headers["x-deploy-colour"] == "blue"

    # The colour's own port answers too (what preview and rollback rely on).
    assert version(p, port=p.blue_port) == "v1"
    assert container_states(p) == {"blue": "running"}


def test_status_names_the_live_colour_its_branch_and_commit(shared_project):
    p = shared_project
    v1 = p.app.commits["v1"]
    text = fab(p, "status").stdout
    assert "live: blue" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[1:]
            if line.split() and line.split()[0] in ("blue", "green")}
    assert rows["blue"][1:4] == ["live", "main", v1[:12]], text
    assert rows["green"][1] == "idle", text
    assert "lock: free" in text

    s = status_json(p)
    assert s["live"] == "blue"
    assert s["nginx"]["colour"] == "blue" and s["nginx"]["header"] == "blue"
    assert s["nginx"]["port"] == p.blue_port
    blue, green = s["colours"]["blue"], s["colours"]["green"]
    assert (blue["role"], blue["branch"], blue["commit"]) == ("live", "main", v1)
    assert blue["container"] == "running" and blue["healthy"] is True
    assert blue["deployed_at"] and blue["deployed_by"]
    assert (green["role"], green["commit"], green["healthy"]) == ("idle", None, False)
    assert s["lock"] is None and s["drift"] is None and s["state_error"] is None


def test_host_layout_is_as_the_spec_says(shared_project):
    p = shared_project
    d = p.deploy_dir
    for name in ("blue", "green"):
        assert (d / name).is_dir()
    assert (d / "blue" / ".git").is_dir()  # blue is a checkout at the released commit
    compose = (d / "compose.yml").read_text()
    assert f"name: {p.name}" in compose
    assert "\n  blue:\n" in compose and "\n  green:\n" in compose

    state = state_file(p)
    assert state["live"] == "blue"
    blue = state["colours"]["blue"]
    assert blue["commit"] == p.app.commits["v1"] and blue["branch"] == "main"
    assert blue["image"].startswith("sha256:")
    assert {"deployed_at", "deployed_by"} <= set(blue)

    entries = [json.loads(line) for line in
               (d / "history.jsonl").read_text().splitlines() if line.strip()]
    assert [(e["task"], e["result"], e["to"]) for e in entries] == [("setup", "ok", "blue")]

    assert not (d / ".lock").exists()  # dropped once the task ended
    nginx = p.nginx_file.read_text()
    assert nginx.startswith(f"# bluegreen app={p.name} live=blue\n"), nginx[:200]
    assert f"127.0.0.1:{p.blue_port};" in nginx
    # Files are renamed into place: no temporary file is left beside them.
    leftovers = [f.name for f in list(d.iterdir()) + list(p.nginx_file.parent.iterdir())
                 if f.name.endswith(".tmp")]
    assert leftovers == []


def test_setup_again_changes_nothing(shared_project):
    p = shared_project
    before = state_file(p)
    started = _started_at(p, "blue")
    r = fab(p, "setup")
    assert "already set up" in r.stdout and "blue is live" in r.stdout
    assert state_file(p) == before
    assert _started_at(p, "blue") == started  # blue was not rebuilt or restarted
    assert [e["task"] for e in history_json(p)] == ["setup"]  # no new release
    serves(p, "v1", colour="blue")


def test_setup_puts_back_what_is_missing_without_a_release(shared_project):
    p = shared_project
    nginx = p.nginx_file.read_bytes()
    history = history_json(p)
    p.nginx_file.unlink()
    (p.deploy_dir / "history.jsonl").unlink()
    r = fab(p, "setup")
    assert "already set up" in r.stdout and "created history.jsonl" in r.stdout
    assert p.nginx_file.read_bytes() == nginx
    assert history_json(p) == []  # a new, empty audit log; nothing was released
    (p.deploy_dir / "history.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in history))  # keep later tests' view
    serves(p, "v1", colour="blue")


def test_a_second_release_goes_to_the_idle_colour_and_the_old_one_keeps_running(shared_project):
    p = shared_project
    live = status_json(p)["live"]
    target = other(live)
    old_label = version(p)
    live_started = _started_at(p, live)
    sha = p.app.commit("v2")

    r = fab(p, "release")
    assert f"released {target}: {sha[:12]} (main)" in r.stdout
    assert f"{live} keeps running" in r.stdout
    serves(p, "v2", colour=target)

    # The old colour still answers on its own port, ready for a rollback.
    assert version(p, port=_port(p, live)) == old_label
    assert _started_at(p, live) == live_started  # not restarted or recreated
    assert container_states(p) == {"blue": "running", "green": "running"}

    s = status_json(p)
    assert s["live"] == target
    assert s["colours"][target]["commit"] == sha
    assert s["colours"][target]["role"] == "live"
    assert s["colours"][live]["role"] == "idle" and s["colours"][live]["healthy"] is True
    assert p.nginx_file.read_text().startswith(f"# bluegreen app={p.name} live={target}\n")
    assert state_file(p)["live"] == target
    last = history_json(p)[-1]
    assert (last["task"], last["result"], last["from"], last["to"], last["commit"]) == \
        ("release", "ok", live, target, sha)


def test_rollback_returns_traffic_to_the_previous_colour(shared_project):
    p = shared_project
    s = status_json(p)
    live, previous = s["live"], other(s["live"])
    previous_label = version(p, port=_port(p, previous))
    r = fab(p, "rollback", "--json")
    summary = summary_json(r)
    assert (summary["task"], summary["result"], summary["live"], summary["previous"]) == \
        ("rollback", "ok", previous, live)
    assert f"{previous} is live" in r.stderr
    serves(p, previous_label, colour=previous)
    assert p.nginx_file.read_text().startswith(f"# bluegreen app={p.name} live={previous}\n")
    after = status_json(p)
    assert after["live"] == previous
    assert after["colours"][live]["container"] == "running"  # nothing was stopped
    assert state_file(p)["live"] == previous
    last = history_json(p)[-1]
    assert (last["task"], last["result"], last["to"]) == ("rollback", "ok", previous)


def test_switch_to_moves_traffic_and_refuses_the_live_colour(shared_project):
    p = shared_project
    live = status_json(p)["live"]
    idle = other(live)
    idle_label = version(p, port=_port(p, idle))

    r = fab(p, "switch", "--to", idle)
    assert f"{idle} is live" in r.stdout
    serves(p, idle_label, colour=idle)
    assert status_json(p)["live"] == idle

    nginx_before = p.nginx_file.read_bytes()
    history_before = len(history_json(p))
    r = fab(p, "switch", "--to", idle, code=1)
    assert f"{idle} is already live" in output(r)
    assert p.nginx_file.read_bytes() == nginx_before
    serves(p, idle_label, colour=idle)
    # The refusal is recorded as an attempt, and the lock is free again.
    entries = history_json(p)
    assert len(entries) == history_before + 1 and entries[-1]["result"] == "failed"
    assert not (p.deploy_dir / ".lock").exists()

    r = fab(p, "switch", code=2)  # --to is required
    assert "--to" in output(r)
    r = fab(p, "switch", "--to", "purple", code=2)
    assert "blue or green" in output(r)


def test_release_branch_and_ref_deploy_what_they_name(shared_project):
    p = shared_project
    app = p.app
    live = status_json(p)["live"]
    target = other(live)

    feature = app.commit("v3-feature", branch="feature")
    main_head = app.commit("v3-main", branch="main")  # main moves on meanwhile
    r = fab(p, "release", "--branch", "feature")
    assert f"released {target}: {feature[:12]} (feature)" in r.stdout
    serves(p, "v3-feature", colour=target)
    s = status_json(p)
    assert (s["colours"][target]["branch"], s["colours"][target]["commit"]) == \
        ("feature", feature)

    # --ref: an exact older commit, into the other colour; its branch stays.
    live, target = target, live
    branch_before = s["colours"][target]["branch"]
    v1 = app.commits["v1"]
    r = fab(p, "release", "--ref", v1)
    assert f"released {target}: {v1[:12]}" in r.stdout
    serves(p, "v1", colour=target)
    s = status_json(p)
    assert s["colours"][target]["commit"] == v1
    assert s["colours"][target]["branch"] == branch_before

    # A plain release into the colour that follows `feature` deploys the
    # branch's newest commit, not main's.
    live, target = target, live
    newest = app.commit("v4-feature", branch="feature")
    r = fab(p, "release")
    assert f"released {target}: {newest[:12]} (feature)" in r.stdout
    serves(p, "v4-feature", colour=target)
    s = status_json(p)
    assert (s["colours"][target]["branch"], s["colours"][target]["commit"]) == \
        ("feature", newest)
    assert main_head not in (s["colours"]["blue"]["commit"], s["colours"]["green"]["commit"])

    # A ref or branch that is not in the repository fails before anything
    # is built, and names what is missing.
    r = fab(p, "release", "--branch", "no-such-branch", code=1)
    assert "no-such-branch" in output(r)
    serves(p, "v4-feature", colour=target)


def test_release_json_prints_one_summary_with_phase_durations(shared_project):
    p = shared_project
    live = status_json(p)["live"]
    target = other(live)
    sha = p.app.commit("v5", branch="main")
    # The target follows `feature` or `main` depending on the tests before;
    # name the branch so this test stands on its own.
    started = time.monotonic()
    r = fab(p, "release", "--json", "--branch", "main")
    wall = time.monotonic() - started
    summary = summary_json(r)  # stdout holds only the JSON line
    assert (summary["host"], summary["task"], summary["result"]) == \
        ("testhost", "release", "ok")
    assert (summary["live"], summary["previous"], summary["commit"], summary["branch"]) == \
        (target, live, sha, "main")
    phases = summary["phases"]
    for name in ("connect", "lock", "git", "build", "start", "health", "switch", "verify",
                 "record"):
        assert name in phases and phases[name] >= 0, phases
    assert sum(phases.values()) <= summary["seconds"] + 0.5
    # Progress went to stderr, one line per phase.
    assert "health" in r.stderr and "released" in r.stderr
    serves(p, "v5", colour=target)
    _report_timing(phases, summary["seconds"], wall)


def _report_timing(phases, total, wall):
    """Print the release's split (shown with -s; collected by the timing report)."""
    split = {
        "ssh connect": phases.get("connect", 0),
        "git": phases.get("git", 0),
        "compose build+start": phases.get("build", 0) + phases.get("start", 0),
        "health gate": phases.get("health", 0),
        "switch (switch+verify)": phases.get("switch", 0) + phases.get("verify", 0),
    }
    split["rest (lock, record, ...)"] = total - sum(split.values())
    text = ", ".join(f"{k} {v:.2f}s" for k, v in split.items())
    line = f"release timing: total {total:.2f}s (fab wall {wall:.2f}s): {text}"
    print(line)
    path = os.environ.get("BLUEGREEN_TIMING_FILE")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def _port(project, colour):
    return project.blue_port if colour == "blue" else project.green_port


def _started_at(project, colour):
    from loophost import docker

    r = docker("inspect", "--format", "{{.State.StartedAt}}", f"{project.name}-{colour}-1")
    return r.stdout.strip()
