"""What the README and docs/ promise, the tool does (issue 17, items 2-10).

One project for the module, set up (v1 in blue); the tests that release
run in file order and build on each other's releases, as an operator's
day would. The rest leave the host as they found it.
"""

import json
import re
import socket
import subprocess

import pytest
import yaml

from released import (REPO_ROOT, fab, history_json, module_project, output, serves,
                      state_file, status_json, summary_json)

TIME_FORMAT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, loophost):
    yield from module_project(request, tmp_path_factory, loophost, setup=True)


def hosts_file(project, path, **entry):
    """Another hosts.yml for `testhost` (use with BLUEGREEN_HOSTS_FILE)."""
    base = project.host.hosts_entry(project.HOST_NAME)[project.HOST_NAME]
    base.update(entry)
    path.write_text(yaml.safe_dump({"hosts": {project.HOST_NAME: base},
                                    "default_hosts": [project.HOST_NAME]}, sort_keys=False))
    return {"BLUEGREEN_HOSTS_FILE": str(path)}


# --- item 3: --ref is recorded as a ref, not as the colour's branch -------------------


def test_a_ref_release_records_the_ref_and_keeps_the_branch(shared_project):
    p = shared_project
    sha = p.app.commit("v2", branch="other")  # only on `other`, not on main
    r = fab(p, "release", "--ref", sha)
    assert f"released green: {sha[:12]} (ref {sha})" in r.stdout, r.stdout
    assert "(main)" not in r.stdout
    serves(p, "v2", colour="green")
    green = state_file(p)["colours"]["green"]
    assert (green["commit"], green["ref"], green["branch"]) == (sha, sha, "main")
    status = status_json(p)["colours"]["green"]
    assert (status["ref"], status["source"]) == (sha, f"ref {sha}")
    text = fab(p, "status").stdout
    assert f"ref {sha}" in text
    last = history_json(p)[-1]
    assert (last["ref"], last["branch"], last["commit"]) == (sha, "main", sha)
    assert f"ref {sha}" in fab(p, "history").stdout


# --- item 5: BLUEGREEN_<COLOUR>_BRANCH is for one run ----------------------------------


def test_an_environment_branch_is_for_one_run_and_the_branch_flag_sticks(shared_project):
    p = shared_project
    p.app.commit("v3", branch="hotfix")
    r = fab(p, "release", env={"BLUEGREEN_BLUE_BRANCH": "hotfix"})
    assert "released blue:" in r.stdout and "(hotfix)" in r.stdout, r.stdout
    serves(p, "v3", colour="blue")
    assert state_file(p)["colours"]["blue"]["branch"] == "main"  # not followed next time
    # The audit log names what was deployed, and the branch the colour still follows.
    last = history_json(p)[-1]
    assert (last["branch"], last["follows"]) == ("hotfix", "main"), last

    r = fab(p, "release", "--branch", "other", "--json")
    summary = summary_json(r)
    assert (summary["live"], summary["branch"], summary["ref"]) == ("green", "other", None)
    serves(p, "v2", colour="green")
    assert state_file(p)["colours"]["green"]["branch"] == "other"  # --branch is recorded
    assert "ref" not in state_file(p)["colours"]["green"]

    r = fab(p, "release")  # blue again: its own branch, main, not last run's hotfix
    assert "released blue:" in r.stdout and "(main)" in r.stdout, r.stdout
    serves(p, "v1", colour="blue")


# --- item 4 and 10: repair keeps each colour's branch, one time format ------------------


def test_repair_keeps_the_branches_and_writes_one_time_format(shared_project):
    p = shared_project
    before = state_file(p)
    (p.deploy_dir / "state.json").unlink()
    r = fab(p, "repair")
    assert "green: other (from history.jsonl)" in r.stdout, r.stdout
    assert "blue: main (from history.jsonl)" in r.stdout, r.stdout
    state = state_file(p)
    assert state["colours"]["green"]["branch"] == "other"
    assert state["colours"]["blue"]["branch"] == "main"
    for colour in ("blue", "green"):  # who released it: its history line says
        assert (state["colours"][colour]["deployed_by"]
                == before["colours"][colour]["deployed_by"]), state
    times = [state["updated_at"]] + [state["colours"][c]["deployed_at"] for c in ("blue", "green")]
    for when in times:
        assert TIME_FORMAT.fullmatch(when), times
    # With a readable state.json, what it says is kept.
    r = fab(p, "repair")
    assert "green: other (from state.json)" in r.stdout, r.stdout
    r = fab(p, "release")  # green follows `other` after the repair
    assert "released green:" in r.stdout and "(other)" in r.stdout, r.stdout
    serves(p, "v2", colour="green")


# --- item 2: the crash message names the real exit code -------------------------------


def test_a_crash_at_start_never_claims_exit_code_0(shared_project):
    p = shared_project
    p.app.commit("v4", kind="crash", branch="main")  # exits 3 at start
    r = fab(p, "release", code=1)
    text = output(r)
    assert "crash" in text, text
    assert "last exit 0" not in text and "exit code 0" not in text, text
    codes = re.findall(r"(?:last )?exit code (\d+)", text)
    assert set(codes) <= {"3", "143", "137"}, text  # 3: its own; 143/137: stopped after
    p.app.commit("v5", branch="main")


# --- item 6: exit codes and --json failures -------------------------------------------


@pytest.mark.parametrize("args, words", [
    (("release", "--bogus"), ["--bogus", "fab --help release"]),
    (("release", "--branch"), ["--branch needs a value"]),
    (("status", "--nope"), ["--nope"]),
])
def test_unknown_flags_and_missing_values_are_exit_2(shared_project, args, words):
    r = fab(shared_project, *args, code=2)
    assert r.stdout == ""
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[0].startswith("error: "), r.stderr
    for word in words:
        assert word in r.stderr, r.stderr


@pytest.mark.parametrize("args, code", [
    (("release", "--json", "--bogus"), 2),
    (("release", "--json", "--branch", "a;b"), 2),
    (("release", "--json", "--wait-lock", "x"), 2),
    (("release", "--json", "-H", "root@127.0.0.1:1"), 3),
])
def test_json_failures_are_one_object_on_stdout(shared_project, args, code):
    r = fab(shared_project, *args, code=code)
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, r.stdout
    obj = json.loads(lines[0])
    assert (obj["task"], obj["result"], obj["code"]) == ("release", "failed", code)
    assert obj["error"] and "hint" in obj


def test_a_held_lock_under_json_is_code_4_on_stdout(shared_project):
    lock = shared_project.deploy_dir / ".lock"
    lock.mkdir()
    (lock / "owner.json").write_text(json.dumps(
        {"pid": 1, "machine": "elsewhere", "user": "ana", "command": "fab release",
         "started_at": 0}))
    try:
        r = fab(shared_project, "release", "--json", code=4)
    finally:
        (lock / "owner.json").unlink()
        lock.rmdir()
    obj = json.loads(r.stdout)
    assert (obj["host"], obj["code"]) == (shared_project.HOST_NAME, 4)
    assert "ana@elsewhere" in obj["error"]


# --- item 7: a missing identity_file is bad input -------------------------------------


def test_a_missing_identity_file_is_exit_2_before_connecting(shared_project, tmp_path):
    missing = tmp_path / "no_such_key"
    env = hosts_file(shared_project, tmp_path / "hosts.yml", identity_file=str(missing))
    r = fab(shared_project, "status", env=env, code=2)
    assert "identity_file" in r.stderr and str(missing) in r.stderr, r.stderr
    assert "network" not in r.stderr and "connect" not in r.stderr.split("\n")[0]


# --- item 8: unlock keeps a running task's lock ---------------------------------------


def test_unlock_refuses_the_lock_of_a_task_still_running_here(shared_project):
    lock = shared_project.deploy_dir / ".lock"
    holder = subprocess.Popen(["sleep", "300"])
    try:
        lock.mkdir()
        (lock / "owner.json").write_text(json.dumps(
            {"pid": holder.pid, "machine": socket.gethostname(), "user": "ana",
             "command": "fab -H testhost release", "started_at": 0}))
        r = fab(shared_project, "unlock", code=4)
        assert f"pid {holder.pid}" in output(r) and "still running" in output(r)
        assert "--force" in r.stderr
        assert (lock / "owner.json").exists()
        r = fab(shared_project, "unlock", "--force")
        assert "lock removed" in r.stdout and not lock.exists()
    finally:
        holder.kill()
        holder.wait()
        if lock.exists():
            (lock / "owner.json").unlink(missing_ok=True)
            lock.rmdir()
    # A holder whose process is gone: plain unlock removes it.
    lock.mkdir()
    (lock / "owner.json").write_text(json.dumps(
        {"pid": holder.pid, "machine": socket.gethostname(), "command": "fab release",
         "started_at": 0}))
    r = fab(shared_project, "unlock")
    assert "lock removed" in r.stdout and not lock.exists()


# --- item 9: render without -H uses default_hosts' env: -------------------------------


def test_render_without_h_uses_the_default_hosts_env(shared_project, tmp_path):
    env = hosts_file(shared_project, tmp_path / "hosts.yml",
                     env={"SERVER_NAME": "app.example.test"})
    r = fab(shared_project, "render", env=env)
    assert "server_name app.example.test;" in r.stdout, r.stdout
    assert f"rendered for host {shared_project.HOST_NAME} (the first of default_hosts" in r.stdout
    r = fab(shared_project, "render", env={"BLUEGREEN_HOSTS_FILE": str(tmp_path / "none.yml")},
            code=2)


# --- item 10: smaller promises --------------------------------------------------------


def test_an_unknown_host_name_hints_at_hosts_yml(shared_project):
    r = fab(shared_project, "-H", "no-such-host.invalid", "status", code=3)
    assert "cannot resolve" in r.stderr and "not a host in hosts.yml" in r.stderr, r.stderr


def test_status_shows_the_fingerprint_of_a_key_it_trusted(shared_project, tmp_path):
    known = tmp_path / "kh" / "known_hosts"
    env = hosts_file(shared_project, tmp_path / "hosts.yml", known_hosts=str(known))
    pub = shared_project.host.host_key.with_name(shared_project.host.host_key.name + ".pub")
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True,
                                 text=True, check=True).stdout.split()[1]
    r = fab(shared_project, "status", "--accept-new-host-key", env=env)
    assert fingerprint in r.stdout and str(known) in r.stdout, r.stdout
    assert known.exists()
    known.unlink()
    data = json.loads(fab(shared_project, "status", "--json", "--accept-new-host-key",
                          env=env).stdout)
    assert data["new_host_key"]["fingerprint"] == fingerprint
    # already known: silent
    r = fab(shared_project, "history", "--accept-new-host-key", env={**env})
    assert fingerprint not in output(r)


def test_a_host_not_set_up_says_so_without_blaming_the_lock_or_leaking_sh(project):
    p = project  # nothing on the host for this app
    for args in (("logs",), ("logs", "--colour", "green"), ("release",), ("rollback",),
                 ("repair",)):
        r = fab(p, *args, code=1)
        text = output(r)
        assert "not set up" in text and f"fab -H {p.HOST_NAME} setup" in text, (args, text)
        assert "can't cd" not in text and "sh: " not in text, (args, text)
        assert "FAILED" not in text, (args, text)
    assert not p.deploy_dir.exists()

