"""Bad input against a host that is set up and serving: nothing may run on it.

One project for the module (set up once: blue live, v1). Each test takes a
snapshot of everything a task could change (every file under DEPLOY_DIR
with its content and mtime, the nginx file, the lock, the containers with
their ids and start times) and compares it after the bad command.
"""

import socket

import pytest

from hostile import (error_lines, fab, history, module_project, no_traceback, output,
                     serving, serving_after_switch, snapshot)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, loophost):
    yield from module_project(request, tmp_path_factory, loophost, setup=True)


def assert_one_line_exit_2(result, *names):
    assert result.returncode == 2, output(result)
    no_traceback(result)
    lines = error_lines(result)
    assert len(lines) == 1, f"expected one line on stderr:\n{result.stderr}"
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


# --- shell metacharacters never reach the host ------------------------------------------


def payloads(canary):
    return [
        f"main;touch {canary}",
        f"main$(touch {canary})",
        f"`touch {canary}`",
        f"main && touch {canary}",
        f"main|touch {canary}",
        f"main\ntouch {canary}",
        "-uhello",  # an option to git, not a name
    ]


@pytest.mark.parametrize("where", ["--branch", "--ref", "APP_NAME", "BLUE_BRANCH"])
def test_shell_metacharacters_are_refused_before_connecting(shared_project, tmp_path, where):
    canary = tmp_path / "pwned"
    before, hist = snapshot(shared_project), history(shared_project)
    for value in payloads(canary):
        if where.startswith("--"):
            r = shared_project.fab("release", f"{where}={value}", timeout=60)
        else:
            r = shared_project.fab("release", env={f"BLUEGREEN_{where}": value}, timeout=60)
        line = assert_one_line_exit_2(r, where)
        if not where.startswith("--"):
            assert f"BLUEGREEN_{where}" in line, "the line names where the value came from"
        assert not canary.exists(), f"{value!r} ran a command"
    assert snapshot(shared_project) == before
    assert history(shared_project) == hist


def test_switch_to_an_unknown_colour(shared_project):
    before = snapshot(shared_project)
    r = shared_project.fab("switch", "--to", "purple", timeout=60)
    line = assert_one_line_exit_2(r, "--to", "purple", "blue or green")
    assert line
    assert snapshot(shared_project) == before


@pytest.mark.parametrize("ports", [("GREEN_PORT", "blue_port"), ("PUBLIC_PORT", "green_port"),
                                   ("BLUE_PORT", "public_port")])
def test_colliding_ports(shared_project, ports):
    key, same_as = ports
    before = snapshot(shared_project)
    value = getattr(shared_project, same_as)
    r = shared_project.fab("release", env={f"BLUEGREEN_{key}": value}, timeout=60)
    assert_one_line_exit_2(r, key, str(value))
    assert snapshot(shared_project) == before


# --- a ref the host's git does not have -------------------------------------------------


@pytest.mark.parametrize("flag, value", [("--ref", "deadbeef0123"), ("--branch", "no-such-branch")])
def test_a_ref_that_does_not_exist(shared_project, flag, value):
    before, hist = snapshot(shared_project), history(shared_project)
    live_before = serving(shared_project)

    r = fab(shared_project, "release", flag, value, code=1)

    assert f"{value} is not in GIT_REPO" in r.stderr, output(r)
    assert "nothing live changed" in r.stderr
    after = snapshot(shared_project)
    assert after["nginx"] == before["nginx"]
    assert after["containers"] == before["containers"], "no container was built or started"
    assert not after["locked"]
    for name in ("state.json", "compose.yml"):
        assert after["files"].get(name) == before["files"].get(name), name
    assert serving(shared_project) == live_before
    new = history(shared_project)[len(hist):]
    assert [(e["result"], e.get("phase")) for e in new] == [("failed", "git")], new
    assert value in new[0]["error"]


# --- a colour port that something else already uses ------------------------------------


def test_target_port_used_by_another_program(shared_project):
    """A listener on the idle colour's port: `check` names it (exit 1) and
    `release` refuses before building, in the same round trip as the lock."""
    live, _ = serving(shared_project)
    target = "green" if live == "blue" else "blue"
    port = getattr(shared_project, f"{target}_port")
    key = f"{target.upper()}_PORT"
    assert not any(c["service"] == target and c["state"] == "running"
                   for c in shared_project.containers()), "the idle colour must not be running here"
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        squatter.bind(("127.0.0.1", port))
        squatter.listen(8)

        r = fab(shared_project, "check", code=1)
        assert f"{key} {port}" in r.stderr or f"{key}: {port}" in r.stderr, output(r)
        assert any(key in line and str(port) in line and "FAIL" in line
                   for line in r.stdout.splitlines()), r.stdout

        before, hist = snapshot(shared_project), history(shared_project)
        r = fab(shared_project, "release", code=1)
        assert f"{key} {port}" in r.stderr and "in use by" in r.stderr, output(r)
        assert "nothing was built" in r.stderr
        for phase in ("git ", "build ", "start ", "health "):
            assert f"  {phase}" not in r.stdout, f"the release went as far as {phase}:\n{r.stdout}"
        after = snapshot(shared_project)
        assert after["containers"] == before["containers"]
        assert after["nginx"] == before["nginx"]
        assert not after["locked"]
        assert {k: v for k, v in after["files"].items() if k != "history.jsonl"} == \
            {k: v for k, v in before["files"].items() if k != "history.jsonl"}
        new = history(shared_project)[len(hist):]
        assert [(e["result"], e.get("phase")) for e in new] == [("failed", "plan")], new
    finally:
        squatter.close()
    # The port is free again: the same release goes through (--force: the live
    # colour runs that commit already, which alone would be nothing to release).
    fab(shared_project, "release", "--force")
    assert serving_after_switch(shared_project, (target, "v1")) == (target, "v1")
