"""What the records say is what happened: --ref releases, repair's branches,
one time format, and the exit code a crash message names. Pure functions."""

import pytest

from tasks.model.compose_file import Container
from tasks.model.state import (empty_state, history_entry, iso_utc, now_iso, recover_branch,
                               source_of, with_release)


# --- --ref releases ---------------------------------------------------------------


def test_a_ref_release_records_the_ref_and_keeps_the_branch():
    state = with_release(empty_state("shop"), "green", branch="main", commit="0319b3ec71a5ff",
                         image="sha256:1", who="ana@laptop", live=True, ref="0319b3ec71a5")
    record = state["colours"]["green"]
    assert (record["branch"], record["ref"]) == ("main", "0319b3ec71a5")
    assert source_of(record) == "ref 0319b3ec71a5"


def test_a_branch_release_has_no_ref():
    state = with_release(empty_state("shop"), "green", branch="main", commit="abc",
                         image="sha256:1", who="ana@laptop", live=True)
    assert "ref" not in state["colours"]["green"]
    assert source_of(state["colours"]["green"]) == "main"


def test_history_names_the_ref_of_a_ref_release():
    entry = history_entry(host="prod", app="shop", task="release", who={"user": "ana"},
                          result="ok", duration=1.0, branch="main", commit="abc", ref="v1.2")
    assert (entry["branch"], entry["ref"], source_of(entry)) == ("main", "v1.2", "ref v1.2")
    plain = history_entry(host="prod", app="shop", task="release", who={}, result="ok",
                          duration=1.0, branch="main")
    assert "ref" not in plain


# --- repair keeps what each colour followed -----------------------------------------


def test_repair_keeps_the_branch_state_json_recorded():
    old = {"branch": "feature/x", "commit": "c1", "ref": "v1"}
    assert recover_branch("blue", old, [], "c1", "main") == ("feature/x", "v1", "state.json")
    # The colour no longer runs the ref's commit: the ref is not kept.
    assert recover_branch("blue", old, [], "c2", "main") == ("feature/x", None, "state.json")


def test_repair_without_state_json_reads_the_branch_from_history():
    entries = [
        {"task": "setup", "to": "blue", "result": "ok", "branch": "main", "commit": "c0"},
        {"task": "release", "to": "blue", "result": "ok", "branch": "stable", "commit": "c1"},
        {"task": "release", "to": "blue", "result": "failed", "branch": "broken"},
        {"task": "release", "to": "green", "result": "ok", "branch": "develop"},
        {"task": "rollback", "to": "blue", "result": "ok", "branch": "whatever"},
    ]
    assert recover_branch("blue", {}, entries, "c1", "main") == ("stable", None, "history.jsonl")
    assert recover_branch("green", {}, entries, "c9", "main")[:2] == ("develop", None)


def test_repair_with_no_record_at_all_says_it_used_the_default():
    branch, ref, where = recover_branch("green", {}, [], "c1", "main")
    assert (branch, ref) == ("main", None) and "GREEN_BRANCH" in where


# --- one time format ----------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("2025-03-02T10:15:43.123456789Z", "2025-03-02T10:15:43+00:00"),  # docker inspect
    ("2025-03-02T10:15:43Z", "2025-03-02T10:15:43+00:00"),
    ("2025-03-02T10:15:43+00:00", "2025-03-02T10:15:43+00:00"),
    ("2025-03-02T12:15:43+02:00", "2025-03-02T10:15:43+00:00"),
    ("2025-03-02T10:15:43.5-01:00", "2025-03-02T11:15:43+00:00"),
    ("0001-01-01T00:00:00Z", None),  # Docker's "never"
    ("", None),
    ("yesterday", None),
])
def test_every_time_in_the_records_has_one_format(text, expected):
    assert iso_utc(text) == expected


def test_now_is_already_in_that_format():
    assert iso_utc(now_iso()) == now_iso()


# --- the exit code a crash message names --------------------------------------------


def test_a_restarting_container_names_its_real_exit_code():
    # Between two starts, `docker inspect` says restarting with the real code.
    text = Container("green", "restarting", exit_code=3, restart_count=1).describe()
    assert text == "crash-looping (restarted once, last exit code 3)"


def test_a_container_running_again_after_a_crash_does_not_claim_exit_0():
    # Docker resets State.ExitCode to 0 each time the container starts again.
    text = Container("green", "running", exit_code=0, restart_count=2).describe()
    assert "restarted 2 times" in text and "exit 0" not in text and "exit code 0" not in text


def test_a_stopped_container_names_its_exit_code():
    assert Container("blue", "exited", exit_code=143).describe() == "stopped (exit code 143)"
