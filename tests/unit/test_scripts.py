"""The remote scripts: what each builder emits, and that the shell reads it as meant.

Tests are data: settings and arguments in, script text out. The shell is the
one judge of quoting, so every script goes through `sh -n`, and the scripts
that only touch files are run with /bin/sh in a temporary directory laid out
like the host (docker, git and nginx are stubs there: nothing real runs),
each as one step of a local `sh -s` fed by shell.step_input, the way the
remote shell runs it; its markers are read by shell.StepReader.
"""

import dataclasses
import json
import os
import re
import shlex
import subprocess
import time
import types

import pytest

from support.settings import make_settings
from support.nginx import current_nginx, debian_nginx, nginx_version_of
from support.steps import run_step
from tasks.commands import base, building, containers, host_files, host_reading, locking, switching
from tasks.commands.base import (BUILD_FAILED, GIT_FAILED, NGINX_RELOAD_FAILED, NGINX_TEST_FAILED,
                                 NO_DEPLOY_DIR, START_FAILED, STATE_WRITE_FAILED, TIMED_OUT, mark,
                                 side_by_side)
from tasks.commands.building import PRE_SWITCH_WRAP
from tasks.commands.locking import adopt_lock
from tasks.model.compose_file import IMAGE_FORMAT, INSPECT_FORMAT, render_clojure_dockerfile, render_compose
from tasks.model.nginx_file import render_nginx
from tasks.model.state import empty_state, format_history_line, format_state

SH = "/bin/sh"

NORMAL = dict(APP_NAME="shop", GIT_REPO="https://example.com/acme/shop.git")
# Valid values that a careless builder would break: quotes and $ in the
# command lines, the most unusual characters a path may hold.
HOSTILE = dict(
    APP_NAME="shop-2",
    GIT_REPO="git@github.com:acme/shop.git",
    DEPLOY_DIR="/srv/shop@v2+x/a_b.c",
    NGINX_CONF_DIR="/etc/nginx/sites@x+y",
    APP_CMD="""sh -c 'exec ./server --port "$PORT" --name "it'"'"'s $HOME"' ; echo `id`""",
    PRE_SWITCH_CMD="""./manage.py migrate --db "$DATABASE_URL" && echo 'done; $(date)' \\; true""",
    NGINX_TEST_CMD="nginx -t -c '/etc/nginx/nginx.conf'",
    NGINX_RELOAD_CMD="systemctl reload nginx",
    COMPOSE_CMD="docker compose --ansi never",
    SERVER_NAME="*.example.com shop.example.com",
    HEALTH_PATH="/health?x=1&y='2'$z",
)
NGINX_TEXT = ("# it's $host's file\nlocation / { return 200 '$uri \"q\" \\n %s %d'; }\n"
              "-leading dash\n\\ back\\slash\n\u00e9t\u00e9 \u2603\n\n\n")


def settings_for(kind, **extra):
    return make_settings(**{**(NORMAL if kind == "normal" else HOSTILE), **extra})


def every_script(s):
    """(name, text) for every builder, with its options on."""
    owner = json.dumps({"user": "o'brien $(id)", "command": 'release "x"', "pid": 1})
    state = format_state(empty_state(s.app_name))
    return [
        ("inspect", host_reading.inspect(s)),
        ("inspect+lock", host_reading.inspect(s, owner_json=owner, history_lines=20, app_env=True,
                                         listening=True)),
        ("take_lock", locking.take_lock(s, owner)),
        ("write_file", base.write_file(s.nginx_file, NGINX_TEXT, mode="644",
                                          prefix=base.sudo(s))),
        ("drain", containers.drain(s, "blue")),
        ("checkout", building.checkout(s, "green", branch="feature/x-1.2", ref=None)),
        ("checkout@ref", building.checkout(s, "blue", branch="main", ref="abc1234")),
        ("build", building.build(s, "green", commit="a" * 40, compose_text=render_compose(s),
                                dockerfile_text=render_clojure_dockerfile(s),
                                previous=("b" * 40, "sha256:" + "c" * 64))),
        ("build-first", building.build(s, "blue", commit="a" * 40, compose_text="c",
                                      dockerfile_text="d")),
        ("start", building.start(s, "green")),
        ("restore", building.restore(s, "blue", "b" * 40)),
        ("container_state", containers.container_state(s, "green")),
        ("pre_switch", building.pre_switch(s, "green")),
        ("switch", switching.switch(s, render_nginx(s, "green"))),
        ("switch+odd text", switching.switch(s, NGINX_TEXT)),
        ("record", host_files.record(s, state_text=state,
                                  history_line=format_history_line({"e": "it's\n$x"}))),
        ("record-history", host_files.record(s, history_line=format_history_line({"n": 1}))),
        ("stop", containers.stop(s, "blue")),
        ("logs_tail", containers.logs_tail(s, "green", 25)),
        ("unlock_lock", locking.unlock_lock(s)),
        ("setup", host_files.setup(s, state)),
        ("logs", containers.logs(s, "blue", 100, True)),
        ("history", host_files.history(s, 20)),
    ]


def syntax_error(text):
    r = subprocess.run([SH, "-n"], input=text, capture_output=True, text=True, timeout=10)
    return r.stderr if r.returncode else None


@pytest.mark.parametrize("use_sudo", ["false", "true"])
@pytest.mark.parametrize("kind", ["normal", "hostile"])
def test_every_script_is_valid_shell(kind, use_sudo):
    s = settings_for(kind, USE_SUDO=use_sudo)
    bad = {name: err for name, text in every_script(s) if (err := syntax_error(text))}
    assert bad == {}


def test_validated_values_need_no_quoting():
    # The config checks keep paths and names to characters the shell takes as
    # they are; the builders quote them anyway (next tests).
    s = settings_for("hostile")
    for value in (s.deploy_dir, s.app_name, s.nginx_file, s.git_repo):
        assert shlex.quote(value) == value


# Values the config would refuse, forced in: every builder must still quote them.
EVIL = ["$(touch PWNED1) `touch PWNED2` a b", "it's $(touch PWNED3) \"x\" `touch PWNED4`"]


def forced(box_dir, evil):
    return dataclasses.replace(settings_for("normal"), deploy_dir=str(box_dir / f"srv {evil}"),
                               app_name=f"shop {evil}",
                               nginx_conf_dir=str(box_dir / f"missing {evil}"),
                               git_repo=str(box_dir / f"repo {evil}"))


@pytest.mark.parametrize("evil", EVIL)
def test_values_the_checks_would_refuse_are_still_quoted(tmp_path, evil):
    bad = {name: err for name, text in every_script(forced(tmp_path, evil))
           if (err := syntax_error(text))}
    assert bad == {}


# --- running the scripts as steps, the way the remote shell does ----------------


@pytest.fixture
def box(tmp_path):
    """A host in a directory: a PATH of core tools, stubs for the rest.

    box(script) runs the script as one step of a local `sh -s` (step_input,
    M exported) and returns its StepResult: values, blocks, plain output.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat", "mkdir", "rm", "rmdir", "tee", "mv", "chmod", "touch", "date",
                 "tail", "cut", "cmp", "sleep", "tr", "sha256sum", "ls", "sed", "timeout"):
        for d in ("/usr/bin", "/bin"):
            if os.path.exists(f"{d}/{tool}"):
                os.symlink(f"{d}/{tool}", bin_dir / tool)
                break
    for stub in ("docker", "git", "nginx", "systemctl", "ss", "sudo"):
        (bin_dir / stub).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / stub).chmod(0o755)

    def run(script, cwd=tmp_path, extra_path=None, timeout=20):
        path = f"{extra_path}:{bin_dir}" if extra_path else str(bin_dir)
        return run_step(script, cwd=cwd, env={"PATH": path}, timeout=timeout)

    run.dir = tmp_path
    run.bin = bin_dir
    return run


def stub(directory, name, text):
    """An executable `name` in ``directory`` running ``text`` with /bin/sh."""
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return path


def test_write_file_round_trips_quotes_dollars_and_newlines_byte_for_byte(box):
    target = box.dir / "conf.d" / "shop.conf"
    target.parent.mkdir()
    target.write_text("old\n")
    r = box(base.write_file(str(target), NGINX_TEXT, mode="600"))
    assert r.code == 0, r.stderr
    assert target.read_bytes() == NGINX_TEXT.encode()
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in target.parent.iterdir()) == ["shop.conf"]  # no .tmp left


def test_write_file_commands():
    assert base.write_file("/etc/nginx/conf.d/shop.conf", "x", prefix="sudo -n ") == (
        "printf '%s' x | sudo -n tee /etc/nginx/conf.d/shop.conf.tmp >/dev/null "
        "&& sudo -n mv -f /etc/nginx/conf.d/shop.conf.tmp /etc/nginx/conf.d/shop.conf")


@pytest.mark.parametrize("evil", EVIL)
def test_commands_hidden_in_values_do_not_run(box, evil):
    s = forced(box.dir, evil)
    os.mkdir(s.deploy_dir)
    for name, text in every_script(s):
        box(text)
        left = sorted(p.name for p in box.dir.rglob("PWNED*"))
        assert left == [], f"{name} ran a command hidden in a value"


# --- the lock -----------------------------------------------------------------


def lock_box(box):
    deploy = box.dir / "srv"
    deploy.mkdir()
    return deploy, settings_for("normal", DEPLOY_DIR=str(deploy))


def test_take_lock_and_unlock(box):
    deploy, s = lock_box(box)
    owner = json.dumps({"user": "o'brien", "command": "release $(x)", "pid": 7})
    r = box(locking.take_lock(s, owner))
    assert (r.code, r.values, r.stdout) == (0, {"lock": "taken"}, "")
    assert (deploy / ".lock" / "owner.json").read_text() == owner + "\n"
    assert box(locking.take_lock(s, "{}")).values == {"lock": "held"}
    assert (deploy / ".lock" / "owner.json").read_text() == owner + "\n"
    r = box(locking.unlock_lock(s))
    assert r.code == 0 and not (deploy / ".lock").exists()
    assert box(locking.unlock_lock(s)).code == 0  # unlocking twice is fine


def proc_start(pid):
    """Field 22 of /proc/PID/stat (the start time), as the lock records it."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def holder(host_pid, host_pid_start):
    return json.dumps({"user": "bo", "command": "release", "pid": 9, "host_pid": host_pid,
                       "host_pid_start": host_pid_start}, sort_keys=True)


def test_a_lock_whose_holder_shell_still_runs_is_held(box):
    deploy, s = lock_box(box)
    (deploy / ".lock").mkdir()
    alive = holder(os.getpid(), proc_start(os.getpid()))
    (deploy / ".lock" / "owner.json").write_text(alive + "\n")
    r = box(locking.take_lock(s, holder(1, 1)))
    assert r.values == {"lock": "held"} and "stale_owner" not in r.blocks
    assert (deploy / ".lock" / "owner.json").read_text() == alive + "\n"


@pytest.mark.parametrize("why", ["gone", "pid reused"])
def test_a_lock_whose_holder_shell_is_gone_is_taken_over(box, why):
    deploy, s = lock_box(box)
    (deploy / ".lock").mkdir()
    with open("/proc/sys/kernel/pid_max") as f:
        never = int(f.read()) + 1  # a pid no process can have
    stale = (holder(never, 12345) if why == "gone"
             else holder(os.getpid(), proc_start(os.getpid()) + 1))
    (deploy / ".lock" / "owner.json").write_text(stale + "\n")
    ours = holder(4242, 77)
    r = box(locking.take_lock(s, ours))
    assert r.code == 0, r.stderr
    assert r.values == {"lock": "taken-over"}
    assert r.blocks["stale_owner"] == stale + "\n"
    assert (deploy / ".lock" / "owner.json").read_text() == ours + "\n"
    assert sorted(p.name for p in deploy.iterdir()) == [".lock"]  # no .lock.stale left


def test_a_lock_without_a_holder_shell_is_never_taken_over(box):
    # Records written before host_pid existed, or a half-written owner.json.
    deploy, s = lock_box(box)
    (deploy / ".lock").mkdir()
    (deploy / ".lock" / "owner.json").write_text('{"pid": 1}\n')
    assert box(locking.take_lock(s, holder(1, 1))).values == {"lock": "held"}


def test_inspect_with_the_lock_reads_what_it_locked(box):
    deploy, s = lock_box(box)
    (deploy / "state.json").write_text("{}\n")
    owner = holder(4242, 77)
    r = box(host_reading.inspect(s, owner_json=owner))
    assert r.values["lock"] == "taken" and r.values["deploy_dir"] == "yes"
    assert r.blocks["owner"] == owner + "\n" and r.blocks["state"] == "{}\n"
    assert r.blocks["containers"] == "" and r.blocks["nginx"] == ""


@pytest.mark.parametrize("with_mktemp", [True, False])
def test_inspect_reads_the_version_of_the_nginx_that_tests_the_file(box, with_mktemp):
    """nginx -v runs beside the docker call (or in turn without mktemp);
    its version comes out as the same marker either way."""
    tools = box.dir / "tools"
    tools.mkdir()
    for tool in ("head",) + (("mktemp",) if with_mktemp else ()):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                               text=True).stdout.strip()
        os.symlink(found, tools / tool)
    deploy, _ = lock_box(box)
    for binary in (debian_nginx(), current_nginx()):
        s = settings_for("normal", DEPLOY_DIR=str(deploy), NGINX_TEST_CMD=f"{binary} -t")
        r = box(host_reading.inspect(s, owner_json=holder(4242, 77)), extra_path=str(tools))
        assert r.values["nginx_version"] == nginx_version_of(binary), r.stdout
        assert r.values["lock"] == "taken"
        box(locking.unlock_lock(s))


def test_inspect_without_a_deploy_dir_takes_no_lock(box):
    s = settings_for("normal", DEPLOY_DIR=str(box.dir / "gone"))
    r = box(host_reading.inspect(s, owner_json="{}"))
    assert r.values["deploy_dir"] == "no" and "lock" not in r.values
    assert not (box.dir / "gone").exists()


# --- record, stop, set-up ------------------------------------------------------


def record_box(box):
    deploy = box.dir / "srv"
    (deploy / ".lock").mkdir(parents=True)
    (deploy / ".lock" / "owner.json").write_text("{}\n")
    (deploy / "state.json").write_text("old")
    (deploy / "history.jsonl").write_text('{"n":1}\n')
    return deploy, settings_for("normal", DEPLOY_DIR=str(deploy))


def test_record_writes_state_and_appends_history_and_keeps_the_lock(box):
    deploy, s = record_box(box)
    state = format_state(empty_state("shop"))
    line = format_history_line({"n": 2, "error": "it's\nbroken $HOME"})
    script = host_files.record(s, state_text=state, history_line=line)
    assert base.write_file(f"{deploy}/state.json", state) in script
    assert f">> {deploy}/history.jsonl" in script
    r = box(script)
    assert r.code == 0, r.stderr
    assert (deploy / "state.json").read_text() == state
    assert (deploy / "history.jsonl").read_text() == '{"n":1}\n' + line
    # The lock is the task's to drop (Session.unlock), not the record's.
    assert (deploy / ".lock" / "owner.json").exists()
    assert sorted(p.name for p in deploy.iterdir()) == [".lock", "history.jsonl", "state.json"]


def test_record_with_unlock_drops_the_lock_once_both_are_written(box):
    deploy, s = record_box(box)
    state = format_state(empty_state("shop"))
    line = format_history_line({"n": 2})
    r = box(host_files.record(s, state_text=state, history_line=line, unlock=True))
    assert r.code == 0, r.stderr
    assert (deploy / "state.json").read_text() == state
    assert (deploy / "history.jsonl").read_text() == '{"n":1}\n' + line
    assert sorted(p.name for p in deploy.iterdir()) == ["history.jsonl", "state.json"]


@pytest.mark.parametrize("broken", ["state.json.tmp", "history.jsonl"])
def test_record_with_unlock_keeps_the_lock_when_a_write_fails(box, broken):
    """A failed record is the task's to undo and record under its lock: the
    step keeps the lock and says it failed."""
    deploy, s = record_box(box)
    (deploy / broken).unlink(missing_ok=True)
    (deploy / broken).symlink_to("/dev/full")  # writes fail with ENOSPC
    r = box(host_files.record(s, state_text=format_state(empty_state("shop")),
                           history_line=format_history_line({"n": 2}), unlock=True))
    assert r.code != 0
    assert (deploy / ".lock" / "owner.json").exists()


def test_record_of_a_history_line_alone_leaves_state_json(box):
    deploy, s = record_box(box)
    r = box(host_files.record(s, history_line=format_history_line({"n": 2})))
    assert r.code == 0 and (deploy / "state.json").read_text() == "old"
    assert (deploy / "history.jsonl").read_text() == '{"n":1}\n{"n":2}\n'


def test_record_on_a_missing_deploy_dir_says_so(box):
    s = settings_for("normal", DEPLOY_DIR=str(box.dir / "gone"))
    assert box(host_files.record(s, state_text="{}")).code == NO_DEPLOY_DIR


def test_stop_drains_then_stops_the_colour():
    s = settings_for("normal", DRAIN_TIMEOUT="5")
    script = containers.stop(s, "blue")
    compose = "COMPOSE_BAKE=false docker compose -p shop -f /srv/shop/compose.yml"
    assert script.index(containers.drain(s, "blue")) < script.index(f"{compose} stop blue")
    assert mark("stopped", "blue") in script
    assert "green" not in script and ".lock" not in script and "state.json" not in script


def test_stop_says_stopped_only_when_compose_stopped_it(box):
    deploy = box.dir / "srv"
    deploy.mkdir()
    s = settings_for("normal", DEPLOY_DIR=str(deploy), DRAIN_TIMEOUT="0")
    assert box(containers.stop(s, "blue")).values == {"drained": "0"}  # the stub docker fails
    calls = box.dir / "calls"
    ok = stub(box.dir / "ok", "docker", f'echo "$*" >> {calls}\n')
    r = box(containers.stop(s, "blue"), extra_path=str(ok.parent))
    assert r.values == {"drained": "0", "stopped": "blue"} and r.stdout == ""
    assert calls.read_text() == f"compose -p shop -f {deploy}/compose.yml stop blue\n"


def test_logs_tail_is_a_block_of_the_colours_log(box):
    s = settings_for("normal")
    logs = stub(box.dir / "logs", "docker", 'echo "$*"; printf "last line without newline"\n')
    r = box(containers.logs_tail(s, "green", 25), extra_path=str(logs.parent))
    assert r.blocks["logs"] == ("compose -p shop -f /srv/shop/compose.yml logs --no-color "
                                "--tail 25 green\nlast line without newline\n")
    assert r.stdout == ""


def test_setup_creates_what_is_missing_and_is_idempotent(box):
    deploy = box.dir / "srv" / "shop"
    s = settings_for("normal", DEPLOY_DIR=str(deploy))
    state = format_state(empty_state("shop"))
    r = box(host_files.setup(s, state))
    assert r.code == 0, r.stderr
    assert [v for k, v in r.marks if k == "created"] == [
        str(deploy), f"{deploy}/blue", f"{deploy}/green", f"{deploy}/logs", "state.json",
        "history.jsonl"]
    again = box(host_files.setup(s, state))
    assert (again.code, again.marks, again.stdout) == (0, (), "")
    assert (deploy / "state.json").read_text() == state
    assert (deploy / "history.jsonl").read_text() == ""
    assert (deploy / "blue").is_dir() and (deploy / "green").is_dir()


def test_setup_that_cannot_create_the_deploy_dir_says_which(box):
    blocker = box.dir / "file"
    blocker.write_text("")
    s = settings_for("normal", DEPLOY_DIR=str(blocker / "shop"))
    r = box(host_files.setup(s, "{}"))
    assert r.code == NO_DEPLOY_DIR
    assert r.values["error"] == f"cannot create {blocker}/shop"


# --- switch -------------------------------------------------------------------


def switch_box(box, test_cmd="true", reload_cmd="true", old="old file\n", conf_exists=True):
    conf, deploy = box.dir / "conf.d", box.dir / "srv"
    if conf_exists:
        conf.mkdir()
    deploy.mkdir()
    if old is not None and conf_exists:
        (conf / "shop.conf").write_text(old)
    s = settings_for("normal", NGINX_CONF_DIR=str(conf), DEPLOY_DIR=str(deploy),
                     NGINX_TEST_CMD=test_cmd, NGINX_RELOAD_CMD=reload_cmd)
    r = box(switching.switch(s, NGINX_TEXT))
    current = conf / "shop.conf"
    return r, (current.read_text() if current.exists() else None), deploy


def test_switch_puts_the_file_in_place_and_keeps_the_old_one(box):
    r, current, deploy = switch_box(box)
    assert (r.code, r.values, r.blocks) == (0, {}, {}), r.stderr
    assert current == NGINX_TEXT
    assert (deploy / "nginx.previous.conf").read_text() == "old file\n"


def test_switch_puts_the_old_file_back_when_nginx_t_fails(box):
    r, current, _ = switch_box(box, test_cmd="sh -c 'echo \"[emerg] unknown directive\"; exit 1'")
    assert r.code == NGINX_TEST_FAILED
    assert current == "old file\n"
    assert r.blocks["output"] == "[emerg] unknown directive\n"


def test_switch_removes_a_first_file_that_fails_nginx_t(box):
    r, current, _ = switch_box(box, test_cmd="false", old=None)
    assert r.code == NGINX_TEST_FAILED and current is None
    assert r.blocks["output"] == ""


def test_switch_puts_the_old_file_back_when_the_reload_fails(box):
    r, current, _ = switch_box(box, reload_cmd="sh -c 'echo not running; exit 1'")
    assert r.code == NGINX_RELOAD_FAILED
    assert current == "old file\n" and r.blocks["output"] == "not running\n"


def test_switch_that_cannot_write_the_file_is_not_an_nginx_verdict(box):
    # NGINX_WRITE_FAILED (permissions, sudo) is its own code: nginx -t never ran.
    r, current, _ = switch_box(box, test_cmd="sh -c 'echo tested >&2'", conf_exists=False)
    assert r.code == base.NGINX_WRITE_FAILED
    assert base.NGINX_WRITE_FAILED != NGINX_TEST_FAILED
    assert r.values["error"] == f"could not write {box.dir}/conf.d/shop.conf"
    # What tee said reaches the step's stderr (release.switch_nginx shows it
    # when the output block is empty).
    assert "shop.conf.tmp" in r.blocks["output"] + r.stderr
    assert "tested" not in r.stderr and current is None


def test_use_sudo_prefixes_only_nginx_dir_files_and_nginx_commands():
    s = settings_for("normal", USE_SUDO="true")
    text = switching.switch(s, "x")
    allowed = ("tee /etc/nginx/conf.d/shop.conf.tmp", "mv -f /etc/nginx/conf.d/shop.conf.tmp ",
               "rm -f /etc/nginx/conf.d/shop.conf", "nginx -t", "nginx -s reload")
    uses = re.findall(r"sudo -n (.{0,40})", text)
    assert len(uses) >= 6
    for use in uses:
        assert use.startswith(allowed), use
    assert "cat /etc/nginx/conf.d/shop.conf > /srv/shop/nginx.previous.conf" in text
    assert "sudo" not in text.replace("sudo -n ", "")
    # Nothing else takes sudo but asking nginx its version: DEPLOY_DIR
    # belongs to the deploy user.
    for name, script in every_script(s):
        if name in ("switch", "switch+odd text", "write_file"):
            continue
        for use in re.findall(r"sudo(.{0,12})", script):
            assert use == " -n nginx -v", name


def test_without_use_sudo_nothing_takes_sudo():
    for name, script in every_script(settings_for("hostile")):
        assert "sudo" not in script, name


# --- drain, check-out, build, start, restore ------------------------------------


def test_drain_is_bounded_by_drain_timeout(box):
    s = settings_for("normal", DRAIN_TIMEOUT="1")
    script = containers.drain(s, "green")
    assert "-lt 10 ]" in script and "dport = :8082" in script
    busy = stub(box.dir / "busy", "ss", "echo 'ESTAB 0 0 127.0.0.1:50000 127.0.0.1:8082'\n")
    start = time.monotonic()
    r = box(script, extra_path=str(busy.parent))
    assert r.values == {"drained": "timeout"}
    assert time.monotonic() - start < 8


def test_drain_returns_after_a_short_quiet_spell_or_at_once_without_ss(box):
    s = settings_for("normal")
    idle = stub(box.dir / "idle", "ss", "exit 0\n")
    # Quiet three times in a row, 0.1 s apart: two sleeps.
    assert box(containers.drain(s, "blue"), extra_path=str(idle.parent)).values == {"drained": "2"}
    os.remove(box.bin / "ss")
    assert box(containers.drain(s, "blue")).values == {"drained": "0"}


def test_drain_timeout_zero_does_not_wait():
    text = containers.drain(settings_for("normal", DRAIN_TIMEOUT="0"), "blue")
    assert "[ $n -lt 0 ]" in text


COMPOSE = "COMPOSE_BAKE=false docker compose -p shop -f /srv/shop/compose.yml"
BOUNDED = "COMPOSE_BAKE=false timeout -k 10 1800 docker compose -p shop -f /srv/shop/compose.yml"


def test_checkout_commands_for_a_branch():
    s = settings_for("normal")
    text = building.checkout(s, "green", branch="feature/x", ref=None)
    assert "cd /srv/shop || exit 41" in text
    assert ("timeout -k 10 1800 git clone --quiet --no-checkout "
            "https://example.com/acme/shop.git /srv/shop/green") in text
    assert "git rev-parse --verify --quiet 'refs/remotes/origin/feature/x^{commit}'" in text
    assert """echo "$M error "'branch feature/x is not in GIT_REPO'""" in text
    assert "GIT_TERMINAL_PROMPT=0" in text and "BatchMode=yes" in text
    assert "blue" not in text  # the live colour is not touched


def test_checkout_for_a_ref():
    text = building.checkout(settings_for("normal"), "blue", branch="main", ref="abc1234")
    assert "git rev-parse --verify --quiet 'abc1234^{commit}'" in text
    assert "'refs/tags/abc1234^{commit}'" in text
    assert """echo "$M error "'ref abc1234 is not in GIT_REPO'""" in text


def test_build_start_and_restore_commands():
    s = settings_for("normal")
    build = building.build(s, "green", commit="a" * 40, compose_text="c", dockerfile_text="d")
    assert f"{BOUNDED} build green 2>&1" in build
    assert f"docker tag bluegreen-shop:green bluegreen-shop:{'a' * 40}" in build
    assert "docker image inspect" not in build  # nothing ran in green before
    assert not re.search(r"\bblue\b", build)
    start = building.start(s, "green")
    assert f"{BOUNDED} up -d --no-deps --force-recreate green 2>&1" in start
    assert start.index(containers.drain(s, "green")) < start.index(" up -d ")
    assert not re.search(r"\bblue\b", start)
    restore = building.restore(s, "blue", "b" * 40)
    assert f"{BOUNDED} up -d --no-deps --force-recreate --no-build blue 2>&1" in restore
    assert restore.index(f"docker tag bluegreen-shop:{'b' * 40} bluegreen-shop:blue") < \
        restore.index(" up -d ")
    assert "git" not in restore and " build " not in restore


def docker_box(box, log, image_known=True, build_code=0):
    """A docker that logs its calls; `image inspect` knows images when ``image_known``."""
    return stub(box.dir / "dock", "docker", f"""echo "$*" >> {log}
case "$1 $2" in
  "image inspect") exit {0 if image_known else 1};;
  "compose -p") case " $* " in *" build "*) echo "#5 [2/2] COPY . /app"; exit {build_code};; esac;;
esac
exit 0
""")


def build_dirs(box):
    deploy = box.dir / "srv"
    (deploy / "green").mkdir(parents=True)
    return deploy, settings_for("normal", DEPLOY_DIR=str(deploy))


def test_build_writes_what_changed_builds_and_tags_by_commit(box):
    deploy, s = build_dirs(box)
    log = box.dir / "docker.log"
    dock = docker_box(box, log, image_known=False)
    previous = ("b" * 40, "sha256:" + "c" * 64)
    script = building.build(s, "green", commit="a" * 40, compose_text="services: {}\n",
                           dockerfile_text="FROM x\n", previous=previous)
    r = box(script, extra_path=str(dock.parent))
    assert r.code == 0, (r.stdout, r.stderr)
    assert r.values == {"dockerfile": "generated", "compose": "updated"}
    assert r.stdout == "#5 [2/2] COPY . /app\n"
    assert (deploy / "compose.yml").read_text() == "services: {}\n"
    assert (deploy / "green" / "Dockerfile").read_text() == "FROM x\n"
    calls = log.read_text().splitlines()
    # What green ran before keeps a name before the build takes green's tag.
    assert calls[:2] == [f"image inspect bluegreen-shop:{'b' * 40}",
                         f"tag sha256:{'c' * 64} bluegreen-shop:{'b' * 40}"]
    assert calls[-1] == f"tag bluegreen-shop:green bluegreen-shop:{'a' * 40}"
    # Nothing changed: nothing is written again, the app's own Dockerfile stays.
    (deploy / "green" / "Dockerfile").write_text("FROM app\n")
    r = box(script, extra_path=str(dock.parent))
    assert r.code == 0 and r.values == {}
    assert (deploy / "green" / "Dockerfile").read_text() == "FROM app\n"


def test_a_failed_build_says_so_and_tags_nothing(box):
    _, s = build_dirs(box)
    log = box.dir / "docker.log"
    dock = docker_box(box, log, build_code=1)
    r = box(building.build(s, "green", commit="a" * 40, compose_text="c", dockerfile_text="d"),
            extra_path=str(dock.parent))
    assert r.code == BUILD_FAILED and r.values["error"] == "docker build failed"
    assert "tag" not in log.read_text()


def test_a_build_past_its_bound_is_stopped(box):
    _, s = build_dirs(box)
    slow = stub(box.dir / "slow", "docker", "exec sleep 30\n")
    bounded = types.SimpleNamespace(**{**vars(s), "build_timeout": 1})
    start = time.monotonic()
    r = box(building.build(bounded, "green", commit="a" * 40, compose_text="c",
                          dockerfile_text="d"), extra_path=str(slow.parent))
    assert time.monotonic() - start < 15
    assert r.code == TIMED_OUT
    assert r.values["error"] == "docker build did not finish within BUILD_TIMEOUT=1s"


def test_start_reports_the_image_and_a_failed_start(box):
    deploy, s = build_dirs(box)
    s = dataclasses.replace(s, drain_timeout=0)
    dock = stub(box.dir / "dock", "docker",
                'case "$1" in inspect) echo sha256:feed;; esac; exit 0\n')
    r = box(building.start(s, "green"), extra_path=str(dock.parent))
    assert r.code == 0 and r.values["image"] == "sha256:feed"
    r = box(building.start(s, "green"))  # the stub docker fails
    assert r.code == START_FAILED
    assert r.values["error"] == "the container did not start"


def test_restore_without_the_kept_image_starts_nothing(box):
    deploy, s = build_dirs(box)
    log = box.dir / "docker.log"
    dock = docker_box(box, log, image_known=False)
    r = box(building.restore(s, "green", "b" * 40), extra_path=str(dock.parent))
    assert r.code == START_FAILED
    assert r.values["error"] == f"no kept image bluegreen-shop:{'b' * 40}"
    assert log.read_text() == f"image inspect bluegreen-shop:{'b' * 40}\n"


def test_pre_switch_runs_the_command_as_one_word_in_the_container():
    s = settings_for("hostile")
    text = building.pre_switch(s, "green")
    assert text.endswith(f"exec -T green sh -c {shlex.quote(PRE_SWITCH_WRAP)} "
                         f"bluegreen-pre-switch 600 {shlex.quote(s.pre_switch_cmd)} 2>&1")
    args = shlex.split(text.split(" exec -T green ", 1)[1])
    assert args[:2] == ["sh", "-c"] and args[3:] == ["bluegreen-pre-switch", "600",
                                                     s.pre_switch_cmd, "2>&1"]


def test_pre_switch_is_bounded_in_the_container_and_from_the_host():
    s = dataclasses.replace(settings_for("normal"), pre_switch_timeout=90.0)
    text = building.pre_switch(s, "blue")
    assert "COMPOSE_BAKE=false timeout -k 10 110 docker compose" in text
    assert " bluegreen-pre-switch 90 " in text
    assert 'exec timeout -k 10 "$1" sh -c "$2"' in PRE_SWITCH_WRAP


def test_pre_switch_wrapper_runs_the_command_and_bounds_it(tmp_path):
    """The wrapper as the container's sh runs it: the command's own exit
    code, and 124 when it outlives the bound."""
    def wrap(seconds, cmd):
        return subprocess.run(["sh", "-c", PRE_SWITCH_WRAP, "bluegreen-pre-switch",
                               str(seconds), cmd], capture_output=True, text=True, timeout=30)
    assert wrap(5, "echo migrated; exit 3").returncode == 3
    assert wrap(5, "echo migrated").stdout == "migrated\n"
    assert wrap(1, "sleep 20").returncode == 124


def test_inspect_reads_everything_in_one_script():
    s = settings_for("normal")
    text = host_reading.inspect(s, history_lines=7)
    for needle in ('"$M now', '"$M deploy_dir', "cat /srv/shop/.lock/owner.json",
                   "cat /srv/shop/state.json", "cat /etc/nginx/conf.d/shop.conf",
                   f"docker container inspect --format {shlex.quote(INSPECT_FORMAT)} "
                   "shop-blue-1 shop-green-1", "tail -n 7 /srv/shop/history.jsonl",
                   '"$M nginx_version'):
        assert needle in text
    assert "mkdir" not in text and "app_env" not in text and "ss -H" not in text
    locked = host_reading.inspect(s, owner_json="{}", app_env=True, listening=True)
    assert "mkdir /srv/shop/.lock" in locked and "sha256sum /srv/shop/app.env" in locked
    assert "ss -Htlnp" in locked
    # The lock is taken before anything is read.
    assert locked.index("mkdir") < locked.index("cat /srv/shop/state.json")
    for read in ("docker container inspect", "ss -Htlnp", "nginx -v", "date +%s"):
        assert locked.index("mkdir") < locked.index(read), read


def test_small_builders():
    s = settings_for("normal")
    assert mark("stopped") == 'echo "$M stopped"'
    assert mark("commit", "$commit") == 'echo "$M commit $commit"'
    assert base.block("x", "cat f") == (
        """echo "$M begin x"; cat f; printf '\\n%s end x\\n' "$M\"""")
    assert containers.container_state(s, "green").startswith(
        'echo "$M begin containers"; bg_cs=$(docker container inspect --format '
        f"{shlex.quote(INSPECT_FORMAT)} shop-green-1 2>/dev/null)")
    assert containers.logs(s, "blue", 50, False) == (
        f"cd /srv/shop && {COMPOSE} logs --no-color --tail 50 blue 2>&1")
    assert " --tail 5 --follow green " in containers.logs(s, "green", 5, True)
    assert host_files.history(s, 30) == "tail -n 30 /srv/shop/history.jsonl 2>/dev/null; true"
    assert locking.unlock_lock(s) == (
        "rm -f /srv/shop/.lock/owner.json; rmdir /srv/shop/.lock 2>/dev/null; true")
    assert building.image(s, "green") == "bluegreen-shop:green"
    # What runs is told by the images the containers run, never by a checkout.
    text = host_reading.inspect(s)
    assert f"docker image inspect --format {shlex.quote(IMAGE_FORMAT)} $bg_ims" in text
    assert "rev-parse" not in text


def test_one_exit_code_per_meaning():
    codes = [NO_DEPLOY_DIR, GIT_FAILED, BUILD_FAILED,
             START_FAILED, NGINX_TEST_FAILED, NGINX_RELOAD_FAILED,
             base.NGINX_WRITE_FAILED, STATE_WRITE_FAILED, TIMED_OUT]
    assert len(set(codes)) == len(codes)
    assert (NGINX_TEST_FAILED, base.NGINX_WRITE_FAILED) == (45, 47)


# --- check-out against a real repository on disk --------------------------------


def git(*args, cwd):
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=str(cwd), env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_checkout_resolves_refs_the_way_the_remote_has_them(box):
    """--ref main after new commits means the remote's main, not the clone's stale one."""
    src = box.dir / "repo"
    src.mkdir()
    git("init", "-q", "-b", "main", cwd=src)
    git("commit", "-q", "--allow-empty", "-m", "one", cwd=src)
    one = git("rev-parse", "HEAD", cwd=src)
    git("tag", "v1", cwd=src)
    deploy = box.dir / "srv"
    deploy.mkdir()
    real_git = box.dir / "realgit"
    real_git.mkdir()
    os.symlink(subprocess.run(["sh", "-c", "command -v git"], capture_output=True,
                              text=True).stdout.strip(), real_git / "git")
    s = settings_for("normal", DEPLOY_DIR=str(deploy), GIT_REPO=str(src))

    def deployed(branch="main", ref=None):
        r = box(building.checkout(s, "blue", branch=branch, ref=ref), extra_path=str(real_git))
        assert (r.code == 0) == ("commit" in r.values), (r.values, r.stdout, r.stderr)
        return r.values.get("commit") or r.values.get("error")

    assert deployed() == one  # the first release clones
    git("commit", "-q", "--allow-empty", "-m", "two: the subject", cwd=src)
    two = git("rev-parse", "HEAD", cwd=src)
    git("checkout", "-q", "-b", "feature/x", cwd=src)
    git("commit", "-q", "--allow-empty", "-m", "feature", cwd=src)
    feature = git("rev-parse", "HEAD", cwd=src)
    git("checkout", "-q", "main", cwd=src)

    assert deployed() == two
    r = box(building.checkout(s, "blue", branch="main", ref=None), extra_path=str(real_git))
    assert r.values["subject"] == "two: the subject"
    assert deployed(branch="feature/x") == feature
    assert deployed(ref="main") == two
    assert deployed(ref="feature/x") == feature
    assert deployed(ref="v1") == one
    assert deployed(ref=one[:10]) == one
    assert deployed(ref="nope") == "ref nope is not in GIT_REPO"
    assert deployed(branch="gone") == "branch gone is not in GIT_REPO"
    r = box(building.checkout(s, "blue", branch="gone", ref=None), extra_path=str(real_git))
    assert r.code == GIT_FAILED


def test_adopt_lock_renames_the_holder_only_while_the_lock_is_ours(tmp_path):
    s = make_settings(APP_NAME="shop", DEPLOY_DIR=str(tmp_path))
    (tmp_path / ".lock").mkdir()
    owner = tmp_path / ".lock" / "owner.json"
    owner.write_text(json.dumps({"host_pid": 41, "host_pid_start": 7}, sort_keys=True) + "\n")
    new = json.dumps({"host_pid": 42, "host_pid_start": 9}, sort_keys=True)
    run_step(adopt_lock(s, 41, new))
    assert json.loads(owner.read_text())["host_pid"] == 42
    # Another task's lock (taken over meanwhile) is left alone.
    other = json.dumps({"host_pid": 4100, "host_pid_start": 1}, sort_keys=True)
    owner.write_text(other + "\n")
    run_step(adopt_lock(s, 41, new))
    assert json.loads(owner.read_text())["host_pid"] == 4100


def test_a_holder_shell_left_by_its_sshd_session_is_stopped_and_its_lock_taken_over(box):
    # A cut connection ends sshd's session process at once; its shell goes
    # on with the step it was in (a build) under another parent.
    deploy, s = lock_box(box)
    (deploy / ".lock").mkdir()
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        real_parent = os.getpid()
        record = json.loads(holder(orphan.pid, proc_start(orphan.pid)))
        record["host_ppid"] = real_parent + 1  # the sshd session it was started by, now gone
        (deploy / ".lock" / "owner.json").write_text(json.dumps(record) + "\n")
        r = box(locking.take_lock(s, holder(4242, 77)))
        assert r.values == {"lock": "taken-over", "stopped_orphan": str(orphan.pid)}, (r, open(f"/proc/{orphan.pid}/stat").read(), real_parent)
        assert orphan.wait(timeout=5) == -15  # SIGTERM, by its session
    finally:
        orphan.kill()
        orphan.wait()


def test_a_holder_shell_still_under_its_sshd_session_keeps_its_lock(box):
    deploy, s = lock_box(box)
    (deploy / ".lock").mkdir()
    record = json.loads(holder(os.getpid(), proc_start(os.getpid())))
    record["host_ppid"] = os.getppid()
    (deploy / ".lock" / "owner.json").write_text(json.dumps(record) + "\n")
    assert box(locking.take_lock(s, holder(1, 1))).values == {"lock": "held"}


def test_a_write_that_fails_leaves_no_temporary_behind(box):
    target = box.dir / "state.json"
    target.write_text("old\n")
    (box.dir / "state.json.tmp").symlink_to("/dev/full")  # writes fail with ENOSPC
    r = box(base.write_file(str(target), "new\n") + " || echo \"$M failed yes\"")
    assert r.values.get("failed") == "yes" and target.read_text() == "old\n"
    assert not os.path.lexists(box.dir / "state.json.tmp")


@pytest.mark.parametrize("with_mktemp", [True, False])
def test_side_by_side_runs_at_once_and_prints_each_block(tmp_path, with_mktemp):
    """Commands that each wait for the other to have started finish only when
    they run at the same time; their blocks come out whole and in order, also
    when a command fails; the temporary directory is gone afterwards. Without
    mktemp they run in turn (and each waits in vain), with the same blocks."""
    tmp, meet = tmp_path / "tmp", tmp_path / "meet"
    tmp.mkdir()
    meet.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = ("sleep", "printf", "cat", "rm", "seq", "touch") + (("mktemp",) if with_mktemp else ())
    for tool in tools:
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                               text=True).stdout.strip()
        if found.startswith("/"):
            os.symlink(found, bin_dir / tool)

    def meeting(me, other):  # "met" once the other has started too, else "alone" after 3 s
        return (f"touch {meet}/{me}; n=0; while [ ! -e {meet}/{other} ] && [ $n -lt 300 ]; "
                f"do sleep 0.01; n=$((n+1)); done; [ -e {meet}/{other} ] && echo met "
                "|| echo alone")

    start, finish = side_by_side({
        "one": f"{meeting('one', 'two')}; printf 'a\\nb\\n'",
        "two": f"{meeting('two', 'one')}; seq 1 3; false",
        "three": "printf 'no newline'",
    })
    result = run_step(f"{start}\necho \"$M middle yes\"\n{finish}\n",
                      env={"PATH": str(bin_dir), "TMPDIR": str(tmp)})
    assert result.code == 0 and result.values["middle"] == "yes"
    first = "met" if with_mktemp else "alone"
    assert result.blocks == {"one": f"{first}\na\nb\n", "two": "met\n1\n2\n3\n",
                             "three": "no newline\n"}
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("with_mktemp", [True, False])
def test_side_by_side_values_are_first_lines_as_markers(tmp_path, with_mktemp):
    """A value runs in the background with the blocks and comes out as one
    marker: its first line, read by the shell; nothing printed, an empty
    value. Without mktemp it runs in turn, with the same markers."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = ("printf", "cat", "rm", "true") + (("mktemp",) if with_mktemp else ())
    for tool in tools:
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                               text=True).stdout.strip()
        if found.startswith("/"):
            os.symlink(found, bin_dir / tool)
    start, finish = side_by_side(
        {"one": "printf 'a\\n'"},
        values={"version": "printf '1.22.1\\nsecond line\\n'", "nothing": "true",
                "unfinished": "printf 'no newline'"})
    result = run_step(f"{start}\n{finish}\n", env={"PATH": str(bin_dir), "TMPDIR": str(tmp)})
    assert result.code == 0 and result.blocks == {"one": "a\n"}
    assert result.values == {"version": "1.22.1", "nothing": "", "unfinished": "no newline"}
    assert list(tmp.iterdir()) == []
