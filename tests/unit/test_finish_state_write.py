"""scripts.finish when state.json cannot be written: it stops there.

No "ok" history line, no colour stopped, the lock kept: the caller switches
nginx back and records the failure itself (tests/e2e/test_failures.py shows
the whole story through fab).
"""

import subprocess

from conftest import make_settings
from tasks import scripts
from tasks.state import empty_state, format_history_line, format_state


def run(script, cwd):
    """sh -c script, with a `docker` on PATH that only notes it was called."""
    bin_dir = cwd / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "docker").write_text(f"#!/bin/sh\necho \"$*\" >> {cwd}/docker-calls\n")
    (bin_dir / "docker").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    return subprocess.run(["sh", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=20)


def deploy_dir(tmp_path):
    deploy = tmp_path / "srv"
    (deploy / ".lock").mkdir(parents=True)
    (deploy / ".lock" / "owner.json").write_text("{}\n")
    (deploy / "state.json").write_text("old\n")
    (deploy / "history.jsonl").write_text('{"n":1}\n')
    return deploy


def test_a_failed_state_write_stops_before_history_stop_and_unlock(tmp_path):
    deploy = deploy_dir(tmp_path)
    (deploy / "state.json.tmp").mkdir()  # where the write goes before its rename
    s = make_settings(APP_NAME="shop", DEPLOY_DIR=str(deploy), DRAIN_TIMEOUT="0")
    script = scripts.finish(s, state_text=format_state(empty_state("shop")),
                            history_line=format_history_line({"n": 2}), stop_colour="blue")
    r = run(script, tmp_path)
    assert r.returncode == scripts.STATE_WRITE_FAILED, (r.stdout, r.stderr)
    values, _ = scripts.parse_output(r.stdout)
    assert values["error"] == f"could not write {deploy}/state.json"
    assert (deploy / "state.json").read_text() == "old\n"
    assert (deploy / "history.jsonl").read_text() == '{"n":1}\n'
    assert (deploy / ".lock" / "owner.json").exists()
    assert not (tmp_path / "docker-calls").exists()  # blue was not stopped


def test_without_a_state_write_finish_still_records_and_unlocks(tmp_path):
    # abandon() calls finish with no state: a blocked state.json.tmp is no concern.
    deploy = deploy_dir(tmp_path)
    (deploy / "state.json.tmp").mkdir()
    s = make_settings(APP_NAME="shop", DEPLOY_DIR=str(deploy), DRAIN_TIMEOUT="0")
    r = run(scripts.finish(s, history_line=format_history_line({"n": 2}),
                           stop_colour="green"), tmp_path)
    assert r.returncode == 0, r.stderr
    assert "stop green" in (tmp_path / "docker-calls").read_text()
    assert (deploy / "history.jsonl").read_text() == '{"n":1}\n{"n":2}\n'
    assert not (deploy / ".lock").exists()
