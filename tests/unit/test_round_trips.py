"""Scripts that do two steps in one round trip, the second decided by the
caller half-way and sent on stdin:

- scripts.inspect(..., then_from_stdin=True): take the lock, print what is
  on the host, then run the script the caller planned from it (the build);
- scripts.switch(..., then=finish(..., history_from_stdin=True)): switch
  nginx, then record once the caller has verified the switch.

Run with sh on a host in a directory (docker, nginx, ss are stubs), as
test_scripts does.
"""

import os
import subprocess

import pytest

from conftest import make_settings
from tasks import scripts
from tasks.state import format_history_line

SH = "/bin/sh"
NGINX_TEXT = "# bluegreen app=shop live=green\nupstream x { server 127.0.0.1:8082; }\n"
# What a history line may hold that a careless shell would change.
HISTORY = format_history_line({"error": "a \\ back\\slash, \"quotes\", $HOME, `id`, 'x'",
                               "result": "ok", "task": "release"})


@pytest.fixture
def host(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat", "mkdir", "rm", "rmdir", "tee", "mv", "chmod", "sleep", "date",
                 "tail", "cut"):
        for d in ("/usr/bin", "/bin"):
            if os.path.exists(f"{d}/{tool}"):
                os.symlink(f"{d}/{tool}", bin_dir / tool)
                break
    for stub in ("docker", "ss"):
        (bin_dir / stub).write_text("#!/bin/sh\necho \"$0 $*\" >> \"$STUBS_LOG\"\n")
        (bin_dir / stub).chmod(0o755)
    conf, deploy = tmp_path / "conf.d", tmp_path / "srv"
    conf.mkdir()
    (deploy / ".lock").mkdir(parents=True)
    (deploy / ".lock" / "owner.json").write_text("{}\n")
    (deploy / "history.jsonl").write_text("")
    (conf / "shop.conf").write_text("old file\n")
    settings = make_settings(APP_NAME="shop", NGINX_CONF_DIR=str(conf), DEPLOY_DIR=str(deploy),
                             NGINX_TEST_CMD="true", NGINX_RELOAD_CMD="true")

    def run(script, stdin):
        env = {"PATH": str(bin_dir), "STUBS_LOG": str(tmp_path / "stubs.log")}
        return subprocess.run([SH, "-c", script], input=stdin, capture_output=True,
                              text=True, timeout=20, env=env, cwd=str(tmp_path))

    run.settings, run.conf, run.deploy, run.dir = settings, conf, deploy, tmp_path
    return run


def combined(settings, stop_colour=None):
    then = scripts.finish(settings, state_text='{"live": "green"}\n', history_from_stdin=True,
                          stop_colour=stop_colour)
    return scripts.switch(settings, NGINX_TEXT, then=then)


def test_record_after_the_verdict_writes_state_and_history_and_drops_the_lock(host):
    r = host(combined(host.settings), "record\n" + HISTORY)
    values, _ = scripts.parse_output(r.stdout)
    assert r.returncode == 0, r.stderr
    assert "switched" in values and "not_recorded" not in values
    assert (host.conf / "shop.conf").read_text() == NGINX_TEXT
    assert (host.deploy / "state.json").read_text() == '{"live": "green"}\n'
    assert (host.deploy / "history.jsonl").read_text() == HISTORY  # byte for byte
    assert not (host.deploy / ".lock").exists()


@pytest.mark.parametrize("stdin", ["abandon\n", ""], ids=["abandon", "eof"])
def test_anything_but_a_record_verdict_records_nothing_and_keeps_the_lock(host, stdin):
    r = host(combined(host.settings), stdin)
    values, _ = scripts.parse_output(r.stdout)
    assert r.returncode == 0 and "switched" in values and "not_recorded" in values
    # nginx stays switched (the caller switches back); nothing is recorded.
    assert (host.conf / "shop.conf").read_text() == NGINX_TEXT
    assert not (host.deploy / "state.json").exists()
    assert (host.deploy / "history.jsonl").read_text() == ""
    assert (host.deploy / ".lock" / "owner.json").exists()


def test_a_failed_switch_never_reads_the_verdict(host):
    s = make_settings(APP_NAME="shop", NGINX_CONF_DIR=str(host.conf),
                      DEPLOY_DIR=str(host.deploy), NGINX_TEST_CMD="false",
                      NGINX_RELOAD_CMD="true")
    r = host(combined(s), "record\n" + HISTORY)
    values, _ = scripts.parse_output(r.stdout)
    assert r.returncode == scripts.NGINX_TEST_FAILED and "switched" not in values
    assert (host.conf / "shop.conf").read_text() == "old file\n"
    assert not (host.deploy / "state.json").exists()
    assert (host.deploy / "history.jsonl").read_text() == ""


def test_stop_old_drains_then_stops_after_the_record(host):
    r = host(combined(host.settings, stop_colour="blue"), "record\n" + HISTORY)
    assert r.returncode == 0, r.stderr
    log = (host.dir / "stubs.log").read_text()
    assert "ss -Htn state established" in log
    assert "compose -p shop" in log and log.rstrip().endswith("stop blue")
    assert (host.deploy / "history.jsonl").read_text() == HISTORY


def test_without_then_the_switch_script_is_unchanged():
    s = make_settings(APP_NAME="shop")
    assert scripts.switch(s, NGINX_TEXT).rstrip().endswith("echo '::switched'")
    assert "read" not in scripts.switch(s, NGINX_TEXT)


# --- lock, then the planned script ------------------------------------------------


def lock_script(settings):
    return scripts.inspect(settings, owner_json='{"pid": 1}', history_lines=20,
                           then_from_stdin=True)


def test_after_taking_the_lock_the_script_on_stdin_runs_in_the_same_round_trip(host):
    (host.deploy / ".lock" / "owner.json").unlink()
    (host.deploy / ".lock").rmdir()
    r = host(lock_script(host.settings), "echo '::phase git'\necho built; exit 7\n")
    lines = r.stdout.splitlines()
    assert "::lock taken" in lines
    assert lines.index("::inspected") < lines.index("::phase git") < lines.index("built")
    assert r.returncode == 7  # the planned script's exit code is the result
    assert (host.deploy / ".lock" / "owner.json").read_text() == '{"pid": 1}\n'


def test_a_held_lock_never_runs_what_is_on_stdin(host):
    r = host(lock_script(host.settings), "echo SHOULD-NOT-RUN\n")
    assert "::lock held" in r.stdout and "::inspected" in r.stdout
    assert "SHOULD-NOT-RUN" not in r.stdout and r.returncode == 0


def test_nothing_on_stdin_ends_the_script_with_the_lock_taken(host):
    (host.deploy / ".lock" / "owner.json").unlink()
    (host.deploy / ".lock").rmdir()
    r = host(lock_script(host.settings), "")
    assert r.returncode == 0 and r.stdout.rstrip().endswith("::inspected")
    assert (host.deploy / ".lock" / "owner.json").exists()
