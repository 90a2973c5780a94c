"""What promote.py decides after a watch (tasks/promote.py), over a fake session.

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

from support.facts import released_state
from support.settings import make_settings
from tasks import accesslog, promote
from tasks.accesslog import ColourSummary
from tasks.errors import FAILED, Failure
from tasks.output import Reporter
from tasks.watch import Outcome


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
    """The host-touching steps promote.py calls, recorded in order."""
    done = []
    monkeypatch.setattr(promote, "switch_nginx", switching(done))
    monkeypatch.setattr(promote, "verify",
                        lambda session, colour, **kw: done.append(("verify", colour)))
    monkeypatch.setattr(promote, "stop_colour",
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
    monkeypatch.setattr(promote, "watch", lambda session, **kw: result)


def test_a_clean_watch_keeps_the_release_and_returns_its_figures(s, steps, monkeypatch,
                                                                capsys):
    session = Session(s, released_state(s, live="green", colours=("blue", "green")))
    watching(monkeypatch, outcome(accesslog.OK))
    figures = promote.watch_release(session, session.view.state, new="green", old="blue",
                                    seconds=30, fields={}, before={})
    assert figures["verdict"] == accesslog.OK and figures["new"] == "green"
    assert steps == [] and session.records == []
    assert "watch ended clean: green answered 0 of 20 requests" in capsys.readouterr().out


def test_too_few_requests_keep_a_release_live_and_say_so(s, steps, monkeypatch, capsys):
    session = Session(s, released_state(s, live="green", colours=("blue", "green")))
    watching(monkeypatch, outcome(accesslog.TOO_FEW, requests=3))
    figures = promote.watch_release(session, session.view.state, new="green", old="blue",
                                    seconds=30, fields={}, before={})
    assert figures["verdict"] == accesslog.TOO_FEW and steps == []
    out = capsys.readouterr().out
    assert "too few to judge; green stays live" in out and "ended clean" not in out


def test_a_revert_switches_back_records_it_and_fails_with_the_figures(s, steps, monkeypatch):
    state = released_state(s, live="green", colours=("blue", "green"))
    session = Session(s, state)
    watching(monkeypatch, outcome(accesslog.REVERT, requests=20, errors=5))
    with pytest.raises(Failure) as err, session.locked():
        promote.watch_release(session, state, new="green", old="blue", seconds=30,
                              fields={"commit": "c0ffee"}, before={})
        assert False, "a revert raises"
    assert steps == [("switch", "blue"), ("verify", "blue")]
    assert err.value.code == FAILED
    assert err.value.message.startswith("reverted by the watch: green answered 5 of 20")
    assert err.value.extra["result"] == "reverted" and err.value.extra["live"] == "blue"
    assert err.value.extra["reverted"] == "green"
    assert err.value.extra["watch"]["verdict"] == accesslog.REVERT
    [(_, line)] = session.records
    assert line["result"] == "reverted" and line["from_colour"] == "green"
    assert line["to_colour"] == "blue" and line["commit"] == "c0ffee"
    assert session.unlocked == 1


def test_a_revert_that_cannot_switch_back_still_drops_the_lock(s, monkeypatch):
    session = Session(s, released_state(s, live="green", colours=("blue", "green")))
    watching(monkeypatch, outcome(accesslog.REVERT, requests=20, errors=5))

    def broken(session, colour, **kw):
        raise Failure("`nginx -s reload` failed", code=FAILED)

    monkeypatch.setattr(promote, "switch_nginx", broken)
    with pytest.raises(Failure, match="reload"), session.locked():
        promote.watch_release(session, session.view.state, new="green", old="blue",
                              seconds=30, fields={}, before={})
    assert session.unlocked == 1 and session.records == []


def test_a_clean_canary_is_promoted_and_the_old_colour_stopped_on_request(s, steps,
                                                                         monkeypatch):
    state = released_state(s, live="blue", colours=("blue", "green"))
    session = Session(s, state)
    watching(monkeypatch, outcome(accesslog.OK))
    figures = promote.watch_canary(session, state, new="green", old="blue", seconds=30,
                                   fields={"commit": "c0ffee"}, stop_old=True)
    assert figures["promoted"] is True
    assert steps == [("switch", "green"), ("verify", "green"), ("stop", "blue")]
    [(_, line)] = session.records
    assert line["result"] == "promoted" and line["was"] == "canary"
    assert line["from_colour"] == "blue" and line["to_colour"] == "green"
    assert line["watch"]["verdict"] == accesslog.OK


def test_a_canary_with_too_few_requests_is_left_for_a_person(s, steps, monkeypatch, capsys):
    state = released_state(s, live="blue", colours=("blue", "green"))
    session = Session(s, state)
    watching(monkeypatch, outcome(accesslog.TOO_FEW, requests=2))
    figures = promote.watch_canary(session, state, new="green", old="blue", seconds=30,
                                   fields={}, stop_old=True)
    assert figures["promoted"] is False and steps == [] and session.records == []
    assert "the canary is NOT promoted and keeps running" in capsys.readouterr().out


def test_a_failed_promotion_after_a_clean_canary_is_undone_and_recorded(s, monkeypatch):
    state = released_state(s, live="blue", colours=("blue", "green"))
    session = Session(s, state)
    watching(monkeypatch, outcome(accesslog.OK))
    switched = []

    def verify(session, colour, attempt=None):
        attempt.phase = "verify"  # as the real step names its phase (test_steps)
        raise Failure("green does not answer through nginx", code=FAILED)

    monkeypatch.setattr(promote, "switch_nginx", switching(switched))
    monkeypatch.setattr(promote, "verify", verify)
    monkeypatch.setattr("tasks.steps.switch_nginx", switching(switched))  # Attempt's undo
    with pytest.raises(Failure, match="does not answer"):
        promote.watch_canary(session, state, new="green", old="blue", seconds=30, fields={})
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

    monkeypatch.setattr(promote, "watch", interrupted)
    with pytest.raises(Failure) as err, session.locked():
        promote.watched(session, new="green", old="blue", seconds=30, canary=canary)
    assert err.value.code == promote.INTERRUPTED == 130
    assert err.value.hint == hint and "the lock was released" in err.value.message
    assert session.unlocked == 1
