"""What a watch leads to (tasks/flows/watched.py), over a fake session.

The watch's verdict leads to one of three things: keep (a release stays
live), promote (a clean canary goes to everyone), leave (too few requests
to judge a canary), or revert (everyone back, recorded, exit 1 with the
figures in the JSON summary). The steps that touch the host are replaced by
recorders, so what is checked is which of them ran, in which order, what
was recorded, and what the operator is told. The lock is the task's block
(``with session.locked():``), released however the block ends.
"""

from contextlib import contextmanager

import pytest

from support.host_output import released_state
from support.plain_settings import make_settings
from tasks.deploy.watch import Outcome
from tasks.errors import FAILED, Failure
from tasks.flows.watched import INTERRUPTED, watch_canary, watch_release, watched
from tasks.model.access_log import OK, REVERT, TOO_FEW, ColourSummary
from tasks.output import Reporter


def patch_step(monkeypatch, name, replacement):
    """Replace a host-touching step where the watch's outcomes call it
    (flows/watched.py) and where the steps they share call it (deploy/steps.py:
    switch_everyone, Attempt's undo)."""
    monkeypatch.setattr(f"tasks.flows.watched.{name}", replacement)
    if name in ("switch_nginx", "verify"):
        monkeypatch.setattr(f"tasks.deploy.steps.{name}", replacement)


class View:
    nginx_version = "1.24.0"
    nginx_text = ""

    def __init__(self, state):
        self.state = state


class Session:
    def __init__(self, settings, state):
        self.settings, self.name, self.task = settings, "prod", "release"
        self.reporter = Reporter("prod")
        self.view = View(state)
        self.records, self.failures, self.unlocked = [], [], 0

    @contextmanager
    def locked(self, **kw):
        """Session.locked's promise: the lock is released however the block ends."""
        try:
            yield self.view
        finally:
            self.unlocked += 1

    def record(self, state_text, history_line):
        self.records.append((state_text, history_line))

    def history_line(self, result, **fields):
        return {"result": result, **fields}

    def record_failure(self, exc, *, phase, fields):
        self.failures.append((exc, phase, dict(fields)))


@pytest.fixture
def s():
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git",
                         WATCH_MAX_ERROR_RATE="0.05", WATCH_MIN_REQUESTS="10")


@pytest.fixture
def steps(monkeypatch):
    """The host-touching steps the watch's outcomes call, recorded in order."""
    done = []
    patch_step(monkeypatch, "switch_nginx", switching(done))
    patch_step(monkeypatch, "verify",
                        lambda session, colour, **kw: done.append(("verify", colour)))
    patch_step(monkeypatch, "stop_colour",
                        lambda session, colour: done.append(("stop", colour)))
    return done


def switching(done):
    """A switch_nginx that records its colour and, as the real one, marks the
    attempt it is given switched."""

    def switch(session, colour, attempt=None, **kw):
        done.append(("switch", colour))
        if attempt is not None:
            attempt.switched = True

    return switch


def outcome(verdict, requests=20, errors=0, new="green", old="blue"):
    summary = {new: ColourSummary(requests, errors, 0.01, 0.02)} if requests else {}
    return Outcome(verdict, new, old, seconds=30.0, summary=summary)


def watching(monkeypatch, result):
    patch_step(monkeypatch, "watch", lambda session, **kw: result)


def test_a_clean_watch_keeps_the_release_and_returns_its_figures(s, steps, monkeypatch,
                                                                capsys):
    session = Session(s, released_state(s, live="green", colours=("blue", "green")))
    watching(monkeypatch, outcome(OK))
    figures = watch_release(session, session.view.state, new="green", old="blue",
                                    seconds=30, fields={}, before={})
    assert figures["verdict"] == OK and figures["new"] == "green"
    assert steps == [] and session.records == []
    assert "watch ended clean: green answered 0 of 20 requests" in capsys.readouterr().out


def test_too_few_requests_keep_a_release_live_and_say_so(s, steps, monkeypatch, capsys):
    session = Session(s, released_state(s, live="green", colours=("blue", "green")))
    watching(monkeypatch, outcome(TOO_FEW, requests=3))
    figures = watch_release(session, session.view.state, new="green", old="blue",
                                    seconds=30, fields={}, before={})
    assert figures["verdict"] == TOO_FEW and steps == []
    out = capsys.readouterr().out
    assert "too few to judge; green stays live" in out and "ended clean" not in out


def test_a_revert_switches_back_records_it_and_fails_with_the_figures(s, steps, monkeypatch):
    state = released_state(s, live="green", colours=("blue", "green"))
    session = Session(s, state)
    watching(monkeypatch, outcome(REVERT, requests=20, errors=5))
    with pytest.raises(Failure) as err, session.locked():
        watch_release(session, state, new="green", old="blue", seconds=30,
                              fields={"commit": "c0ffee"}, before={})
        assert False, "a revert raises"
    assert steps == [("switch", "blue"), ("verify", "blue")]
    assert err.value.code == FAILED
    assert err.value.message.startswith("reverted by the watch: green answered 5 of 20")
    assert err.value.extra["result"] == "reverted" and err.value.extra["live"] == "blue"
    assert err.value.extra["reverted"] == "green"
    assert err.value.extra["watch"]["verdict"] == REVERT
    [(_, line)] = session.records
    assert line["result"] == "reverted" and line["from_colour"] == "green"
    assert line["to_colour"] == "blue" and line["commit"] == "c0ffee"
    assert session.unlocked == 1


def test_a_revert_that_cannot_switch_back_still_drops_the_lock(s, monkeypatch):
    session = Session(s, released_state(s, live="green", colours=("blue", "green")))
    watching(monkeypatch, outcome(REVERT, requests=20, errors=5))

    def broken(session, colour, **kw):
        raise Failure("`nginx -s reload` failed", code=FAILED)

    patch_step(monkeypatch, "switch_nginx", broken)
    with pytest.raises(Failure, match="reload"), session.locked():
        watch_release(session, session.view.state, new="green", old="blue",
                              seconds=30, fields={}, before={})
    assert session.unlocked == 1 and session.records == []


def test_a_clean_canary_is_promoted_and_the_old_colour_stopped_on_request(s, steps,
                                                                         monkeypatch):
    state = released_state(s, live="blue", colours=("blue", "green"))
    session = Session(s, state)
    watching(monkeypatch, outcome(OK))
    figures = watch_canary(session, state, new="green", old="blue", seconds=30,
                                   fields={"commit": "c0ffee"}, stop_old=True)
    assert figures["promoted"] is True
    assert steps == [("switch", "green"), ("verify", "green"), ("stop", "blue")]
    [(_, line)] = session.records
    assert line["result"] == "promoted" and line["was"] == "canary"
    assert line["from_colour"] == "blue" and line["to_colour"] == "green"
    assert line["watch"]["verdict"] == OK


def test_a_canary_with_too_few_requests_is_left_for_a_person(s, steps, monkeypatch, capsys):
    state = released_state(s, live="blue", colours=("blue", "green"))
    session = Session(s, state)
    watching(monkeypatch, outcome(TOO_FEW, requests=2))
    figures = watch_canary(session, state, new="green", old="blue", seconds=30,
                                   fields={}, stop_old=True)
    assert figures["promoted"] is False and steps == [] and session.records == []
    assert "the canary is NOT promoted and keeps running" in capsys.readouterr().out


def test_a_failed_promotion_after_a_clean_canary_is_undone_and_recorded(s, monkeypatch):
    state = released_state(s, live="blue", colours=("blue", "green"))
    session = Session(s, state)
    watching(monkeypatch, outcome(OK))
    switched = []

    def verify(session, colour, attempt=None):
        attempt.phase = "verify"  # as the real step names its phase (test_steps)
        raise Failure("green does not answer through nginx", code=FAILED)

    patch_step(monkeypatch, "switch_nginx", switching(switched))
    patch_step(monkeypatch, "verify", verify)
    with pytest.raises(Failure, match="does not answer"):
        watch_canary(session, state, new="green", old="blue", seconds=30, fields={})
    # switched, then back to the old colour
    assert switched == [("switch", "green"), ("switch", "blue")]
    [(exc, phase, fields)] = session.failures
    assert phase == "verify" and fields["was"] == "canary"


@pytest.mark.parametrize("canary, hint", [
    (True, "watch by hand, then fab -H prod promote or fab -H prod rollback"),
    (False, "watch by hand; to go back to blue: fab -H prod rollback"),
])
def test_ctrl_c_during_a_watch_drops_the_lock_and_leaves_the_switch(s, monkeypatch, canary,
                                                                     hint):
    session = Session(s, released_state(s))

    def interrupted(session, **kw):
        raise KeyboardInterrupt

    patch_step(monkeypatch, "watch", interrupted)
    with pytest.raises(Failure) as err, session.locked():
        watched(session, new="green", old="blue", seconds=30, canary=canary)
    assert err.value.code == INTERRUPTED == 130
    assert err.value.hint == hint and "the lock was released" in err.value.message
    assert session.unlocked == 1
