"""state.json and history.jsonl: parse, format, and the new states of a release."""

import copy
import json

import pytest

from tasks.errors import FAILED
from tasks.model.state import (StateError, empty_state, format_history_line, format_state,
                               history_entry, last_failure, parse_history, parse_state, with_live,
                               with_release)

AT = "2024-05-01T10:00:00+00:00"
WHO = {"user": "ana", "machine": "laptop", "git": "Ana <ana@example.com>"}


def blue_released():
    return with_release(empty_state("shop"), "blue", branch="main", commit="a" * 40,
                        image="sha256:1", who="ana@laptop", live=True, at=AT)


# --- parse_state --------------------------------------------------------------


@pytest.mark.parametrize("text, why", [
    (None, "is missing"),
    ("", "is missing"),
    ("  \n", "is missing"),
    ('{"live": "blue", "colours": {"blue": {"commit": "ab', "is not valid JSON (corrupted?)"),
    ("null", "has no 'colours' record (corrupted?)"),
    ('{"live": "blue"}', "has no 'colours' record (corrupted?)"),
    ('{"live": "blue", "colours": []}', "has no 'colours' record (corrupted?)"),
    ('{"live": "purple", "colours": {}}', "names an unknown live colour 'purple'"),
    ('{"live": ["blue"], "colours": {}}', "names an unknown live colour ['blue']"),
    ('{"live": null, "colours": {"blue": "main"}}', "has a broken record for blue"),
])
def test_parse_state_errors(text, why):
    with pytest.raises(StateError) as exc:
        parse_state(text, "/srv/shop/state.json")
    assert exc.value.message == f"/srv/shop/state.json {why}"
    assert exc.value.code == FAILED
    assert "fab repair" in exc.value.hint


def test_parse_state_fills_in_missing_colour_records():
    state = parse_state('{"live": "blue", "colours": {"blue": {"commit": "abc"}, "green": null}}')
    assert state["colours"] == {"blue": {"commit": "abc"}, "green": {}}


def test_format_then_parse_is_the_same_state():
    state = blue_released()
    text = format_state(state)
    assert text.endswith("}\n")
    assert parse_state(text) == state


def test_empty_state():
    assert empty_state("shop") == {"version": 1, "app": "shop", "live": None,
                                   "colours": {"blue": {}, "green": {}}, "updated_at": None}


# --- new states ---------------------------------------------------------------


def test_with_release_records_the_colour_and_does_not_touch_its_input():
    before = empty_state("shop")
    snapshot = copy.deepcopy(before)
    after = with_release(before, "green", branch="hotfix", commit="b" * 40,
                         image="sha256:2", who="bo@ci", live=False, at=AT)
    assert before == snapshot
    assert after["colours"]["green"] == {"branch": "hotfix", "commit": "b" * 40,
                                         "image": "sha256:2", "deployed_at": AT,
                                         "deployed_by": "bo@ci"}
    assert after["live"] is None and after["updated_at"] == AT
    assert after["colours"]["blue"] == {}


def test_with_release_live_makes_it_live():
    after = with_release(blue_released(), "green", branch="main", commit="b" * 40,
                         image="sha256:2", who="bo", live=True, at=AT)
    assert after["live"] == "green"
    assert after["colours"]["blue"]["commit"] == "a" * 40  # the old colour keeps its record


def test_with_live_switches_and_does_not_touch_its_input():
    before = blue_released()
    snapshot = copy.deepcopy(before)
    after = with_live(before, "green", at="2024-06-01T00:00:00+00:00")
    assert before == snapshot
    assert after["live"] == "green" and after["updated_at"] == "2024-06-01T00:00:00+00:00"
    assert after["colours"] == before["colours"]
    after["colours"]["blue"]["commit"] = "changed"
    assert before["colours"]["blue"]["commit"] == "a" * 40  # a deep copy


# --- history ------------------------------------------------------------------


def test_history_entry_fields():
    entry = history_entry(host="prod", app="shop", task="release", who=WHO, result="ok",
                          duration=12.3456, from_colour="blue", to_colour="green",
                          branch="main", commit="b" * 40, at=AT)
    assert entry == {"time": AT, "host": "prod", "app": "shop", "task": "release",
                     "result": "ok", "from": "blue", "to": "green", "branch": "main",
                     "commit": "b" * 40, "duration": 12.35, **WHO}


def test_a_failed_entry_names_its_phase_and_error():
    entry = history_entry(host="prod", app="shop", task="release", who={}, result="failed",
                          duration=3, to_colour="green", phase="health",
                          error="green did not pass", at=AT)
    assert (entry["phase"], entry["error"]) == ("health", "green did not pass")


def test_a_history_line_is_one_line_whatever_the_values_hold():
    entry = history_entry(
        host="prod", app="shop", task="release", result="failed", duration=1, at=AT,
        who={"user": "ana\nevil", "ci": "job\r\n42\u2028x\u0085y"},
        error="build failed:\nstep 3/7\r\n  RUN make\n",
        branch="main")
    line = format_history_line(entry)
    assert line.endswith("\n") and line.count("\n") == 1
    # Python's splitlines also splits on U+2028, U+0085 ...: none may be raw.
    assert len(line.splitlines()) == 1
    assert parse_history(line + line) == [entry, entry]


def test_parse_history_skips_junk():
    good = [{"task": "release", "to": "blue"}, {"task": "switch", "to": "green"}]
    text = ("\n".join(json.dumps(e) for e in good[:1]) + "\n"
            "not json\n"
            '{"task": "release", "to": "gr\n'  # a line cut by a crash
            "[1, 2, 3]\n"
            '"a string"\n'
            "   \n"
            + json.dumps(good[1]) + "\n")
    assert parse_history(text) == good


@pytest.mark.parametrize("text", [None, "", "\n\n"])
def test_parse_history_of_nothing(text):
    assert parse_history(text) == []


def test_a_failed_release_stays_the_colours_failure_until_it_goes_live_or_is_released():
    failed = {"task": "release", "to": "blue", "result": "failed", "n": 1}
    assert last_failure([failed], "blue")["n"] == 1
    assert last_failure([failed], "green") is None
    assert last_failure([], "blue") is None
    # A failed rollback or switch into the colour is not a release failure.
    assert last_failure([failed, {"task": "switch", "to": "blue", "result": "failed"}],
                        "blue")["n"] == 1
    # Releases into the other colour change nothing about this one.
    assert last_failure([failed, {"task": "release", "to": "green", "result": "ok"}],
                        "blue")["n"] == 1
    for later in ({"task": "switch", "to": "blue", "result": "ok"},
                  {"task": "rollback", "to": "blue", "result": "ok"},
                  {"task": "promote", "to": "blue", "result": "promoted"},
                  {"task": "release", "to": "blue", "result": "reverted"},  # back to blue
                  {"task": "release", "to": "blue", "result": "ok"},
                  {"task": "release", "to": "blue", "result": "staged"}):
        assert last_failure([failed, later], "blue") is None, later
