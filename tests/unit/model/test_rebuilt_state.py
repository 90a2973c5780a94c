"""model/rebuilt_state.py (repair's state), and model/takeover.py's sight of a dead
task's switch, from the inspect script's output (hand-built samples)."""

import json

import pytest

from support.host_output import SHA_BLUE, SHA_GREEN, container_line, host_output, view_of
from support.plain_settings import make_settings
from tasks.model.nginx_file import render_nginx
from tasks.model.rebuilt_state import rebuilt_state
from tasks.model.state import empty_state, format_history_line, history_entry, with_release
from tasks.model.takeover import served_unrecorded

NEW = "d" * 40
IMAGE = {"blue": "sha256:" + "1" * 64, "green": "sha256:" + "2" * 64}


@pytest.fixture
def s():
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git")


def state_of(s, live, green=SHA_GREEN):
    """blue on SHA_BLUE, green on ``green``, ``live`` live."""
    state = empty_state(s.app_name)
    for colour, commit in (("blue", SHA_BLUE), ("green", green)):
        state = with_release(state, colour, branch="main", commit=commit, image=IMAGE[colour],
                             who={"user": "ana"}, live=colour == live,
                             at="2024-05-01T10:00:00+00:00")
    return state


def view(s, state, served, green_runs):
    images = {"blue": SHA_BLUE, "green": green_runs}
    lines = {c: container_line(s, c, image=IMAGE[c]) for c in IMAGE}
    lines.update({f"{c}-image": json.dumps({"id": IMAGE[c], "tags": [f"bluegreen-shop:{images[c]}"],
                                            "labels": {}}) for c in IMAGE})
    nginx = render_nginx(s, served) if served else None
    return view_of(host_output(s, state=state, nginx=nginx, containers=lines), s)


def test_a_switch_its_task_never_recorded_is_seen_and_rebuilt(s):
    # The task's connection was cut after its reload: nginx serves green, which
    # runs the new build; state.json still names blue live and green's old build.
    v = view(s, state_of(s, "blue"), "green", NEW)
    assert served_unrecorded(v).colour == "green"
    state, _ = rebuilt_state(v, s)
    assert state["live"] == "green"
    assert state["colours"]["green"]["commit"] == NEW
    assert state["colours"]["blue"]["commit"] == SHA_BLUE


def test_the_live_colour_running_another_build_than_recorded_is_seen(s):
    assert served_unrecorded(view(s, state_of(s, "green"), "green", NEW)).unrecorded


def test_a_host_as_recorded_or_without_an_nginx_file_needs_nothing(s):
    assert served_unrecorded(view(s, state_of(s, "green"), "green", SHA_GREEN)) is None
    assert served_unrecorded(view(s, state_of(s, "green"), None, NEW)) is None


def test_who_and_when_come_from_the_history_line_of_that_release(s):
    # state.json is gone; green's release of NEW is in history.jsonl (by ana,
    # an hour before the container's start: Docker restarted since), blue's is not.
    lines = {c: container_line(s, c, image=IMAGE[c], started="2024-05-02T08:00:00.5Z")
             for c in IMAGE}
    lines.update({f"{c}-image": json.dumps({"id": IMAGE[c], "labels": {},
                                            "tags": [f"bluegreen-shop:{commit}"]})
                  for c, commit in (("blue", SHA_BLUE), ("green", NEW))})
    who = {"user": "ana", "machine": "laptop", "git": "Ana <ana@example.com>"}
    entry = history_entry(host="prod", app="shop", task="release", who=who, result="ok",
                          duration=3.0, from_colour="blue", to_colour="green",
                          branch="main", commit=NEW, at="2024-05-02T07:00:00+00:00")
    older = {**entry, "commit": SHA_GREEN, "user": "bo", "time": "2024-04-01T07:00:00+00:00"}
    failed = {**entry, "result": "failed", "user": "cy"}
    history = [format_history_line(e).strip() for e in (older, entry, failed)]
    v = view_of(host_output(s, state="{not json", nginx=render_nginx(s, "green"),
                            containers=lines, history=history), s)
    state, _ = rebuilt_state(v, s)
    green, blue = state["colours"]["green"], state["colours"]["blue"]
    assert green["deployed_by"] == "ana@laptop (Ana <ana@example.com>)"
    assert green["deployed_at"] == "2024-05-02T07:00:00+00:00"
    assert blue["deployed_by"] == "unknown (rebuilt by repair)"
    assert blue["deployed_at"] == "2024-05-02T08:00:00+00:00"  # its container's start


@pytest.mark.parametrize("result, kept", [("failed", False), ("ok", True)])
def test_a_stopped_container_of_a_failed_release_is_no_release(s, result, kept):
    # state.json is gone; green's container is stopped on NEW: a release into a
    # green that never had one, which failed (its container kept for its logs),
    # or one that went live and was stopped later (--stop-old): only that counts.
    lines = {"blue": container_line(s, "blue", image=IMAGE["blue"]),
             "green": container_line(s, "green", state="exited", exit_code=3,
                                     image=IMAGE["green"])}
    lines.update({f"{c}-image": json.dumps({"id": IMAGE[c], "labels": {},
                                            "tags": [f"bluegreen-shop:{commit}"]})
                  for c, commit in (("blue", SHA_BLUE), ("green", NEW))})
    entry = history_entry(host="prod", app="shop", task="release", who={"user": "ana"},
                          result=result, duration=3.0, from_colour="blue", to_colour="green",
                          branch="main", commit=NEW)
    v = view_of(host_output(s, state="{not json", nginx=render_nginx(s, "blue"),
                            containers=lines, history=[format_history_line(entry).strip()]), s)
    state, _ = rebuilt_state(v, s)
    assert state["colours"]["blue"]["commit"] == SHA_BLUE
    assert (state["colours"]["green"].get("commit") == NEW) is kept, state["colours"]["green"]
