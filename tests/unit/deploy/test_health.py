"""The health gate and the check that nginx serves the new colour.

Tests are data: a scripted host (HTTP answers as probe.Response, or
ProbeErrors, one per probe; what `docker inspect` says of the container, as
the container_state step's block) on a fake clock, and the
result or the failure the loop must give. Nothing sleeps for real.
"""


import pytest

from support.fake_probes import Clock, Reporter, response
from support.host_output import container_line
from support.plain_settings import make_settings
from tasks.commands.containers import container_state
from tasks.connection.http_channel import ProbeError
from tasks.connection.step_shell import StepResult
from tasks.deploy.health import VERIFY_IN_A_ROW, HealthFailure, describe_probe, gate, verify_public
from tasks.errors import FAILED
from tasks.model.compose_file import Container


class FakeHost:
    """Answers probes from a script; the last answer repeats when it runs out."""

    def __init__(self, settings, answers, container="running", restarts=0, exit_code=0,
                 clock=None, probe_seconds=0.0):
        self.settings = settings
        self.answers = list(answers)
        self.container = (container, restarts, exit_code)
        self.clock, self.probe_seconds = clock, probe_seconds
        self.probes, self.scripts = [], []

    def http(self, port, path, host_header="_", timeout=2.0, tls=False,
             server_hostname=None, bind="127.0.0.1"):
        self.probes.append({"port": port, "path": path, "host_header": host_header,
                            "timeout": timeout, "tls": tls,
                            "server_hostname": server_hostname, "bind": bind})
        if self.clock is not None:
            self.clock.now += self.probe_seconds
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            return response(answer, {}, path, host_header)
        status, colour, *canary = answer  # (status, colour[, the canary of its file])
        headers = {"x-deploy-colour": colour} if colour else {}
        if canary:
            headers["x-deploy-canary"] = canary[0]
        return response(status, headers, path, host_header)

    def run(self, script, **kw):
        self.scripts.append(script)
        state, restarts, exit_code = self.container
        lines = [] if state == "missing" else [
            container_line(self.settings, colour, state, exit_code, restarts)
            for colour in ("blue", "green") if colour in script]
        text = "".join(line + "\n" for line in lines)
        return StepResult(0, "", "", {}, {"containers": text})


REFUSED = ProbeError("connection refused", "127.0.0.1:8082")


@pytest.fixture
def s():
    return make_settings(APP_NAME="shop", HEALTH_PATH="/healthz", HEALTH_TIMEOUT="10",
                         HEALTH_INTERVAL="1", HEALTH_PASSES="3", SERVER_NAME="shop.example.com")


def run_gate(s, host, clock, colour="green"):
    return gate(host, s, colour, Reporter(), clock=clock, sleep=clock.sleep)


# --- gate -------------------------------------------------------------------------


def test_passes_after_n_good_answers_in_a_row(s):
    clock = Clock()
    host = FakeHost(s, [REFUSED, 503, 200, 204, 302], clock=clock)
    assert run_gate(s, host, clock) == "3/3 good answers from green (HTTP 302 /healthz)"
    assert len(host.probes) == 5
    assert clock.slept == [1.0] * 4
    probe = host.probes[0]
    assert (probe["port"], probe["path"], probe["host_header"], probe["bind"]) == (
        8082, "/healthz", "shop.example.com", "127.0.0.1")
    assert 0.5 <= probe["timeout"] <= 5.0


def test_a_bad_answer_resets_the_count(s):
    clock = Clock()
    host = FakeHost(s, [200, 200, 500, 200, 200, 200], clock=clock)
    run_gate(s, host, clock)
    assert len(host.probes) == 6


def test_one_pass_needed_returns_at_once(s):
    s1 = make_settings(HEALTH_PASSES="1")
    clock = Clock()
    assert run_gate(s1, FakeHost(s1, [200], clock=clock), clock, "blue") == (
        "1/1 good answers from blue (HTTP 200 /)")
    assert clock.slept == []


@pytest.mark.parametrize("state, restarts, exit_code", [
    ("exited", 0, 1), ("dead", 0, 137), ("restarting", 2, 1), ("running", 3, 1),
    ("missing", 0, 0),
])
def test_stops_early_when_the_container_is_gone_or_crash_looping(s, state, restarts,
                                                                  exit_code):
    clock = Clock()
    host = FakeHost(s, [REFUSED], container=state, restarts=restarts, exit_code=exit_code,
                    clock=clock)
    with pytest.raises(HealthFailure) as exc:
        run_gate(s, host, clock)
    described = Container("green", state, exit_code, restarts).describe()
    assert exc.value.message == (f"green is not healthy: its container {described}; "
                                 "nothing live changed")
    assert exc.value.code == FAILED
    assert len(host.probes) == 1 and clock.now < 1002  # not the whole HEALTH_TIMEOUT
    assert "shop-green-1" in host.scripts[0] and "shop-blue-1" not in host.scripts[0]


def test_a_container_still_starting_is_waited_for(s):
    clock = Clock()
    host = FakeHost(s, [REFUSED, REFUSED, 200, 200, 200], container="created", clock=clock)
    assert run_gate(s, host, clock).startswith("3/3 good")


def test_times_out_with_the_last_answer_in_the_message(s):
    clock = Clock()
    host = FakeHost(s, [REFUSED, 200, 200, 502], clock=clock)
    with pytest.raises(HealthFailure) as exc:
        run_gate(s, host, clock)
    assert exc.value.message == ("green did not pass the health check within "
                                 "HEALTH_TIMEOUT=10s (last answer: HTTP 502; 0/3 good in a row); "
                                 "nothing live changed")
    assert "Raise HEALTH_TIMEOUT" in exc.value.hint and "/healthz" in exc.value.hint
    assert exc.value.code == FAILED
    # A probe a second from 0s to 10s; no sleep runs past the deadline.
    assert len(host.probes) == 11 and clock.now == 1010


def test_times_out_naming_a_probe_error(s):
    clock = Clock()
    host = FakeHost(s, [REFUSED], container="running", clock=clock)
    with pytest.raises(HealthFailure) as exc:
        run_gate(s, host, clock)
    assert "(last answer: no answer from 127.0.0.1:8082: connection refused; 0/3" in (
        exc.value.message)


def test_slow_probes_count_against_the_timeout(s):
    clock = Clock()
    host = FakeHost(s, [503], clock=clock, probe_seconds=4.0)
    with pytest.raises(HealthFailure):
        run_gate(s, host, clock)
    assert len(host.probes) <= 3
    # Each probe's own timeout shrinks to what is left (never below 0.5s).
    assert [p["timeout"] for p in host.probes] == sorted(
        (p["timeout"] for p in host.probes), reverse=True)
    assert all(0.5 <= p["timeout"] <= 5.0 for p in host.probes)


def test_progress_lines_show_changes_and_every_fifth_probe(s):
    clock, rep = Clock(), Reporter()
    host = FakeHost(s, [REFUSED] * 2 + [503] * 4 + [200] * 3, clock=clock)
    gate(host, s, "green", rep, clock=clock, sleep=clock.sleep)
    assert rep.lines == [
        "health attempt 1 at  0.0s: no answer from 127.0.0.1:8082: connection refused",
        "health attempt 3 at  2.0s: HTTP 503",
        "health attempt 5 at  4.0s: HTTP 503",
        "health attempt 7 at  6.0s: HTTP 200 (1/3 good)",
    ]


def test_describe_probe(s):
    assert describe_probe(FakeHost(s, [204]), s, "blue") == (True, "HTTP 204 on /healthz")
    assert describe_probe(FakeHost(s, [500]), s, "blue") == (False, "HTTP 500 on /healthz")
    assert describe_probe(FakeHost(s, [404]), s, "blue") == (
        False, "HTTP/1.1 404 Not Found to `GET /healthz HTTP/1.1, Host: shop.example.com` "
               "on /healthz")
    assert describe_probe(FakeHost(s, [REFUSED]), s, "blue") == (
        False, "no answer from 127.0.0.1:8082: connection refused")


def test_probes_go_to_the_bind_address_of_the_colours():
    s6 = make_settings(BIND_ADDRESS="::1", HEALTH_PASSES="1")
    host = FakeHost(s6, [200])
    clock = Clock()
    gate(host, s6, "blue", Reporter(), clock=clock, sleep=clock.sleep)
    assert host.probes[0]["bind"] == "::1"


# --- verify_public ---------------------------------------------------------------------


def test_verify_waits_for_the_header_naming_the_colour(s):
    clock = Clock()
    host = FakeHost(s, [(200, "blue")] * 5 + [ProbeError("reset"), (200, "green")], clock=clock)
    result = verify_public(host, s, "green", Reporter(), clock=clock, sleep=clock.sleep)
    assert result == "http :8080 answers from green (HTTP 200)"
    assert len(host.probes) == 9  # and two more answers from green in a row
    probe = host.probes[0]
    assert (probe["port"], probe["path"], probe["host_header"], probe["tls"]) == (
        8080, "/healthz", "shop.example.com", False)


def test_verify_wants_answers_in_a_row_from_the_colour(s):
    # An old worker that has not yet acted on the reload can still answer.
    clock = Clock()
    host = FakeHost(s, [(200, "green"), (200, "blue"), (200, "green")], clock=clock)
    verify_public(host, s, "green", Reporter(), clock=clock, sleep=clock.sleep)
    assert len(host.probes) == 2 + VERIFY_IN_A_ROW


def test_verify_fails_after_the_bound(s):
    clock = Clock()
    host = FakeHost(s, [(200, "blue")], clock=clock)
    with pytest.raises(HealthFailure) as exc:
        verify_public(host, s, "green", Reporter(), bound=3.0, clock=clock, sleep=clock.sleep)
    assert exc.value.message == ("nginx did not serve green on port 8080 within 3s after the "
                                 "reload (last: answers from blue (HTTP 200))")
    assert "fab check" in exc.value.hint and exc.value.code == FAILED
    assert 3.0 < clock.now - 1000 <= 3.5


def test_verify_names_an_unmarked_server(s):
    clock = Clock()
    host = FakeHost(s, [(404, None)], clock=clock)
    with pytest.raises(HealthFailure) as exc:
        verify_public(host, s, "blue", Reporter(), bound=1.0, clock=clock, sleep=clock.sleep)
    assert "(last: answers from an unmarked server (HTTP 404))" in exc.value.message


def test_verify_with_ssl_probes_the_ssl_port_over_tls():
    s = make_settings(SERVER_NAME="shop.example.com", SSL_CERT_FILE="/etc/ssl/c.pem",
                      SSL_KEY_FILE="/etc/ssl/k.pem", SSL_PORT="8443")
    clock = Clock()
    host = FakeHost(s, [(200, "green")], clock=clock)
    assert verify_public(host, s, "green", Reporter(), clock=clock, sleep=clock.sleep) == (
        "https :8443 answers from green (HTTP 200)")
    probe = host.probes[0]
    assert (probe["port"], probe["tls"], probe["server_hostname"]) == (
        8443, True, "shop.example.com")


def test_a_refusal_names_the_request_it_refused(s):
    # A 4xx is usually the request's fault (path, Host, HTTP version): say what was asked.
    clock, rep = Clock(), Reporter()
    host = FakeHost(s, [400], clock=clock)
    with pytest.raises(HealthFailure) as exc:
        gate(host, s, "green", rep, clock=clock, sleep=clock.sleep)
    asked = "HTTP/1.1 400 Bad Request to `GET /healthz HTTP/1.1, Host: shop.example.com`"
    assert rep.lines[0] == f"health attempt 1 at  0.0s: {asked}"
    assert f"(last answer: {asked}; 0/3 good in a row)" in exc.value.message


def test_the_container_check_reads_the_containers_block(s):
    clock = Clock()
    host = FakeHost(s, [REFUSED], container="exited", exit_code=3, clock=clock)
    with pytest.raises(HealthFailure):
        run_gate(s, host, clock)
    assert host.scripts == [container_state(s, "green")]


def test_a_slow_jvm_is_waited_for_within_health_timeout():
    """A JVM: the port refuses for a long while (bridge mode: docker-proxy
    accepts and closes), then the app answers 503 until its database
    connection is up. All of it is "not yet", never a failure, until
    HEALTH_TIMEOUT."""
    s60 = make_settings(HEALTH_TIMEOUT="60", HEALTH_INTERVAL="1", HEALTH_PASSES="2")
    clock = Clock()
    closed = ProbeError("the connection closed without an answer", "127.0.0.1:8082")
    host = FakeHost(s60, [REFUSED] * 30 + [closed] * 10 + [503] * 5 + [200, 200],
                    clock=clock)
    assert run_gate(s60, host, clock).startswith("2/2 good")
    assert len(host.probes) == 47 and clock.now - 1000 < 60


def test_verify_does_not_take_a_canary_files_answer_for_the_new_file(s):
    # Promote of a green canary: until the old workers stop accepting, their
    # file still splits, and this client may be in green's share.
    clock = Clock()
    host = FakeHost(s, [(200, "green", "green")] * 5 + [(200, "green")], clock=clock)
    result = verify_public(host, s, "green", Reporter(), clock=clock, sleep=clock.sleep)
    assert result == "http :8080 answers from green (HTTP 200)"
    assert len(host.probes) == 5 + VERIFY_IN_A_ROW


def test_verify_says_when_only_the_canary_file_answered(s):
    clock = Clock()
    host = FakeHost(s, [(200, "green", "green")], clock=clock)
    with pytest.raises(HealthFailure) as exc:
        verify_public(host, s, "green", Reporter(), bound=1.0, clock=clock, sleep=clock.sleep)
    assert "(last: answers from green by the canary's nginx file (HTTP 200))" in exc.value.message
