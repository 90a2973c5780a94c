"""Stage, canary, promote and --watch: the pure decisions, the state they
leave, the watch's judgement, and its log-reading step run by a local sh."""

import pytest

from support.host_output import SHA_GREEN, container_line, host_output, released_state, view_of
from support.settings import make_settings
from support.local_step import run_step
from tasks.cli.flags import check_percent, check_release_modes, check_watch
from tasks.commands.switching import rotate_access_log
from tasks.configuration.values import Invalid
from tasks.deploy.watch import Outcome, cpu_seconds, judge, read_step
from tasks.errors import BAD_INPUT, FAILED, Failure
from tasks.model.access_log import OK, REVERT, TOO_FEW, Record, summarize, watch_verdict
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


# --- flags ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "100", "ten", "-5", "20.5", ""])
def test_bad_canary_percent(value):
    with pytest.raises(Invalid):
        check_percent(value)


@pytest.mark.parametrize("value", ["-5", "0", "soon", "86401"])
def test_bad_watch_seconds(value):
    with pytest.raises(Invalid):
        check_watch(value)


def test_no_switch_goes_with_neither_canary_nor_watch():
    with pytest.raises(Failure) as exc:
        check_release_modes(True, 10, 0, False)
    assert exc.value.code == BAD_INPUT and "--canary" in exc.value.message
    check_release_modes(True, None, 0, False)
    check_release_modes(False, 10, 30, True)
    with pytest.raises(Failure):
        check_release_modes(False, 10, 0, True)  # nobody would stop the old colour


# --- the watch --------------------------------------------------------------------


def records(colour, n, status=200, start=1000.0, step=0.01):
    return [Record(start + i * step, colour, status, "GET", 0.002) for i in range(n)]


def test_judge_reverts_on_too_many_5xx_once_enough_requests_came():
    assert judge(records("green", 19, 500), "green", 0.05, 20) == TOO_FEW
    assert judge(records("green", 20, 500), "green", 0.05, 20) == REVERT
    assert judge(records("green", 100) + records("blue", 10, 500), "green", 0.05,
                 20) == OK


def test_judge_sees_a_colour_that_turns_bad_after_a_good_start():
    good = records("green", 1000, start=1000.0, step=0.05)  # 50 s of good answers
    bad = records("green", 40, 500, start=1051.0, step=0.1)  # then 4 s of 500s
    assert watch_verdict(summarize(good + bad), "green", 0.05,
                                   20) == OK
    assert judge(good + bad, "green", 0.05, 20) == REVERT


def test_cpu_seconds_from_the_marker():
    assert cpu_seconds("10 5 3 2 100") == 0.2
    assert cpu_seconds("") is None and cpu_seconds("1 2 3") is None


def test_outcome_says_why():
    summary = summarize(records("green", 40, 500))
    out = Outcome(verdict=REVERT, new="green", old="blue", seconds=2.0,
                  summary=summary, host_cpu=0.01, detected_after_first_5xx=0.4)
    assert "40 of 40" in out.sentence(0.05, 20)
    figures = out.as_dict(0.05, 20)
    assert figures["colours"]["green"]["errors"] == 40 and figures["new_error_rate"] == 1.0


def test_read_step_reads_only_new_bytes_and_notices_a_rotation(s, tmp_path):
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "access.log"
    log.write_text("1000.000 blue 200 GET 0.001\n")
    first = run_step(read_step(s, 0))
    size = int(first.values["size"])
    assert first.blocks["log"] == "1000.000 blue 200 GET 0.001\n"
    assert cpu_seconds(first.values["cpu"]) is not None
    with log.open("a") as f:
        f.write("1001.000 green 500 GET 0.002\n")
    second = run_step(read_step(s, size))
    assert second.blocks["log"] == "1001.000 green 500 GET 0.002\n"
    nothing = run_step(read_step(s, int(second.values["size"])))
    assert "log" not in nothing.blocks
    log.write_text("1002.000 blue 200 GET 0.001\n")  # rotated: a new, shorter file
    third = run_step(read_step(s, int(second.values["size"])))
    assert third.values["from"] == "0" and third.blocks["log"].startswith("1002.000")


def test_the_access_log_is_rotated_once_over_its_bound(s, tmp_path):

    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "access.log"
    log.write_text("x" * 10)
    assert "rotated" not in run_step(rotate_access_log(s, max_bytes=10)).values
    assert log.exists()
    log.write_text("y" * 11)
    assert run_step(rotate_access_log(s, max_bytes=10)).values["rotated"] == "access.log"
    assert not log.exists() and (tmp_path / "logs" / "access.log.1").read_text() == "y" * 11
    assert "rotated" not in run_step(rotate_access_log(s, max_bytes=10)).values  # no log yet
