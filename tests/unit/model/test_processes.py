"""The Procfile, the worker types per colour, the hand-over plan, and their compose services."""

import pytest
import yaml

from support.plain_settings import make_settings
from tasks.configuration.settings import load_settings
from tasks.errors import BAD_INPUT, ConfigError, Failure
from tasks.model.compose_file import render_compose
from tasks.model.processes import (check_scale_types, parse_procfile, plan_hand_over,
                                   planned_workers, release_command, unscheduled, web_command,
                                   workers_of)


def settings(tmp_path, text=""):
    env = tmp_path / ".env"
    env.write_text("APP_NAME=shop\n" + text)
    return load_settings(env_file=str(env), environ={}, require_repo=False)


PROCFILE = """# the app's processes
web: bin/server --port $PORT
release: bin/migrate

worker: bin/worker -q default
clock:   bin/clock
"""


def test_a_procfile_is_types_and_commands_in_order():
    assert parse_procfile(PROCFILE) == {"web": "bin/server --port $PORT",
                                        "release": "bin/migrate",
                                        "worker": "bin/worker -q default",
                                        "clock": "bin/clock"}


@pytest.mark.parametrize("line", ["worker bin/worker", "wor ker: x", "worker:", ": x",
                                  "wörker: x"])
def test_a_line_that_is_not_type_colon_command_is_exit_2_naming_the_line(line):
    with pytest.raises(Failure) as err:
        parse_procfile(f"web: a\n{line}\n", origin="Procfile")
    assert err.value.code == BAD_INPUT
    assert "Procfile line 2" in err.value.message


def test_a_type_named_twice_is_refused():
    with pytest.raises(Failure) as err:
        parse_procfile("worker: a\nworker: b\n")
    assert "line 2" in err.value.message and err.value.code == BAD_INPUT


def test_workers_are_every_type_but_web_and_release_with_scale_and_stop_first(tmp_path):
    s = settings(tmp_path, "SCALE=worker=2 clock=1\n")
    workers = workers_of(parse_procfile(PROCFILE), s)
    assert [(w.kind, w.scale, w.stop_first) for w in workers] == [
        ("worker", 2, False), ("clock", 1, True)]
    assert workers[0].service("green") == "green-worker"


def test_web_and_release_commands_unless_app_cmd_and_pre_switch_cmd(tmp_path):
    procs = parse_procfile(PROCFILE)
    s = settings(tmp_path)
    assert web_command(procs, s) == "bin/server --port $PORT"
    assert release_command(procs, s) == "bin/migrate"
    s = settings(tmp_path, "APP_CMD=bin/other\nPRE_SWITCH_CMD=bin/m2\n")
    assert web_command(procs, s) == "bin/other" and release_command(procs, s) == "bin/m2"
    assert web_command({}, settings(tmp_path)) == ""


def test_scale_naming_a_type_the_procfile_lacks_is_exit_2(tmp_path):
    s = settings(tmp_path, "SCALE=wroker=2\n")
    with pytest.raises(Failure) as err:
        check_scale_types(parse_procfile(PROCFILE), s)
    assert err.value.code == BAD_INPUT and "wroker" in err.value.message


def test_the_hand_over_starts_stop_first_types_apart_and_skips_scale_0(tmp_path):
    s = settings(tmp_path, "SCALE=worker=0\n")
    plan = plan_hand_over("green", "blue", {"worker": "w", "beat": "b", "mailer": "m"}, s)
    assert [w.kind for w in plan.stop_first] == ["beat"]
    assert [w.kind for w in plan.start] == ["mailer"]
    assert plan.types == ["beat", "mailer"] and plan.old == "blue"
    assert plan_hand_over("blue", "blue", {}, s).old is None


def test_check_warns_of_a_scheduler_like_type_not_stop_first(tmp_path):
    s = settings(tmp_path, "STOP_FIRST=beat\n")
    assert unscheduled({"clock": "c", "beat": "b", "worker": "w"}, s) == ["clock"]


def test_worker_services_per_colour_no_ports_labels_env_volumes_override(tmp_path):
    override = tmp_path / "override.yml"
    override.write_text("mem_limit: 512m\nlabels:\n  team: shop\n")
    s = settings(tmp_path, f"SCALE=worker=2\nWORKER_STOP_TIMEOUT=45\nVOLUMES=jobs:/jobs "
                           f"/srv/shared:/shared:ro\nCOMPOSE_OVERRIDE_FILE={override}\n")
    data = yaml.safe_load(render_compose(s, {"blue": parse_procfile(PROCFILE),
                                             "green": {"web": "x"}}))
    services = data["services"]
    assert set(services) == {"blue", "blue-worker", "blue-clock", "green"}
    worker = services["blue-worker"]
    assert "ports" not in worker and "build" not in worker
    assert worker["image"] == "bluegreen-shop:blue" and worker["scale"] == 2
    assert worker["stop_grace_period"] == "45s"
    assert worker["restart"] == "unless-stopped" and worker["init"] is True
    assert worker["labels"] == {"bluegreen.app": "shop", "bluegreen.colour": "blue",
                                "bluegreen.process": "worker", "team": "shop"}
    assert worker["environment"] == {"BLUEGREEN_COLOUR": "blue", "BLUEGREEN_PROCESS": "worker"}
    assert worker["command"] == "bin/worker -q default"
    for service in services.values():
        assert service["volumes"] == ["jobs:/jobs", "/srv/shared:/shared:ro"]
        assert service["mem_limit"] == "512m"
    assert services["blue"]["command"] == "bin/server --port $$PORT"
    assert services["green"]["command"] == "x"
    assert data["volumes"] == {"jobs": None}


@pytest.mark.parametrize("key", ["image", "build", "ports", "network_mode", "container_name",
                                 "command"])
def test_an_owned_key_in_the_override_file_is_exit_2_naming_it(tmp_path, key):
    override = tmp_path / "override.yml"
    override.write_text(f"{key}: x\n")
    with pytest.raises(ConfigError) as err:
        settings(tmp_path, f"COMPOSE_OVERRIDE_FILE={override}\n")
    assert err.value.key == "COMPOSE_OVERRIDE_FILE" and repr(key) in err.value.message


def test_a_bluegreen_label_in_the_override_file_is_refused(tmp_path):
    override = tmp_path / "override.yml"
    override.write_text("labels:\n  bluegreen.colour: red\n")
    with pytest.raises(ConfigError) as err:
        settings(tmp_path, f"COMPOSE_OVERRIDE_FILE={override}\n")
    assert "bluegreen.colour" in err.value.message


def test_check_rows_fail_a_bad_procfile_and_warn_of_an_unscheduled_clock(tmp_path):
    from tasks.flows.check_processes import procfile_rows
    s = settings(tmp_path, "STOP_FIRST=beat\n")
    rows = procfile_rows("web: a\nclock: b\n", s, "here")
    assert rows[0][1] == "ok" and rows[1][:2] == ("STOP_FIRST", "warn")
    assert procfile_rows("web a\n", s, "here")[0][1] == "FAIL"
    assert procfile_rows(None, s, "here")[0][1] == "ok"


def test_the_plan_says_what_the_workers_would_do():
    s = make_settings(SCALE="worker=2")
    state = {"workers": "blue", "colours": {
        "blue": {"processes": {"web": "httpd", "worker": "q", "clock": "c"}}},
        "procfiles": {"c" * 40: {"web": "httpd", "worker": "q2"}}}
    said = planned_workers(state, "blue", "green", s, "c" * 40)
    assert said == ("worker, clock run in blue; after the switch worker start in green "
                    "(clock stopped in blue first), then blue's stop after "
                    "WORKER_READY_SECONDS=5")
    # A commit never released: its Procfile is read at its checkout.
    said = planned_workers(state, "blue", "green", s, "d" * 40)
    assert "green starts the types its Procfile (Procfile) names" in said
    assert planned_workers(state, "blue", "green", s, switches=False).endswith(
        "they stay there until promote (a staged build or canary serves few)")
    assert planned_workers({}, None, "blue", s) == \
        "none run now; after the switch blue starts the types its Procfile (Procfile) names"
    assert planned_workers(state, "blue", "green", make_settings(PROCFILE="none")) == \
        "none (PROCFILE=none)"
