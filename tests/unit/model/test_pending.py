"""model/pending.py: stage, canary and promote as pure decisions, and the state
they leave (the pending colour, its mark, what a rollback does with it).
"""

import pytest

from support.host_output import SHA_GREEN, container_line, host_output, released_state, view_of
from support.plain_settings import make_settings
from tasks.errors import FAILED, Failure
from tasks.model.nginx_file import render_nginx
from tasks.model.pending import (after_switch, history_note, plan_promote, qa_access, with_pending,
                                 with_promoted, with_withdrawn)
from tasks.model.plan import plan_release, plan_switch


HOST = "prod"


@pytest.fixture
def s(tmp_path):
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git", DEPLOY_DIR=str(tmp_path))


def staged(s, pending="staged", percent=None):
    """blue live, green built with ``pending``."""
    state = released_state(s, "blue", ("blue", "green"))
    return with_pending(state, "green", pending, branch="main", commit=SHA_GREEN,
                        image="sha256:" + "d" * 64, who={"user": "ana"}, percent=percent)


def view(s, state, canary=None):
    return view_of(host_output(s, state=state, nginx=render_nginx(s, "blue", canary=canary),
                               containers={c: container_line(s, c) for c in ("blue", "green")}),
                   s)


# --- the state ------------------------------------------------------------------


def test_a_staged_colour_keeps_the_live_one_and_is_marked(s):
    state = staged(s)
    assert state["live"] == "blue"
    assert state["colours"]["green"]["pending"] == "staged"
    assert state["colours"]["green"]["commit"] == SHA_GREEN
    assert state["colours"]["green"]["deployed_by"] == {"user": "ana"}


def test_promotion_clears_the_mark_and_makes_it_live(s):
    state = with_promoted(staged(s, "canary", 20), "green")
    assert state["live"] == "green"
    assert "pending" not in state["colours"]["green"]
    assert "canary_percent" not in state["colours"]["green"]


def test_a_rollback_of_a_canary_stages_it_again(s):
    state = after_switch(staged(s, "canary", 20), "blue", "green")
    assert state["live"] == "blue" and state["colours"]["green"]["pending"] == "staged"
    assert with_withdrawn(staged(s, "canary", 20), "green", "blue",
                          "reverted")["colours"]["green"]["pending"] == "reverted"


def test_a_plain_switch_only_moves_live(s):
    state = released_state(s, "blue", ("blue", "green"))
    assert after_switch(state, "green", None)["live"] == "green"


# --- decisions ------------------------------------------------------------------


def test_promote_takes_the_canary_first(s):
    p = plan_promote(view(s, staged(s, "canary", 20), canary=("green", 20)), HOST)
    assert (p.to, p.live, p.kind, p.percent) == ("green", "blue", "canary", 20)


def test_promote_takes_the_staged_idle_colour(s):
    p = plan_promote(view(s, staged(s)), HOST)
    assert (p.to, p.live, p.kind) == ("green", "blue", "staged")


def test_promote_with_nothing_staged_refuses(s):
    with pytest.raises(Failure) as exc:
        plan_promote(view(s, released_state(s, "blue", ("blue", "green"))), HOST)
    assert exc.value.code == FAILED and "nothing is staged" in exc.value.message


@pytest.mark.parametrize("pending", ["staged", "reverted"])
def test_rollback_never_goes_to_a_build_that_was_never_live(s, pending):
    with pytest.raises(Failure) as exc:
        plan_switch(view(s, staged(s, pending)), s, HOST, None)
    assert exc.value.code == FAILED
    # A staged build may be promoted; a reverted one never: no message suggests it.
    assert ("promote" in exc.value.hint) == (pending == "staged"), exc.value.hint
    assert ("promote" in exc.value.message) is False


def test_rollback_during_a_canary_sends_everyone_back_to_live(s):
    v = view(s, staged(s, "canary", 20), canary=("green", 20))
    assert plan_switch(v, s, HOST, None) == "blue"
    assert plan_switch(v, s, HOST, "blue") == "blue"
    with pytest.raises(Failure) as exc:
        plan_switch(v, s, HOST, "green")
    assert "promote" in exc.value.hint


def test_no_release_while_a_canary_runs(s):
    with pytest.raises(Failure) as exc:
        plan_release(view(s, staged(s, "canary", 20), canary=("green", 20)), s, HOST)
    assert "canary" in exc.value.message and exc.value.code == FAILED


def test_qa_access_names_preview_or_the_open_port(s):
    assert "preview" in qa_access(s, HOST, "green")
    assert "http://127.0.0.1:8082/" in qa_access(s, HOST, "green")
    opened = make_settings(APP_NAME="shop", BIND_ADDRESS="0.0.0.0")
    assert "http://prod:8082/" in qa_access(opened, HOST, "green")


def test_history_note_shows_the_figures():
    entry = {"percent": 20, "watch": {"verdict": "revert", "new": "green",
                                      "colours": {"green": {"requests": 40, "errors": 40}}}}
    assert history_note(entry) == "20% of clients, watch revert: green 40/40 5xx"
