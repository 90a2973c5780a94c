"""Session: the lock taken and the host read in one step, a task's block under the
lock, the record, a failure's record, the summary.

The session's steps run for real, each as a step of a local `sh -s`
(conftest.run_step) against a DEPLOY_DIR in a temporary directory; only
docker is a stub. The "remote shell" pid the lock records is a real
process of this machine, alive or gone as the test needs.
"""

import json
import os
import subprocess
from types import SimpleNamespace

import pytest

from support.local_step import run_step
from support.plain_settings import make_settings
from tasks.connection.session import Session
from tasks.errors import LOCKED, Failure
from tasks.output import Reporter


def proc_start(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


class LocalHost:
    """Runs each step in a local shell; its "remote shell" is the process ``pid``."""

    def __init__(self, bin_dir, pid, fail=False):
        self.shell = SimpleNamespace(pid=pid, started=proc_start(pid) if pid else None,
                                     run=self.run)
        self.stats = {}
        self.env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
        self.fail = fail
        self.ran = []

    def run(self, script, **kw):
        self.ran.append(script)
        if self.fail:
            raise Failure("the remote shell on prod has ended", code=1)
        return run_step(script, env=self.env)


@pytest.fixture
def host_dir(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "docker").chmod(0o755)
    deploy = tmp_path / "srv"
    deploy.mkdir()
    (deploy / "history.jsonl").write_text("")
    settings = make_settings(APP_NAME="shop", DEPLOY_DIR=str(deploy),
                             NGINX_CONF_DIR=str(tmp_path / "conf.d"))
    return SimpleNamespace(bin=bin_dir, deploy=deploy, settings=settings)


def session(host_dir, pid=None, task="release", fail=False):
    entry = SimpleNamespace(name="prod", host="127.0.0.1", user=None, port=None,
                            identity_file=None, known_hosts=None)
    sess = Session(entry, host_dir.settings, Reporter("prod"), task,
                   command=f"fab -H prod {task}")
    sess.host = LocalHost(host_dir.bin, os.getpid() if pid is None else pid, fail=fail)
    return sess


def history(host_dir):
    return [json.loads(line) for line in (host_dir.deploy / "history.jsonl").read_text().splitlines()]


@pytest.fixture
def gone_pid():
    """The pid of a process that has ended."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_the_lock_is_taken_and_records_the_holders_shell(host_dir):
    sess = session(host_dir)
    view = sess.lock()
    assert view.lock == "taken" and sess.holds_lock and view.deploy_dir
    owner = json.loads((host_dir.deploy / ".lock" / "owner.json").read_text())
    assert owner["host_pid"] == os.getpid()
    assert owner["host_pid_start"] == proc_start(os.getpid())
    assert owner["command"] == "fab -H prod release"
    assert view.holder.record == owner  # what was read, was read under the lock
    sess.unlock()
    assert not (host_dir.deploy / ".lock").exists() and not sess.holds_lock
    sess.unlock()  # twice is nothing


def test_a_lock_held_by_a_live_shell_is_refused_with_its_holder(host_dir, capsys):
    session(host_dir, task="rollback").lock()
    other = session(host_dir)
    with pytest.raises(Failure) as err:
        other.lock(wait=2)  # room for a retry even when one attempt is slow (a loaded machine)
    assert err.value.code == LOCKED
    assert err.value.message.startswith("prod is locked by ")
    assert "`fab -H prod rollback`" in err.value.message
    assert "waiting for the lock: " in capsys.readouterr().out
    assert not other.holds_lock


def test_a_lock_whose_shell_is_gone_is_taken_over_and_recorded(host_dir, gone_pid, capsys):
    first = session(host_dir)
    first.host.shell.pid, first.host.shell.started = gone_pid, 1
    first.lock()
    second = session(host_dir, task="rollback")
    view = second.lock()
    assert view.lock == "taken" and second.holds_lock
    assert view.lock_taken_over.record["host_pid"] == gone_pid
    assert "took over the lock of " in capsys.readouterr().out
    [entry] = history(host_dir)
    assert (entry["task"], entry["result"]) == ("lock", "taken-over")
    assert "taken over by `fab -H prod rollback`" in entry["error"]
    owner = json.loads((host_dir.deploy / ".lock" / "owner.json").read_text())
    assert owner["host_pid"] == os.getpid()


def test_a_host_never_set_up_is_sent_to_setup(tmp_path, host_dir):
    host_dir.settings = make_settings(APP_NAME="shop", DEPLOY_DIR=str(tmp_path / "none"))
    with pytest.raises(Failure) as err:
        session(host_dir).lock()
    assert "setup" in err.value.message + (err.value.hint or "")
    assert not (tmp_path / "none").exists()


def test_a_record_that_cannot_write_state_json_records_nothing(host_dir):
    sess = session(host_dir)
    (host_dir.deploy / "state.json.tmp").mkdir()
    with pytest.raises(Failure) as err:
        sess.record("{}\n", '{"n": 1}\n')
    assert err.value.message == (f"could not write {host_dir.deploy}/state.json on prod; "
                                 "nothing was recorded")
    assert history(host_dir) == []


def test_a_failure_is_recorded_with_its_phase_and_the_lock_dropped(host_dir):
    sess = session(host_dir)
    error = Failure("docker build failed; nothing live changed")
    with pytest.raises(Failure), sess.locked():
        sess.record_failure(error, phase="build",
                            fields={"from_colour": "blue", "to_colour": "green"})
        assert (host_dir.deploy / ".lock").exists()  # recorded under the lock
        raise error
    [entry] = history(host_dir)
    assert (entry["result"], entry["phase"], entry["task"]) == ("failed", "build", "release")
    assert entry["error"] == "docker build failed; nothing live changed"
    assert (entry["from"], entry["to"]) == ("blue", "green")
    assert not (host_dir.deploy / ".lock").exists() and not sess.holds_lock


@pytest.mark.parametrize("ending", [None, Failure("nothing live changed"), KeyboardInterrupt(),
                                    ValueError("a surprise")])
def test_a_tasks_block_releases_the_lock_however_it_ends(host_dir, ending):
    sess = session(host_dir)
    try:
        with sess.locked() as view:
            assert view.lock == "taken" and (host_dir.deploy / ".lock").exists()
            if ending is not None:
                raise ending
    except BaseException as exc:
        assert exc is ending  # it goes on up, unchanged
    assert not (host_dir.deploy / ".lock").exists() and not sess.holds_lock


def test_a_block_inside_a_block_leaves_the_lock_to_the_outer_one(host_dir):
    sess = session(host_dir)
    with sess.locked() as outer:
        with pytest.raises(Failure):
            with sess.locked(wait=5) as inner:  # setup's first release
                assert inner is outer
                raise Failure("the release failed")
        assert (host_dir.deploy / ".lock").exists() and sess.holds_lock
        with sess.locked():
            pass
        assert (host_dir.deploy / ".lock").exists()
    assert not (host_dir.deploy / ".lock").exists()


def test_a_lock_not_taken_is_not_released(host_dir):
    session(host_dir, task="rollback").lock()
    other = session(host_dir)
    with pytest.raises(Failure) as err:
        with other.locked():
            raise AssertionError("the block does not run")
    assert err.value.code == LOCKED
    assert (host_dir.deploy / ".lock").exists()  # still the holder's


def test_ctrl_c_and_surprises_are_worded_for_the_history(host_dir):
    sess = session(host_dir)
    sess.record_failure(KeyboardInterrupt(), phase="health", fields={})
    sess.record_failure(ValueError("odd"), phase="plan", fields={})
    assert [e["error"] for e in history(host_dir)] == ["interrupted (Ctrl-C)", "ValueError: odd"]


def test_recording_a_failure_never_raises_and_says_what_is_left(host_dir, capsys):
    sess = session(host_dir)
    error = Failure("x")
    with pytest.raises(Failure) as err, sess.locked():
        sess.host.fail = True  # the shell is gone
        sess.record_failure(error, phase="switch", fields={})  # never raises
        raise error
    assert err.value is error  # the task's own error, not the lost shell's
    out = capsys.readouterr().out
    assert out.count("could not record the failure or release the lock on prod") == 1
    assert "fab -H prod unlock" in out


def test_a_failure_history_could_not_take_is_said_when_the_lock_is_released(host_dir, capsys):
    sess = session(host_dir)
    error = Failure("x")
    with pytest.raises(Failure), sess.locked():
        (host_dir.deploy / "history.jsonl").unlink(missing_ok=True)
        (host_dir.deploy / "history.jsonl").mkdir()  # the append fails; the shell lives
        sess.record_failure(error, phase="build", fields={})
        raise error
    assert not (host_dir.deploy / ".lock").exists()
    out = capsys.readouterr().out
    assert "could not record the failure in prod's history" in out
    assert "the lock is released" in out


def test_the_summary_names_the_task_and_counts_to_its_end(host_dir):
    sess = session(host_dir)
    sess.host.stats = {"commands": 1, "steps": 2}
    summary = sess.summary("ok", live="green", previous=None)
    assert {k: summary[k] for k in ("host", "app", "task", "result", "live", "previous")} == {
        "host": "prod", "app": "shop", "task": "release", "result": "ok", "live": "green",
        "previous": None}
    assert summary["seconds"] >= 0 and summary["phases"] == {}
    assert summary["ssh"] == {"commands": 1, "steps": 2, "channels": 0, "uploads": 0}
    assert set(sess.summary("ok", timed=False, released=False)) == {
        "host", "app", "task", "result", "released", "ssh"}


def test_app_env_is_uploaded_only_when_it_changed(host_dir, tmp_path):
    env = tmp_path / "app.env"
    env.write_text("SECRET=1\n")
    host_dir.settings = make_settings(APP_NAME="shop", DEPLOY_DIR=str(host_dir.deploy),
                                      APP_ENV_FILE=str(env))
    sess = session(host_dir)
    uploads = []
    sess.host.put_bytes = lambda data, path, mode: uploads.append((data, path, mode))
    sess.lock()
    sess.upload_app_env()
    assert uploads == [(b"SECRET=1\n", f"{host_dir.deploy}/app.env", 0o600)]
    (host_dir.deploy / "app.env").write_bytes(b"SECRET=1\n")
    sess.unlock()
    sess.lock()  # reads the hash of the file now on the host
    sess.upload_app_env()
    assert len(uploads) == 1


def test_ssh_stats_are_whole_numbers_of_each_kind(host_dir):
    sess = session(host_dir)
    sess.host.stats = {"commands": 1, "steps": 4, "channels": 2, "connect_seconds": 0.2}
    assert sess.ssh_stats() == {"commands": 1, "steps": 4, "channels": 2, "uploads": 0}
