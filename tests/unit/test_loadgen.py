"""The load generator's one definition of a failed request, its summary and
require(): data in, verdicts out. One test runs a real Load against a tiny
HTTP server on loopback in this process."""

import http.client
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import loadgen  # scripts/ is on pytest's pythonpath (pyproject.toml)
from loadgen import Request, classify_answer, classify_error, require, summarise


# --- errors: no answer came ---------------------------------------------------------


@pytest.mark.parametrize("exc, reason", [
    (ConnectionRefusedError(111, "Connection refused"), "refused"),
    (ConnectionResetError(104, "Connection reset by peer"), "reset"),
    (BrokenPipeError(32, "Broken pipe"), "reset"),
    (ConnectionAbortedError(103, "aborted"), "reset"),
    # closed before any answer: what a retiring nginx worker does to a keep-alive request
    (http.client.RemoteDisconnected("Remote end closed connection without response"), "reset"),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "reset"),
    (socket.timeout("timed out"), "timeout"),
    (TimeoutError("timed out"), "timeout"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls"),
    (http.client.BadStatusLine("garbage"), "bad answer"),
    (http.client.IncompleteRead(b"v1", 10), "bad answer"),
    (ValueError("something odd"), "ValueError"),
])
def test_classify_error(exc, reason):
    assert classify_error(exc) == reason


def test_a_timeout_is_never_counted_as_a_reset():
    # socket.timeout is an OSError like the resets: the order of the checks matters.
    assert classify_error(socket.timeout()) != "reset"


# --- answers ------------------------------------------------------------------------


@pytest.mark.parametrize("status, reason", [
    (200, ""), (204, ""), (101, "bad answer"),
    (301, "wrong redirect"), (302, "wrong redirect"), (304, "wrong redirect"),
    (400, "http 400"), (404, "http 404"), (500, "http 500"), (502, "http 502"),
    (503, "http 503"),
])
def test_classify_answer_without_an_expected_redirect(status, reason):
    assert classify_answer(status, {"location": "https://x/"}, "", "/version") == reason


def test_a_redirect_is_a_success_only_to_the_expected_place():
    to = "https://shop.test:8443"
    good = {"location": "https://shop.test:8443/version?a=1"}
    assert classify_answer(301, good, "", "/version?a=1", redirect_to=to) == ""
    assert classify_answer(308, good, "", "/version?a=1", redirect_to=to + "/") == ""
    for location in ("https://shop.test:8443/", "https://other.test:8443/version?a=1",
                     "http://shop.test:8443/version?a=1", "https://shop.test/version?a=1"):
        assert classify_answer(301, {"location": location}, "", "/version?a=1",
                               redirect_to=to) == "wrong redirect", location
    assert classify_answer(301, {}, "", "/version?a=1", redirect_to=to) == "wrong redirect"
    # A redirect expected does not excuse an error.
    assert classify_answer(502, good, "", "/version?a=1", redirect_to=to) == "http 502"


def test_accept_judges_good_answers_only():
    ours = lambda status, headers, body: body.startswith("a")  # noqa: E731
    assert classify_answer(200, {}, "a2\n", "/version", accept=ours) == ""
    assert classify_answer(200, {}, "b1\n", "/version", accept=ours) == "unexpected answer"
    assert classify_answer(500, {}, "a2\n", "/version", accept=ours) == "http 500"


# --- the summary and require() --------------------------------------------------------


def req(t, client="fresh", method="GET", error="", colour="blue", version="v1",
        reused=False, retry_ok=False, status=200):
    return Request(t, 0.001, client, method, None if error else status, colour,
                   "" if error else version, error, reused, retry_ok)


RECORDS = (
    [req(i * 0.01) for i in range(100)]
    + [req(1.0 + i * 0.01, version="v2", colour="green") for i in range(100)]
    + [req(0.5 + i * 0.01, client="keepalive") for i in range(40)]
    + [req(0.6, client="keepalive", error="reset", reused=True, retry_ok=True),
       req(0.7, client="keepalive", method="POST", error="reset", reused=True),
       req(0.8, client="keepalive", error="timeout"),
       req(0.9, client="keepalive", method="POST", version="")]
)


def test_summary_counts_per_client_kind_and_method():
    s = summarise(RECORDS, seconds=2.0, skipped=3)
    assert (s.total.sent, s.total.failed, s.total.timeouts) == (244, 3, 1)
    assert s.total.reasons == {"reset": 2, "timeout": 1}
    assert s.rate == 122.0 and s.skipped == 3
    fresh, ka_get, ka_post = (s.parts[("fresh", "GET")], s.parts[("keepalive", "GET")],
                              s.parts[("keepalive", "POST")])
    assert (fresh.sent, fresh.failed) == (200, 0)
    assert (ka_get.sent, ka_get.failed, ka_get.failed_on_reused, ka_get.retry_ok) == (42, 2, 1, 1)
    assert ka_get.reasons == {"reset": 1, "timeout": 1}
    assert (ka_post.sent, ka_post.failed, ka_post.retry_ok) == (2, 1, 0)
    assert ("fresh", "POST") not in s.parts  # nothing sent, nothing shown
    assert s.colours == {"blue": 141, "green": 100}
    assert s.versions == ["v1", "v2"]
    assert [r.error for r in s.failures] == ["reset", "reset", "timeout"]
    text = s.text()
    assert text.splitlines()[0] == "load: 244 requests sent in 2.0s (122/s), 3 failed"
    assert "keepalive POST" in text and "timeouts 1" in text
    assert "(1 on a reused connection; a POST is not retried)" in text
    assert "(1 on a reused connection; one retry fixed 1)" in text


def test_versions_in_order_follow_time_not_record_order():
    records = [req(2.0, version="v1"), req(0.0, version="v1"), req(1.0, version="v2"),
               req(1.5, error="reset"), req(3.0, version="v3")]
    assert loadgen.versions_in_order(records) == ["v1", "v2", "v1", "v3"]


def test_require_passes_and_returns_the_slice():
    part = require(summarise(RECORDS), min_requests=200, kinds=("fresh",))
    assert (part.sent, part.failed) == (200, 0)
    part = require(RECORDS, min_requests=10, max_failed=None, kinds=("keepalive",))
    assert (part.sent, part.failed) == (44, 3)


def test_require_fails_on_a_failure_with_the_breakdown():
    with pytest.raises(AssertionError) as e:
        require(RECORDS, min_requests=2, kinds=("keepalive",), methods=("POST",))
    message = str(e.value)
    assert message.startswith("1 of 2 requests (keepalive POST) failed (reset 1); "
                              "at most 0 allowed")
    assert "keepalive GET" in message and "0.70s keepalive POST reset" in message


def test_require_fails_when_too_few_requests_were_sent():
    with pytest.raises(AssertionError, match=r"only 0 requests \(all\) were sent, 1 needed"):
        require([], min_requests=1)
    with pytest.raises(AssertionError, match=r"only 200 requests \(fresh\) were sent, 201"):
        require(RECORDS, min_requests=201, kinds=("fresh",))
    with pytest.raises(AssertionError, match=r"failed \(reset 1\); at most 0 allowed; only 2"):
        require(RECORDS, min_requests=3, kinds=("keepalive",), methods=("POST",))
    with pytest.raises(ValueError, match="min_requests=0"):
        require(RECORDS, min_requests=0)


def test_require_names_its_slices_strictly():
    with pytest.raises(ValueError, match="kinds='fresh'"):
        require(RECORDS, min_requests=1, kinds="fresh")  # a string is not a tuple
    with pytest.raises(ValueError, match="methods"):
        require(RECORDS, min_requests=1, methods=("PUT",))


def test_max_failed_allows_a_budget():
    require(RECORDS, min_requests=1, max_failed=3)
    with pytest.raises(AssertionError):
        require(RECORDS, min_requests=1, max_failed=2)


def test_percentile():
    assert loadgen.percentile([], 50) is None
    assert loadgen.percentile([3, 1, 2, 4], 50) == 2
    assert loadgen.percentile(range(1, 101), 99) == 99


def test_load_goes_to_loopback_only_and_https_needs_a_name():
    with pytest.raises(ValueError, match="loopback only"):
        loadgen.Load(80, address="10.0.0.1")
    loadgen.Load(80, address="::1")
    with pytest.raises(ValueError, match="SNI"):
        loadgen.Load(443, tls=ssl.create_default_context())


# --- a real Load against a server on loopback ---------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as nginx

    def do_GET(self):
        if self.path == "/moved":
            self.answer(301, b"", location=f"https://shop.test:8443{self.path}")
        elif self.path == "/elsewhere":
            self.answer(302, b"", location="https://shop.test:8443/")
        else:
            self.answer(200, b"v7\n")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length)
        self.answer(200 if body == loadgen.POST_BODY else 400, b"posted v7\n")

    def answer(self, status, body, location=None):
        self.send_response(status)
        self.send_header("X-Deploy-Colour", "green")
        self.send_header("Content-Length", str(len(body)))
        if location:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_a_real_load_counts_both_clients_and_stops_by_itself(server):
    load = loadgen.Load(server, rate_fresh=100, rate_keepalive=100, threads_fresh=2,
                        keepalive_connections=2, post_path="/form", post_every=2,
                        max_seconds=0.6, max_requests=1000)
    load.start()
    load.wait_for(10)
    for t in load._threads:  # it stops by itself at max_seconds
        t.join(5)
    assert not any(t.is_alive() for t in load._threads)
    load.stop()
    s = load.summary()
    assert s.total.failed == 0, s.text()
    assert s.parts[("fresh", "GET")].sent >= 30, s.text()
    assert s.parts[("keepalive", "POST")].sent >= 10, s.text()
    assert s.versions == ["v7"] and s.colours == {"green": s.total.sent}
    assert 0.5 <= s.seconds <= 0.7
    # Keep-alive requests after the first on a connection went on a reused one.
    assert sum(r.reused for r in load.snapshot()) >= 20
    load.require(min_requests=10, kinds=("keepalive",), methods=("POST",))


def test_a_real_load_judges_redirects(server):
    to = "https://shop.test:8443"
    good = loadgen.Load(server, "/moved", rate_fresh=50, rate_keepalive=0, redirect_to=to,
                        max_requests=10).start()
    good.wait_for(10, timeout=5)
    good.stop()
    assert good.require(min_requests=10).sent == 10
    # Not expected, or somewhere else: both fail.
    for path, redirect_to in (("/moved", None), ("/elsewhere", to)):
        bad = loadgen.Load(server, path, rate_fresh=50, rate_keepalive=0,
                           redirect_to=redirect_to, max_requests=5).start()
        bad.wait_for(5, timeout=5)
        bad.stop()
        assert bad.summary().total.reasons == {"wrong redirect": 5}


@pytest.mark.parametrize("body, version", [
    ("v2\n", "v2"), ("slow v2\n", "v2"), ("", ""), ("  \n", ""),
    ("<!doctype html>\n<title>sample app</title>\n", ""), ("x" * 61, ""),
])
def test_version_named(body, version):
    assert loadgen.version_named(body) == version
