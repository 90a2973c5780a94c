"""The tasks around a release: logs, history, unlock, repair, preview,
check, and exit codes an operator or a CI job relies on.

One project lives for the module: set up (v1 in blue), then released once
(v2 in green), so both colours run.
"""

import json
import socket
import subprocess

import pytest

from loophost import free_port, http_get, port_accepts
from released import (background, fab, interrupt, history_json, module_project, no_traceback,
                      output, serves, state_file, status_json, version, wait_until)


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, loophost):
    """v1 in blue (idle), v2 in green (live)."""
    for project in module_project(request, tmp_path_factory, loophost):
        fab(project, "setup")
        project.app.commit("v2")
        fab(project, "release")
        serves(project, "v2", colour="green")
        yield project


def test_logs_show_a_colours_container_output(shared_project):
    p = shared_project
    live = fab(p, "logs").stdout  # the live colour by default
    assert "v2 (ok) starting on port" in live and "v1 (ok)" not in live
    blue = fab(p, "logs", "--colour", "blue").stdout
    # In bridge mode the app listens on APP_PORT inside its container.
    port = p.blue_port if p.network == "host" else p.settings.get("APP_PORT", "8080")
    assert f"v1 (ok) starting on port {port}" in blue
    last = [line for line in fab(p, "logs", "--colour", "blue", "--lines", "1")
            .stdout.splitlines() if line.strip()]
    assert len(last) == 1, last
    r = fab(p, "logs", "--colour", "red", code=2)
    assert "--colour" in output(r)
    r = fab(p, "logs", "--lines", "0", code=2)
    assert "--lines" in output(r)


def test_logs_follow_ends_cleanly_on_ctrl_c(shared_project, tmp_path):
    p = shared_project
    log = tmp_path / "follow.log"
    with background(p, "logs", "--follow", "--colour", "blue", log=log) as follow:
        out = interrupt(follow, log, once="starting on port")  # still following until then
    # Ctrl-C is how --follow ends: exit 0, no talk of locks or records.
    assert follow.returncode == 0, out
    assert "Traceback" not in out and "interrupted" not in out
    # The remote `compose logs --follow` ended with the connection.
    assert wait_until(lambda: p.name not in _processes("logs --no-color"), timeout=15)


def _processes(text):
    r = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True)
    return "\n".join(line for line in r.stdout.splitlines() if text in line)


def test_history_lists_every_attempt_as_text_and_json(shared_project):
    p = shared_project
    text = fab(p, "history").stdout.splitlines()
    assert text[0].startswith("testhost  history of " + p.name)
    rows = [line.split() for line in text[2:]]
    assert [(r[1], r[2], r[3], r[5]) for r in rows] == \
        [("setup", "ok", "-", "blue"), ("release", "ok", "blue", "green")], text

    entries = history_json(p)
    assert [e["task"] for e in entries] == ["setup", "release"]
    for entry in entries:
        assert entry["host"] == "testhost" and entry["app"] == p.name
        assert entry["result"] == "ok" and entry["duration"] > 0
        assert {"time", "user", "machine", "branch", "commit"} <= set(entry)
    assert entries[1]["commit"] == p.app.commits["v2"]

    last = history_json(p, "--lines", "1")
    assert last == entries[-1:]


def test_unlock_without_a_lock_says_so(shared_project):
    r = fab(shared_project, "unlock")
    assert "the lock is free; nothing to do" in r.stdout


def test_check_passes_on_the_fixture_host(shared_project):
    r = fab(shared_project, "check")
    assert ", 0 failed" in r.stdout
    for item in ("tools", "nginx -t", "PUBLIC_PORT", "BLUE_PORT", "GREEN_PORT", "disk",
                 "GIT_REPO"):
        assert any(line.split()[1:2] == item.split()[:1] and " ok " in line
                   for line in r.stdout.splitlines()), (item, r.stdout)


def test_preview_tunnels_to_the_idle_colour_until_ctrl_c(shared_project, tmp_path):
    p = shared_project
    port = free_port()
    log = tmp_path / "preview.log"
    with background(p, "preview", "--local-port", port, log=log) as preview:
        assert wait_until(lambda: port_accepts(port) or preview.poll() is not None,
                          timeout=60) and preview.poll() is None, log.read_text()
        status, headers, body = http_get(port, "/version")
        assert (status, body.strip()) == (200, "v1"), (status, body)  # blue is idle
        assert "x-deploy-colour" not in headers  # straight to the colour, not via nginx
        # Several clients, one after the other, each get a channel of their own.
        assert [http_get(port, "/health")[0] for _ in range(3)] == [200, 200, 200]
        serves(p, "v2", colour="green")  # nothing live changed
        out = interrupt(preview, log)
    assert preview.returncode == 0, out
    assert "Traceback" not in out
    assert "preview of blue" in out and p.app.commits["v1"][:12] in out
    assert f"open http://127.0.0.1:{port}/" in out and "tunnel closed" in out
    assert not port_accepts(port)


def test_preview_refuses_a_local_port_in_use(shared_project):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        r = fab(shared_project, "preview", "--local-port", busy.getsockname()[1], code=2)
    assert "in use" in output(r)


def test_repair_rebuilds_a_missing_state_json(shared_project):
    p = shared_project
    state_path = p.deploy_dir / "state.json"
    before = state_file(p)
    state_path.unlink()

    text = fab(p, "status").stdout
    assert "state.json is missing" in text and "repair" in text
    assert "is missing" in status_json(p)["state_error"]
    serves(p, "v2", colour="green")  # nothing live depends on state.json

    r = fab(p, "release", code=1)
    assert "state.json is missing" in output(r) and "fab repair" in output(r)
    assert not (p.deploy_dir / ".lock").exists()

    r = fab(p, "repair")
    assert "state.json rebuilt: live green" in r.stdout
    state = state_file(p)
    assert state["live"] == "green"
    for colour in ("blue", "green"):
        assert state["colours"][colour]["commit"] == before["colours"][colour]["commit"]
        assert state["colours"][colour]["branch"] == "main"
    assert status_json(p)["state_error"] is None
    assert history_json(p)[-1]["task"] == "repair"

    # An unreadable state.json is the same story.
    state_path.write_text("{not json")
    r = fab(p, "release", code=1)
    assert "not valid JSON" in output(r) and "repair" in output(r)
    fab(p, "repair")

    sha = p.app.commit("v3")
    r = fab(p, "release")
    assert f"released blue: {sha[:12]}" in r.stdout
    serves(p, "v3", colour="blue")
    assert version(p, port=p.green_port) == "v2"


def test_an_unreachable_host_is_exit_3_without_a_traceback(shared_project):
    port = free_port()  # nothing listens there
    # Refused at once, never a hang: fab's timeout makes one a failure.
    r = fab(shared_project, "-H", f"root@127.0.0.1:{port}", "status", code=3, timeout=60)
    assert r.stdout.strip() == "" or "error" not in r.stdout
    assert "error:" in r.stderr and "127.0.0.1" in r.stderr


def test_status_json_is_one_json_line_per_host(shared_project):
    r = fab(shared_project, "status", "--json")
    lines = r.stdout.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["host"] == "testhost"
    no_traceback(r)


def test_tasks_on_a_host_that_is_not_set_up_point_at_setup(project):
    p = project  # a fresh app: nothing on the host yet
    text = fab(p, "status").stdout
    assert "not set up" in text and f"fab -H {p.HOST_NAME} setup" in text
    assert status_json(p)["set_up"] is False
    for args in (("release",), ("rollback",), ("switch", "--to", "green"), ("preview",),
                 ("repair",)):
        r = fab(p, *args, code=1)
        assert f"fab -H {p.HOST_NAME} setup" in output(r), (args, output(r))
    assert not p.deploy_dir.exists()  # none of them created anything
    assert not p.nginx_file.exists()
    assert p.containers() == []
