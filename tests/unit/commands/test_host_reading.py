"""commands/host_reading.py: parse_view, what one `inspect` run found on the host.

Tests are data: a hand-built sample of the script's output (the markers and
blocks exactly as the script prints them) and the HostView it must give.
``support.host_output`` builds those samples; model/test_plan.py and
flows/test_check.py use it too. One test runs the real inspect script with sh
against a directory laid out like a host, to keep the hand-built samples honest.
"""

import json
import os

import pytest

from support.host_output import NOW, SHA_BLUE, container_line, host_output, released_state, view_of
from support.local_step import M, run_step
from support.plain_settings import make_settings
from tasks.commands.host_reading import inspect, parse_view
from tasks.model.compose_file import Container
from tasks.model.nginx_file import render_nginx
from tasks.model.state import StateError, empty_state, format_state


@pytest.fixture
def s():
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git")


def test_a_host_with_blue_live(s):
    out = host_output(s, state=released_state(s, "blue"), nginx=render_nginx(s, "blue"),
                      containers={"blue": container_line(s, "blue")})
    view = view_of(out, s)
    assert view.now == NOW and view.deploy_dir is True
    assert view.lock == "" and view.holder is None
    assert view.state_error is None and view.state["live"] == "blue"
    assert view.record("blue")["commit"] == SHA_BLUE and view.record("green") == {}
    assert (view.nginx.header_live, view.nginx.port, view.nginx.served) == ("blue", 8081, "blue")
    assert view.live == "blue" and view.drift is None
    assert view.containers["blue"] == Container(
        colour="blue", state="running", image="sha256:" + "c" * 64,
        started_at="2024-05-01T10:00:00.123456789Z")
    assert view.containers["green"] == Container(colour="green", state="missing")
    assert view.history == [] and view.app_env_hash == ""


def test_a_host_that_was_never_set_up(s):
    view = view_of(host_output(s, deploy_dir=False), s)
    assert view.deploy_dir is False
    # No DEPLOY_DIR is not a broken state.json: setup, not repair, is the fix.
    assert view.state is None and view.state_error is None
    assert view.nginx is None and view.live is None and view.drift is None
    assert {c.state for c in view.containers.values()} == {"missing"}


def test_a_set_up_host_before_its_first_release(s):
    view = view_of(host_output(s, state=empty_state("shop")), s)
    assert view.state_error is None and view.state["live"] is None
    assert view.live is None and view.nginx is None and view.drift is None
    assert view.record("blue") == {} and view.record("green") == {}


@pytest.mark.parametrize("text, why", [
    (None, "is missing"),
    ('{"version": 1, "live": "blue", "colours": {"blu', "is not valid JSON"),
    ("\x00\x00\x00\x00", "is not valid JSON"),
    ('["blue"]', "has no 'colours' record"),
    ('{"live": "purple", "colours": {}}', "unknown live colour 'purple'"),
])
def test_a_corrupted_state_json_is_an_error_not_a_crash(s, text, why):
    view = view_of(host_output(s, state=text, nginx=render_nginx(s, "green")), s)
    assert view.state is None
    assert isinstance(view.state_error, StateError)
    assert view.state_error.message.startswith("/srv/shop/state.json ")
    assert why in view.state_error.message
    assert "fab repair" in view.state_error.hint
    # nginx still says what is served.
    assert view.live == "green"
    assert view.record("green") == {}


def test_the_lock_we_took(s):
    owner = json.dumps({"pid": 4321, "command": "release", "started_at": NOW,
                        "user": "ana", "machine": "laptop"})
    view = view_of(host_output(s, lock="taken", owner=owner, state=empty_state("shop")), s)
    assert view.lock == "taken"
    assert view.holder.record["pid"] == 4321 and view.holder.age == 0


def test_a_lock_held_by_someone_else_with_its_age(s):
    owner = json.dumps({"pid": 999, "command": "release --branch hotfix",
                        "started_at": NOW - 754, "user": "bo", "machine": "ci-runner-7",
                        "ci": "github acme/shop run 42 by bo"})
    view = view_of(host_output(s, lock="held", owner=owner, state=empty_state("shop")), s)
    assert view.lock == "held"
    assert view.holder.age == 754
    assert view.holder.describe() == (
        "bo@ci-runner-7 [github acme/shop run 42 by bo] pid 999 running "
        "`release --branch hotfix` for 12m34s")


def test_a_held_lock_whose_owner_file_is_not_written_yet(s):
    # mkdir and the owner.json write are two steps: a reader can land between.
    view = view_of(host_output(s, lock="held", owner=None, state=empty_state("shop")), s)
    assert view.holder is not None and view.holder.record == {}
    assert "unknown holder" in view.holder.describe()


def test_a_lock_seen_without_asking_for_it(s):
    # status and check do not take the lock but still report a holder.
    owner = json.dumps({"pid": 1, "command": "rollback", "started_at": NOW - 5})
    view = view_of(host_output(s, owner=owner, state=empty_state("shop")), s)
    assert view.lock == "" and view.holder.age == 5


def test_crashed_and_crash_looping_containers(s):
    out = host_output(s, state=released_state(s, "blue", ("blue", "green")),
                      nginx=render_nginx(s, "blue"), containers={
                          "blue": container_line(s, "blue", restarts=3),
                          "green": container_line(s, "green", state="exited", exit_code=137)})
    view = view_of(out, s)
    blue, green = view.containers["blue"], view.containers["green"]
    assert (blue.state, blue.restart_count, blue.running, blue.crashed) == ("running", 3, False, True)
    assert (green.state, green.exit_code, green.running, green.crashed) == ("exited", 137, False, True)


def test_other_apps_containers_and_junk_lines_are_ignored(s):
    other_app = make_settings(APP_NAME="blog")
    lines = {"x": container_line(other_app, "blue"), "y": "Error: No such object: shop-green-1",
             "z": "{not json", "blue": container_line(s, "blue", state="restarting")}
    view = view_of(host_output(s, state=empty_state("shop"), containers=lines), s)
    assert view.containers["blue"].state == "restarting"
    assert view.containers["green"].state == "missing"


def test_history_block_skips_junk_and_keeps_order(s):
    lines = ['{"task":"release","to":"blue","result":"ok"}', "garbage",
             '{"task":"release","to":"green","result":"failed"', "",
             '{"task":"switch","to":"green","result":"ok"}']
    view = view_of(host_output(s, state=empty_state("shop"), history=lines,
                                  app_env="f" * 64), s)
    assert [e["task"] for e in view.history] == ["release", "switch"]
    assert view.app_env_hash == "f" * 64


def test_hand_built_samples_match_what_the_real_script_prints(tmp_path):
    """Run inspect as a step of a local sh on a fake host tree (docker is a stub)."""
    deploy, conf, bin_dir = tmp_path / "srv" / "shop", tmp_path / "conf.d", tmp_path / "bin"
    for d in (deploy / ".lock", conf, bin_dir):
        d.mkdir(parents=True)
    s = make_settings(APP_NAME="shop", DEPLOY_DIR=str(deploy), NGINX_CONF_DIR=str(conf))
    state = released_state(s, "blue", ("blue", "green"))
    owner = json.dumps({"pid": 7, "command": "release", "started_at": NOW, "machine": "m"})
    (deploy / "state.json").write_text(format_state(state))
    (deploy / ".lock" / "owner.json").write_text(owner + "\n")
    (deploy / "history.jsonl").write_text('{"task":"release","to":"blue"}\nnot json\n')
    (conf / "shop.conf").write_text(render_nginx(s, "blue"))
    inspect_lines = container_line(s, "blue") + "\n" + container_line(s, "green", "exited", 1)
    docker = bin_dir / "docker"
    docker.write_text(f"#!/bin/sh\ncat <<'EOF'\n{inspect_lines}\nEOF\n")
    docker.chmod(0o755)

    script = inspect(s, history_lines=5)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    real = parse_view(run_step(script, env=env), s)
    hand = view_of(host_output(
        s, owner=owner, state=state, nginx=render_nginx(s, "blue"),
        containers={"blue": container_line(s, "blue"),
                    "green": container_line(s, "green", "exited", 1)},
        history=['{"task":"release","to":"blue"}', "not json"]), s)
    assert abs(real.now - hand.now) < 10 * 365 * 86400  # date +%s is a real clock
    for field in ("deploy_dir", "lock", "state", "nginx_text", "nginx", "containers",
                  "history", "live", "drift"):
        assert getattr(real, field) == getattr(hand, field), field
    assert real.holder.record == hand.holder.record


def test_the_nginx_version_and_the_listening_ports(s):
    view = view_of(host_output(s, state=empty_state("shop"), nginx_version="1.22.1",
                               listening=['LISTEN 0 511 0.0.0.0:8080 0.0.0.0:* '
                                          'users:(("nginx",pid=812,fd=6))',
                                          "LISTEN 0 128 127.0.0.1:8081 0.0.0.0:*"]), s)
    assert view.nginx_version == "1.22.1"
    assert view.listening == {8080: "nginx", 8081: ""}
    assert view_of(host_output(s, state=empty_state("shop")), s).nginx_version == ""


def test_a_stale_lock_taken_over_counts_as_ours_and_names_the_holder_that_was_gone(s):
    gone = json.dumps({"pid": 55, "command": "release", "started_at": NOW - 90,
                       "user": "bo", "machine": "laptop", "host_pid": 777,
                       "host_pid_start": 123})
    ours = json.dumps({"pid": 66, "command": "release", "started_at": NOW, "user": "ana"})
    view = view_of(host_output(s, lock="taken-over", stale_owner=gone, owner=ours,
                               state=empty_state("shop")), s)
    assert view.lock == "taken"
    assert view.holder.record["pid"] == 66
    assert view.lock_taken_over.record["host_pid"] == 777
    assert view.lock_taken_over.age == 90
    # A lock taken the plain way took nothing over.
    assert view_of(host_output(s, lock="taken", owner=ours, state=empty_state("shop")),
                   s).lock_taken_over is None


def test_markers_of_another_token_in_a_file_are_only_its_text(s):
    # A state.json or nginx file cannot forge a value: lines inside a block
    # are text, and a marker with another token is a plain line.
    forged = "::ffffffffffffffff lock taken\n"
    view = view_of(forged + host_output(s, lock="held", state=empty_state("shop"),
                                        nginx="# " + M + " deploy_dir no\n"), s)
    assert view.lock == "held" and view.deploy_dir is True
    assert view.nginx_text == "# " + M + " deploy_dir no\n"
