"""The remote scripts run as steps of a local `sh -s` in a directory laid out
like a host (docker, git and nginx are stubs there: nothing real runs), and
settings that a careless builder would break. Used by tests/unit/commands/.
"""

import dataclasses
import json
import os
import subprocess

from support.local_step import run_step
from support.plain_settings import make_settings
from tasks.commands import base, building, containers, host_files, host_reading, locking, switching
from tasks.model.compose_file import render_clojure_dockerfile, render_compose
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


# Values the config would refuse, forced in: every builder must still quote them.
EVIL = ["$(touch PWNED1) `touch PWNED2` a b", "it's $(touch PWNED3) \"x\" `touch PWNED4`"]


def forced(box_dir, evil):
    return dataclasses.replace(settings_for("normal"), deploy_dir=str(box_dir / f"srv {evil}"),
                               app_name=f"shop {evil}",
                               nginx_conf_dir=str(box_dir / f"missing {evil}"),
                               git_repo=str(box_dir / f"repo {evil}"))


# --- running the scripts as steps, the way the remote shell does ----------------


def make_box(tmp_path):
    """A host in a directory: a PATH of core tools, stubs for the rest.

    box(script) runs the script as one step of a local `sh -s` (step_input,
    M exported) and returns its StepResult: values, blocks, plain output.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat", "mkdir", "rm", "rmdir", "tee", "mv", "chmod", "touch", "date",
                 "tail", "cut", "cmp", "sleep", "tr", "sha256sum", "ls", "sed", "timeout", "awk",
                 "grep"):
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


COMPOSE = "COMPOSE_BAKE=false docker compose -p shop -f /srv/shop/compose.yml"
BOUNDED = "COMPOSE_BAKE=false timeout -k 10 1800 docker compose -p shop -f /srv/shop/compose.yml"


def lock_box(box):
    deploy = box.dir / "srv"
    deploy.mkdir()
    return deploy, settings_for("normal", DEPLOY_DIR=str(deploy))


def proc_start(pid):
    """Field 22 of /proc/PID/stat (the start time), as the lock records it."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def holder(host_pid, host_pid_start):
    return json.dumps({"user": "bo", "command": "release", "pid": 9, "host_pid": host_pid,
                       "host_pid_start": host_pid_start}, sort_keys=True)
