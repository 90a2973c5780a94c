"""commands/building.py: checkout, build, start, restore and pre_switch, by
their command text and run against stubs and a real git repository.
"""

import dataclasses
import os
import re
import shlex
import subprocess
import time
import types

from support.script_box import BOUNDED, settings_for, stub
from tasks.commands import building, containers
from tasks.commands.base import BUILD_FAILED, GIT_FAILED, START_FAILED, TIMED_OUT
from tasks.commands.building import PRE_SWITCH_WRAP


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
