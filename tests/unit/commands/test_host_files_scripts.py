"""commands/host_files.py: record (state.json, history, the lock) and setup,
run as steps of a local `sh -s`.
"""


import pytest

from support.script_box import settings_for
from tasks.commands import base, host_files
from tasks.commands.base import NO_DEPLOY_DIR
from tasks.model.state import empty_state, format_history_line, format_state


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
