"""Hooks on this machine: which run, their environment, timeouts, results."""

import json
import os
import time

import pytest

from tasks.cli import hooks as hookmod
from tasks.cli.hooks import RunHooks, failed_hook_due, fields_of, find_hooks, hook_environ
from tasks.cli.local_command import run_local
from tasks.errors import Failure


class S:
    app_name = "shop"
    hooks_dir = "hooks"
    hook_timeout = 5.0


def write_hook(directory, name, body, mode=0o755):
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


def who():
    return {"user": "ann", "machine": "laptop"}


def test_a_non_executable_hook_is_bad_input(tmp_path):
    write_hook(tmp_path, "pre-release", "exit 0\n", mode=0o644)
    with pytest.raises(Failure) as err:
        find_hooks(str(tmp_path), "release")
    assert err.value.code == 2 and "chmod +x" in err.value.hint


def test_failed_runs_for_exit_1_and_3_of_changing_tasks_only():
    assert failed_hook_due("release", 1) and failed_hook_due("rollback", 3)
    assert not failed_hook_due("release", 2) and not failed_hook_due("release", 4)
    assert not failed_hook_due("exec", 1) and not failed_hook_due("release", 0)


def test_fields_come_from_the_first_host():
    objs = [{"live": "green", "previous": "blue", "commit": "a" * 40, "branch": "main"},
            {"live": "blue"}]
    assert fields_of(objs) == {"COMMIT": "a" * 40, "BRANCH": "main", "COLOUR": "green",
                               "PREVIOUS_COLOUR": "blue"}
    assert fields_of([{"result": "reverted", "live": "blue", "reverted": "green"}])["COLOUR"] \
        == "green"


def test_hook_environ_drops_secrets_and_outer_hook_names():
    env = hook_environ({"PATH": "/bin", "CI_TOKEN": "s3cret", "BLUEGREEN_COMMIT": "old"},
                       {"s3cret"}, {"TASK": "release"})
    assert env == {"PATH": "/bin", "BLUEGREEN_TASK": "release"}
    # a short secret drops only a variable that is exactly it, not every one containing it
    env = hook_environ({"SHLVL": "1", "COUNT": "1", "PATH": "/usr/1/bin"}, {"1"}, {})
    assert env == {"PATH": "/usr/1/bin"}


def test_pre_hook_failure_stops_and_post_hook_gets_the_summary(tmp_path, monkeypatch, capsys):
    hooks_dir = tmp_path / "hooks"
    write_hook(hooks_dir, "pre-release", "echo checking $BLUEGREEN_HOSTS; exit 7\n")
    write_hook(hooks_dir, "post-release",
               "env | grep ^BLUEGREEN_ | sort > \"$OUT\"; cat \"$BLUEGREEN_SUMMARY\" >> \"$OUT\"\n"
               "exit 1\n")
    monkeypatch.setenv("BLUEGREEN_ENV_FILE", str(tmp_path / ".env"))
    out = tmp_path / "out"
    run = RunHooks("release", S(), ["a", "b"], who,
                   environ={**os.environ, "OUT": str(out)})
    with pytest.raises(Failure) as err:
        run.before()
    assert err.value.code == 1 and "pre-release" in err.value.message
    assert "hook pre-release: checking a,b" in capsys.readouterr().err
    objects = [{"host": "a", "live": "green", "previous": "blue", "commit": "c" * 40}]
    run.after(objects, 0)
    text = out.read_text()
    assert "BLUEGREEN_COLOUR=green" in text and "BLUEGREEN_EXIT_CODE=0" in text
    assert "BLUEGREEN_PERFORMER=ann@laptop" in text and "BLUEGREEN_HOSTS=a,b" in text
    assert json.loads(text.splitlines()[-1])["host"] == "a"
    assert [h["result"] for h in objects[0]["hooks"]] == ["failed", "failed"]
    summary_path = [l for l in text.splitlines() if l.startswith("BLUEGREEN_SUMMARY=")][0]
    assert not os.path.exists(summary_path.split("=", 1)[1])  # removed after the hook
    assert "exit code (0) stands" in capsys.readouterr().err


def test_a_hung_command_loses_its_whole_process_group(tmp_path):
    pidfile = tmp_path / "child"
    script = f"sleep 300 & echo $! > {pidfile}; trap '' TERM; sleep 300\n"
    start = time.monotonic()
    result = run_local(["sh", "-c", script], cwd=str(tmp_path), env=dict(os.environ),
                       timeout=0.5, on_line=lambda line: None)
    assert result.timed_out and time.monotonic() - start < 9
    child = int(pidfile.read_text())
    time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_hooks_dir_is_relative_to_the_env_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BLUEGREEN_ENV_FILE", str(tmp_path / "app" / ".env"))
    assert hookmod.config_dir() == str(tmp_path / "app")
