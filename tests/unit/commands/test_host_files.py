"""commands/host_files.record when state.json cannot be written: it stops there.

No "ok" history line, the lock untouched: the caller (Attempt.fail)
switches nginx back and records the failure itself
(tests/e2e/test_failures.py shows the whole story through fab).
"""

from support.local_step import run_step
from support.plain_settings import make_settings
from tasks.commands.base import STATE_WRITE_FAILED
from tasks.commands.host_files import record
from tasks.model.state import empty_state, format_history_line, format_state


def deploy_dir(tmp_path):
    deploy = tmp_path / "srv"
    (deploy / ".lock").mkdir(parents=True)
    (deploy / ".lock" / "owner.json").write_text("{}\n")
    (deploy / "state.json").write_text("old\n")
    (deploy / "history.jsonl").write_text('{"n":1}\n')
    (deploy / "state.json.tmp").mkdir()  # where the write goes before its rename
    return deploy


def test_a_failed_state_write_stops_before_the_history_line(tmp_path):
    deploy = deploy_dir(tmp_path)
    s = make_settings(APP_NAME="shop", DEPLOY_DIR=str(deploy))
    r = run_step(record(s, state_text=format_state(empty_state("shop")),
                                history_line=format_history_line({"n": 2})), cwd=tmp_path)
    assert r.code == STATE_WRITE_FAILED, (r.stdout, r.stderr)
    assert r.values["error"] == f"could not write {deploy}/state.json"
    assert (deploy / "state.json").read_text() == "old\n"
    assert (deploy / "history.jsonl").read_text() == '{"n":1}\n'
    assert (deploy / ".lock" / "owner.json").exists()


def test_without_a_state_write_the_failure_is_still_recorded(tmp_path):
    # record_failure writes a history line alone: a blocked state.json.tmp is no concern.
    deploy = deploy_dir(tmp_path)
    s = make_settings(APP_NAME="shop", DEPLOY_DIR=str(deploy))
    r = run_step(record(s, history_line=format_history_line({"n": 2})), cwd=tmp_path)
    assert r.code == 0, r.stderr
    assert (deploy / "history.jsonl").read_text() == '{"n":1}\n{"n":2}\n'
    assert (deploy / "state.json").read_text() == "old\n"
