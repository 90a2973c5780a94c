"""The access log --watch reads: parsing lines, a window's summary, the verdict."""

import pytest

from tasks.model.access_log import (OK, REVERT, TOO_FEW, ColourSummary, Record, log_format,
                                    parse_line, parse_log, percentile, summarize, watch_verdict)


def line(t, colour, status, method="GET", upstream="0.010"):
    return f"{t} {colour} {status} {method} {upstream}"


def test_log_format_fields_in_order():
    assert log_format("$c") == "$msec $c $status $request_method $upstream_response_time"


@pytest.mark.parametrize("text,upstream", [
    ("0.004", 0.004),
    ("0.004, 0.010", 0.014),      # a retry: both tries
    ("0.001 : 0.003", 0.004),     # an internal redirect
    ("-", None),                  # nginx answered itself (redirect, ACME file)
    ("", None),
])
def test_parse_line_upstream_times(text, upstream):
    record = parse_line(f"1718000000.500 blue 200 GET {text}".rstrip())
    assert record.time == 1718000000.5 and record.colour == "blue"
    assert record.status == 200 and record.method == "GET"
    assert record.upstream == (pytest.approx(upstream) if upstream is not None else None)
    assert record.proxied is (upstream is not None)


@pytest.mark.parametrize("text", [
    "", "garbage", "127.0.0.1 - - [10/Oct/2024:13:55:36 +0000] \"GET / HTTP/1.1\" 200 2326",
    "1718000000.5 purple 200 GET 0.001", "1718000000.5 blue 2000 GET 0.001",
    "soon blue 200 GET 0.001",
])
def test_parse_line_skips_other_formats(text):
    assert parse_line(text) is None


def test_parse_log_keeps_the_window():
    text = "\n".join([line(99.9, "blue", 200), line(100, "green", 500), "noise",
                      line(150.5, "blue", 201, "POST"), line(200, "green", 200)]) + "\n"
    records = parse_log(text, since=100, until=200)
    assert [(r.time, r.colour, r.status) for r in records] == \
        [(100.0, "green", 500), (150.5, "blue", 201)]
    assert len(parse_log(text)) == 4


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50 and percentile(values, 0.99) == 99
    assert percentile([0.3], 0.99) == 0.3 and percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0


def test_summary_per_colour():
    records = [Record(1.0, "green", 200, "GET", 0.010), Record(2.0, "green", 502, "GET", 0.001),
               Record(3.0, "green", 503, "POST", 0.002), Record(4.0, "green", 200, "GET", 0.1),
               Record(5.0, "blue", 200, "GET", 0.02),
               Record(6.0, "green", 301, "GET", None)]  # a redirect: no colour served it
    summary = summarize(records)
    assert summary["green"] == ColourSummary(requests=4, errors=2, p50=0.002, p99=0.1)
    assert summary["green"].error_rate == 0.5
    assert summary["blue"] == ColourSummary(requests=1, errors=0, p50=0.02, p99=0.02)
    assert summarize([]) == {}


def summary_of(requests, errors):
    return {"green": ColourSummary(requests, errors, 0.01, 0.02),
            "blue": ColourSummary(1000, 1000, 0.01, 0.02)}  # the old colour does not count


@pytest.mark.parametrize("requests,errors,verdict", [
    (100, 0, OK), (100, 5, OK), (100, 6, REVERT), (20, 20, REVERT), (20, 1, OK),
    (19, 19, TOO_FEW), (0, 0, TOO_FEW),
])
def test_watch_verdict(requests, errors, verdict):
    assert watch_verdict(summary_of(requests, errors), "green", max_error_rate=0.05,
                         min_requests=20) == verdict


def test_watch_verdict_without_requests_to_the_new_colour():
    assert watch_verdict({"blue": ColourSummary(50, 0, 0.1, 0.1)}, "green", 0.05, 20) == TOO_FEW
    assert watch_verdict({}, "green", 0.05, 1) == TOO_FEW


def test_from_log_text_to_verdict():
    lines = [line(100 + i, "green", 500 if i % 4 == 0 else 200) for i in range(40)]
    lines += [line(100 + i, "blue", 200) for i in range(40)]
    summary = summarize(parse_log("\n".join(lines)))
    assert summary["green"].requests == 40 and summary["green"].errors == 10
    assert watch_verdict(summary, "green", 0.05, 20) == REVERT
    assert watch_verdict(summary, "green", 0.3, 20) == OK
    assert watch_verdict(summary, "blue", 0.05, 20) == OK
