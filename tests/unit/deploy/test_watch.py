"""deploy/watch.py: the watch's judgement of a colour's answers and its
log-reading step, run by a local sh.
"""

import pytest

from support.local_step import run_step
from support.plain_settings import make_settings
from tasks.commands.switching import rotate_access_log
from tasks.deploy.watch import Outcome, cpu_seconds, judge, read_step
from tasks.model.access_log import OK, REVERT, TOO_FEW, Record, summarize, watch_verdict


@pytest.fixture
def s(tmp_path):
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git", DEPLOY_DIR=str(tmp_path))


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
