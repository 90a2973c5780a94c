"""The remote scripts: what each builder emits, and that the shell reads it as meant.

Tests are data: settings and arguments in, script text out. The shell is the
one judge of quoting, so every script goes through `sh -n`, and the scripts
that only touch files are run with /bin/sh in a temporary directory laid out
like the host (docker, git and nginx are stubs there: nothing real runs).
"""

import dataclasses
import json
import os
import re
import shlex
import subprocess
import time

import pytest

from conftest import make_settings
from tasks import scripts
from tasks.compose import INSPECT_FORMAT, render_compose, render_clojure_dockerfile
from tasks.nginx import render_nginx
from tasks.state import empty_state, format_history_line, format_state

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
    return [
        ("inspect", scripts.inspect(s)),
        ("inspect+lock", scripts.inspect(s, owner_json=owner, history_lines=20, app_env=True)),
        ("take_lock", scripts.take_lock(s, owner)),
        ("write_file", scripts.write_file(s.nginx_file, NGINX_TEXT, mode="644",
                                          prefix=scripts.sudo(s))),
        ("drain", scripts.drain(s, "blue")),
        ("build", scripts.build(s, "green", branch="feature/x-1.2", ref=None,
                                compose_text=render_compose(s),
                                dockerfile_text=render_clojure_dockerfile(s))),
        ("build@ref", scripts.build(s, "blue", branch="main", ref="abc1234",
                                    compose_text=render_compose(s),
                                    dockerfile_text=render_clojure_dockerfile(s))),
        ("container_state", scripts.container_state(s, "green")),
        ("pre_switch", scripts.pre_switch(s, "green")),
        ("switch", scripts.switch(s, render_nginx(s, "green"))),
        ("switch+odd text", scripts.switch(s, NGINX_TEXT)),
        ("finish", scripts.finish(s, state_text=format_state(empty_state(s.app_name)),
                                  history_line=format_history_line({"e": "it's\n$x"}),
                                  stop_colour="blue", log_colour="green", log_lines=40)),
        ("finish-nothing", scripts.finish(s, unlock=False)),
        ("unlock_lock", scripts.unlock_lock(s)),
        ("setup", scripts.setup(s, format_state(empty_state(s.app_name)))),
        ("logs", scripts.logs(s, "blue", 100, True)),
        ("history", scripts.history(s, 20)),
        ("repair_facts", scripts.repair_facts(s)),
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


# --- running the scripts that only touch files --------------------------------


@pytest.fixture
def box(tmp_path):
    """A host in a directory: a PATH of core tools, stubs for the rest."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat", "mkdir", "rm", "rmdir", "tee", "mv", "chmod", "touch", "date",
                 "tail", "cut", "cmp", "sleep", "tr", "sha256sum", "ls"):
        for d in ("/usr/bin", "/bin"):
            if os.path.exists(f"{d}/{tool}"):
                os.symlink(f"{d}/{tool}", bin_dir / tool)
                break
    for stub in ("docker", "git", "nginx", "systemctl", "ss", "sudo"):
        (bin_dir / stub).write_text("#!/bin/sh\nexit 1\n")
        (bin_dir / stub).chmod(0o755)

    def run(script, cwd=tmp_path, extra_path=None, timeout=20):
        path = f"{extra_path}:{bin_dir}" if extra_path else str(bin_dir)
        return subprocess.run([SH, "-c", script], cwd=str(cwd), env={"PATH": path},
                              capture_output=True, text=True, timeout=timeout)

    run.dir = tmp_path
    run.bin = bin_dir
    return run


def test_write_file_round_trips_quotes_dollars_and_newlines_byte_for_byte(box):
    target = box.dir / "conf.d" / "shop.conf"
    target.parent.mkdir()
    target.write_text("old\n")
    r = box(scripts.write_file(str(target), NGINX_TEXT, mode="600"))
    assert r.returncode == 0, r.stderr
    assert target.read_bytes() == NGINX_TEXT.encode()
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in target.parent.iterdir()) == ["shop.conf"]  # no .tmp left


def test_write_file_commands():
    assert scripts.write_file("/etc/nginx/conf.d/shop.conf", "x", prefix="sudo -n ") == (
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


def test_take_lock_and_unlock(box):
    deploy = box.dir / "srv"
    deploy.mkdir()
    s = settings_for("normal", DEPLOY_DIR=str(deploy))
    owner = json.dumps({"user": "o'brien", "command": "release $(x)", "pid": 7})
    assert box(scripts.take_lock(s, owner)).stdout == "::lock taken\n"
    assert (deploy / ".lock" / "owner.json").read_text() == owner + "\n"
    assert box(scripts.take_lock(s, "{}")).stdout == "::lock held\n"
    assert (deploy / ".lock" / "owner.json").read_text() == owner + "\n"
    r = box(scripts.unlock_lock(s))
    assert r.returncode == 0 and not (deploy / ".lock").exists()
    assert box(scripts.unlock_lock(s)).returncode == 0  # unlocking twice is fine


def test_finish_writes_state_appends_history_and_drops_the_lock(box):
    deploy = box.dir / "srv"
    (deploy / ".lock").mkdir(parents=True)
    (deploy / ".lock" / "owner.json").write_text("{}\n")
    (deploy / "state.json").write_text("old")
    (deploy / "history.jsonl").write_text('{"n":1}\n')
    s = settings_for("normal", DEPLOY_DIR=str(deploy))
    state = format_state(empty_state("shop"))
    line = format_history_line({"n": 2, "error": "it's\nbroken $HOME"})
    script = scripts.finish(s, state_text=state, history_line=line)
    assert scripts.write_file(f"{deploy}/state.json", state) in script
    assert f">> {deploy}/history.jsonl" in script
    assert script.rstrip().endswith(scripts.unlock_lock(s))
    r = box(script)
    assert r.returncode == 0, r.stderr
    assert (deploy / "state.json").read_text() == state
    assert (deploy / "history.jsonl").read_text() == '{"n":1}\n' + line
    assert not (deploy / ".lock").exists()
    assert sorted(p.name for p in deploy.iterdir()) == ["history.jsonl", "state.json"]


def test_finish_stops_a_colour_after_draining_and_shows_logs():
    s = settings_for("normal", DRAIN_TIMEOUT="5")
    script = scripts.finish(s, stop_colour="blue", log_colour="green", log_lines=25,
                            unlock=False)
    compose = ("COMPOSE_BAKE=false docker compose -p shop -f /srv/shop/compose.yml")
    assert f"{compose} logs --no-color --tail 25 green 2>&1" in script
    assert script.index(scripts.drain(s, "blue")) < script.index(f"{compose} stop blue")
    assert "::stopped blue" in script
    assert ".lock" not in script and "state.json" not in script


def test_finish_on_a_missing_deploy_dir_says_so(box):
    s = settings_for("normal", DEPLOY_DIR=str(box.dir / "gone"))
    assert box(scripts.finish(s, state_text="{}")).returncode == scripts.NO_DEPLOY_DIR


def test_setup_creates_what_is_missing_and_is_idempotent(box):
    deploy = box.dir / "srv" / "shop"
    s = settings_for("normal", DEPLOY_DIR=str(deploy))
    state = format_state(empty_state("shop"))
    values, _ = scripts.parse_output(box(scripts.setup(s, state)).stdout)
    assert values["created"] == "history.jsonl"  # the last ::created line
    out = box(scripts.setup(s, state)).stdout
    assert out == ""
    assert (deploy / "state.json").read_text() == state
    assert (deploy / "history.jsonl").read_text() == ""
    assert (deploy / "blue").is_dir() and (deploy / "green").is_dir()


# --- switch -------------------------------------------------------------------


def switch_box(box, test_cmd="true", reload_cmd="true", old="old file\n"):
    conf, deploy = box.dir / "conf.d", box.dir / "srv"
    conf.mkdir()
    deploy.mkdir()
    if old is not None:
        (conf / "shop.conf").write_text(old)
    s = settings_for("normal", NGINX_CONF_DIR=str(conf), DEPLOY_DIR=str(deploy),
                     NGINX_TEST_CMD=test_cmd, NGINX_RELOAD_CMD=reload_cmd)
    r = box(scripts.switch(s, NGINX_TEXT))
    values, blocks = scripts.parse_output(r.stdout)
    current = conf / "shop.conf"
    return r, values, blocks, (current.read_text() if current.exists() else None), deploy


def test_switch_puts_the_file_in_place_and_keeps_the_old_one(box):
    r, values, _, current, deploy = switch_box(box)
    assert r.returncode == 0 and "switched" in values
    assert current == NGINX_TEXT
    assert (deploy / "nginx.previous.conf").read_text() == "old file\n"


def test_switch_puts_the_old_file_back_when_nginx_t_fails(box):
    r, values, blocks, current, _ = switch_box(
        box, test_cmd="sh -c 'echo \"[emerg] unknown directive\"; exit 1'")
    assert r.returncode == scripts.NGINX_TEST_FAILED and "switched" not in values
    assert current == "old file\n"
    assert blocks["nginx_test"] == "[emerg] unknown directive\n"


def test_switch_removes_a_first_file_that_fails_nginx_t(box):
    r, _, _, current, _ = switch_box(box, test_cmd="false", old=None)
    assert r.returncode == scripts.NGINX_TEST_FAILED and current is None


def test_switch_puts_the_old_file_back_when_the_reload_fails(box):
    r, _, blocks, current, _ = switch_box(box, reload_cmd="sh -c 'echo not running; exit 1'")
    assert r.returncode == scripts.NGINX_RELOAD_FAILED
    assert current == "old file\n" and blocks["nginx_reload"] == "not running\n"


def test_use_sudo_prefixes_only_nginx_dir_files_and_nginx_commands():
    s = settings_for("normal", USE_SUDO="true")
    text = scripts.switch(s, "x")
    allowed = ("tee /etc/nginx/conf.d/shop.conf.tmp", "mv -f /etc/nginx/conf.d/shop.conf.tmp ",
               "rm -f /etc/nginx/conf.d/shop.conf", "nginx -t", "nginx -s reload")
    uses = re.findall(r"sudo -n (.{0,40})", text)
    assert len(uses) >= 6
    for use in uses:
        assert use.startswith(allowed), use
    assert f"cat /etc/nginx/conf.d/shop.conf > /srv/shop/nginx.previous.conf" in text
    assert "sudo" not in text.replace("sudo -n ", "")
    # Nothing else takes sudo: DEPLOY_DIR belongs to the deploy user.
    for name, script in every_script(s):
        if name not in ("switch", "switch+odd text", "write_file"):
            assert "sudo" not in script, name


def test_without_use_sudo_nothing_takes_sudo():
    for name, script in every_script(settings_for("hostile")):
        assert "sudo" not in script, name


# --- drain, build, and the small builders -------------------------------------


def test_drain_is_bounded_by_drain_timeout(box):
    s = settings_for("normal", DRAIN_TIMEOUT="1")
    script = scripts.drain(s, "green")
    assert "-lt 10 ]" in script and "dport = :8082" in script
    busy = box.dir / "busy"
    busy.mkdir()
    (busy / "ss").write_text("#!/bin/sh\necho 'ESTAB 0 0 127.0.0.1:50000 127.0.0.1:8082'\n")
    (busy / "ss").chmod(0o755)
    start = time.monotonic()
    r = box(script, extra_path=str(busy))
    assert r.stdout == "::drained timeout\n"
    assert time.monotonic() - start < 8


def test_drain_returns_after_a_short_quiet_spell_or_at_once_without_ss(box):
    s = settings_for("normal")
    idle = box.dir / "idle"
    idle.mkdir()
    (idle / "ss").write_text("#!/bin/sh\nexit 0\n")
    (idle / "ss").chmod(0o755)
    # Quiet three times in a row, 0.1 s apart: two sleeps.
    assert box(scripts.drain(s, "blue"), extra_path=str(idle)).stdout == "::drained 2\n"
    os.remove(box.bin / "ss")
    assert box(scripts.drain(s, "blue")).stdout == "::drained 0\n"


def test_drain_timeout_zero_does_not_wait():
    text = scripts.drain(settings_for("normal", DRAIN_TIMEOUT="0"), "blue")
    assert "[ $n -lt 0 ]" in text


def test_build_commands_for_a_branch():
    s = settings_for("normal")
    text = scripts.build(s, "green", branch="feature/x", ref=None, compose_text="c",
                         dockerfile_text="d")
    assert "cd /srv/shop || exit 41" in text
    assert "git clone --quiet --no-checkout https://example.com/acme/shop.git /srv/shop/green" in text
    assert "git rev-parse --verify --quiet 'refs/remotes/origin/feature/x^{commit}'" in text
    assert "'::error branch feature/x is not in GIT_REPO'" in text
    compose = "COMPOSE_BAKE=false docker compose -p shop -f /srv/shop/compose.yml"
    assert f"{compose} build green 2>&1" in text
    assert f"{compose} up -d --no-deps --force-recreate green 2>&1" in text
    assert "blue" not in text  # the live colour is not touched
    assert text.index("::phase git") < text.index("::phase build") < text.index("::phase start")


def test_build_for_a_ref():
    text = scripts.build(settings_for("normal"), "blue", branch="main", ref="abc1234",
                         compose_text="c", dockerfile_text="d")
    assert "git rev-parse --verify --quiet 'abc1234^{commit}'" in text
    assert "'::error ref abc1234 is not in GIT_REPO'" in text


def test_pre_switch_runs_the_command_as_one_word_in_the_container():
    s = settings_for("hostile")
    text = scripts.pre_switch(s, "green")
    assert text.endswith(f"exec -T green sh -c {shlex.quote(s.pre_switch_cmd)} 2>&1")
    assert shlex.split(text.split(" sh -c ", 1)[1])[0] == s.pre_switch_cmd


def test_inspect_reads_everything_in_one_script():
    s = settings_for("normal")
    text = scripts.inspect(s, history_lines=7)
    for needle in ("::now", "::deploy_dir", "cat /srv/shop/.lock/owner.json",
                   "cat /srv/shop/state.json", "cat /etc/nginx/conf.d/shop.conf",
                   f"docker inspect --format {shlex.quote(INSPECT_FORMAT)} "
                   "shop-blue-1 shop-green-1", "tail -n 7 /srv/shop/history.jsonl"):
        assert needle in text
    assert "mkdir" not in text and "::app_env" not in text
    locked = scripts.inspect(s, owner_json="{}", app_env=True)
    assert "mkdir /srv/shop/.lock" in locked and "sha256sum /srv/shop/app.env" in locked
    # The lock is taken before anything is read.
    assert locked.index("mkdir") < locked.index("cat /srv/shop/state.json")


def test_small_builders():
    s = settings_for("normal")
    assert scripts.container_state(s, "green") == (
        f"docker inspect --format {shlex.quote(INSPECT_FORMAT)} shop-green-1 2>/dev/null")
    assert scripts.logs(s, "blue", 50, False) == (
        "cd /srv/shop && COMPOSE_BAKE=false docker compose -p shop -f /srv/shop/compose.yml "
        "logs --no-color --tail 50 blue 2>&1")
    assert " --tail 5 --follow green " in scripts.logs(s, "green", 5, True)
    assert scripts.history(s, 30) == "tail -n 30 /srv/shop/history.jsonl 2>/dev/null; true"
    assert scripts.unlock_lock(s) == (
        "rm -f /srv/shop/.lock/owner.json; rmdir /srv/shop/.lock 2>/dev/null; true")
    assert scripts.block("x", "cat f") == "echo '::begin x'; cat f; echo; echo '::end x'"
    text = scripts.repair_facts(s)
    assert 'echo "::blue_commit $(git -C /srv/shop/blue rev-parse HEAD 2>/dev/null)"' in text


# --- parse_output -------------------------------------------------------------


def test_parse_output_markers_and_blocks():
    out = ("noise before\n"
           "::commit 0123abcd\n"
           "::subject  Fix the login page  \n"
           "::switched\n"
           "::begin logs\n"
           "line 1\n"
           "::commit inside a block is text\n"
           "\n"
           "line 3\n"
           "::end logs\n"
           "::begin empty\n"
           "::end empty\n"
           "::phase git\n"
           "::phase build\n"
           "::begin cut\n"
           "never ended\n")
    values, blocks = scripts.parse_output(out)
    assert values == {"commit": "0123abcd", "subject": "Fix the login page", "switched": "",
                      "phase": "build"}
    assert blocks == {"logs": "line 1\n::commit inside a block is text\n\nline 3\n",
                      "empty": ""}


def test_parse_output_of_nothing():
    assert scripts.parse_output("") == ({}, {})


# --- build's git phase against a real repository on disk ----------------------


def git(*args, cwd):
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=str(cwd), env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_build_resolves_refs_the_way_the_remote_has_them(box):
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
        script = scripts.build(s, "blue", branch=branch, ref=ref, compose_text="c\n",
                               dockerfile_text="d\n")
        r = box(script, extra_path=str(real_git))
        values, _ = scripts.parse_output(r.stdout)
        return values.get("commit") or values.get("error")

    assert deployed() == one  # the first release clones
    git("commit", "-q", "--allow-empty", "-m", "two", cwd=src)
    two = git("rev-parse", "HEAD", cwd=src)
    git("checkout", "-q", "-b", "feature/x", cwd=src)
    git("commit", "-q", "--allow-empty", "-m", "feature", cwd=src)
    feature = git("rev-parse", "HEAD", cwd=src)
    git("checkout", "-q", "main", cwd=src)

    assert deployed() == two
    assert deployed(branch="feature/x") == feature
    assert deployed(ref="main") == two
    assert deployed(ref="feature/x") == feature
    assert deployed(ref="v1") == one
    assert deployed(ref=one[:10]) == one
    assert deployed(ref="nope") == "ref nope is not in GIT_REPO"
    assert deployed(branch="gone") == "branch gone is not in GIT_REPO"
