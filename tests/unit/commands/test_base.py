"""commands/base.py: quoting of every builder (`sh -n` judges), write_file,
sudo prefixes, markers, blocks, side_by_side and the exit codes.
"""

import os
import re
import shlex
import subprocess

import pytest

from support.local_step import run_step
from support.script_box import (COMPOSE, EVIL, NGINX_TEXT, every_script, forced, settings_for,
                                syntax_error)
from tasks.commands import base, building, containers, host_files, host_reading, locking, switching
from tasks.commands.base import (BUILD_FAILED, GIT_FAILED, NGINX_RELOAD_FAILED, NGINX_TEST_FAILED,
                                 NO_DEPLOY_DIR, START_FAILED, STATE_WRITE_FAILED, TIMED_OUT, mark,
                                 side_by_side)
from tasks.model.compose_file import IMAGE_FORMAT, INSPECT_FORMAT


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


@pytest.mark.parametrize("evil", EVIL)
def test_values_the_checks_would_refuse_are_still_quoted(tmp_path, evil):
    bad = {name: err for name, text in every_script(forced(tmp_path, evil))
           if (err := syntax_error(text))}
    assert bad == {}


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
