"""tasks/output.py: one line per phase with its duration (FAILED when it
raised), progress lines, durations for the summary, plain tables."""

import json

import pytest

from tasks.output import Reporter, emit_json, table


def lines(text):
    return [line for line in text.splitlines() if line]


def test_a_phase_prints_one_line_with_its_duration_and_detail(capsys):
    rep = Reporter("prod")
    with rep.phase("build") as ph:
        ph.detail = "green: abc123"
    out = lines(capsys.readouterr().out)
    assert len(out) == 1
    host, name, seconds, detail = out[0].split(None, 3)
    assert (host, name, detail) == ("prod", "build", "green: abc123")
    assert seconds.endswith("s") and float(seconds[:-1]) >= 0
    assert list(rep.durations()) == ["build"]


def test_a_phase_that_raises_is_marked_failed_and_still_timed(capsys):
    rep = Reporter("web-1")
    with pytest.raises(RuntimeError):
        with rep.phase("switch") as ph:
            ph.detail = "nginx -t"
            raise RuntimeError("boom")
    assert "FAILED nginx -t" in capsys.readouterr().out
    assert list(rep.durations()) == ["switch"]


def test_an_exception_that_does_not_blame_the_phase_prints_no_line(capsys):
    rep = Reporter("prod")
    exc = RuntimeError("not set up")
    exc.blames_phase = False
    with pytest.raises(RuntimeError):
        with rep.phase("lock"):
            raise exc
    assert capsys.readouterr().out == "" and rep.durations() == {}


def test_a_phase_ended_early_prints_once(capsys):
    rep = Reporter("prod")
    with rep.phase("verify") as ph:
        ph.end()
        ph.detail = "set after the end: not shown"
    out = lines(capsys.readouterr().out)
    assert len(out) == 1 and "not shown" not in out[0]


def test_durations_add_up_phases_of_one_name():
    rep = Reporter("prod", quiet=True)
    for _ in range(3):
        with rep.phase("probe"):
            pass
    assert list(rep.durations()) == ["probe"] and rep.durations()["probe"] >= 0


def test_json_mode_puts_human_lines_on_stderr_and_quiet_prints_nothing(capsys):
    Reporter("prod", json_mode=True).progress("building")
    Reporter("prod", quiet=True).line("hidden")
    out = capsys.readouterr()
    assert out.out == "" and out.err == "prod    | building\n"


def test_host_names_are_padded_to_at_least_four_columns(capsys):
    Reporter("a").line("x")
    Reporter("long-host").line("y")
    assert capsys.readouterr().out == "a     x\nlong-host  y\n"


def test_emit_json_is_one_sorted_line(capsys):
    emit_json({"b": 1, "a": {"z": 2}})
    out = capsys.readouterr().out
    assert out == '{"a": {"z": 2}, "b": 1}\n' and json.loads(out) == {"a": {"z": 2}, "b": 1}


def test_table_columns_are_as_wide_as_their_widest_cell():
    assert table([("blue", 8081), ("green", "")], ["COLOUR", "PORT"]) == (
        "COLOUR  PORT\n"
        "blue    8081\n"
        "green")
