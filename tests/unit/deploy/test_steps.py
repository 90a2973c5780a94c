"""The pipeline's steps and its one undo (tasks/deploy/steps.py), over a scripted session.

The session answers each step with the StepResult a test gives it (by the
script's builder) and records the scripts it was asked to run; probes
answer from a list. What is checked: which scripts run, in which order,
and what the operator is told.
"""

from http.client import responses
from types import SimpleNamespace

import pytest

from support.host_output import container_line, host_output, released_state, view_of
from support.local_step import M, read_step
from support.plain_settings import make_settings
from tasks.commands import building, switching
from tasks.commands.base import (NGINX_RELOAD_FAILED, NGINX_TEST_FAILED, NGINX_WRITE_FAILED,
                                 START_FAILED, build_timeout)
from tasks.commands.building import restore
from tasks.commands.containers import logs_tail, stop
from tasks.connection.http_channel import Response, describe_request
from tasks.deploy import steps
from tasks.deploy.steps import restore_idle, step_bound, switch_nginx
from tasks.errors import Failure
from tasks.model.compose_file import Container
from tasks.model.nginx_file import render_nginx
from tasks.output import Reporter


class Host:
    """Probes answer 200; container_state says the colour runs."""

    def __init__(self, settings):
        self.settings, self.probes = settings, []

    def http(self, port, path, **kw):
        self.probes.append(port)
        return Response(200, responses[200], {}, b"", describe_request(path, "_"))

    def run(self, script, **kw):
        lines = [container_line(self.settings, c) for c in ("blue", "green") if c in script]
        return read_step("")._replace(blocks={"containers": "".join(l + "\n" for l in lines)})


class Session:
    def __init__(self, settings, view, answers=None, fail_on=None):
        self.settings, self.view, self.name, self.task = settings, view, "prod", "release"
        self.reporter = Reporter("prod")
        self.host = Host(settings)
        self.answers = answers or {}  # script text -> StepResult
        self.fail_on = fail_on  # a script text whose run raises
        self.ran, self.failures = [], []

    def run(self, script, **kw):
        self.ran.append(script)
        if script == self.fail_on:
            raise Failure("lost the SSH connection to prod", code=3)
        return self.answers.get(script, read_step(""))

    def record_failure(self, exc, *, phase, fields):
        self.failures.append((exc, phase, dict(fields)))


@pytest.fixture
def s():
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git", HEALTH_PASSES="1",
                         DRAIN_TIMEOUT="0")


def blue_live(s, green="running"):
    """blue live; green released before (its commit recorded) and in ``green`` state."""
    containers = {"blue": container_line(s, "blue")}
    if green != "missing":
        containers["green"] = container_line(s, "green", state=green)
    return view_of(host_output(s, state=released_state(s, "blue", ("blue", "green")),
                               nginx=render_nginx(s, "blue"), containers=containers), s)


def attempt(session, phase, switched=False, rebuilt="green"):
    view = session.view
    a = steps.Attempt(session, live=view.live, fields={"from_colour": view.live})
    a.phase, a.switched = phase, switched
    a.rebuilt, a.before = rebuilt, view.containers.get(rebuilt) if rebuilt else None
    return a


def test_a_failed_verify_switches_back_then_restores_the_idle_colour(s, capsys):
    session = Session(s, blue_live(s))
    error = Failure("nginx did not serve green")
    attempt(session, "verify", switched=True).fail(error)
    commit = session.view.record("green")["commit"]
    # The switch back puts back the very file that was live.
    assert session.view.nginx_text.startswith("# bluegreen app=shop live=blue")
    assert session.ran == [switching.switch(s, session.view.nginx_text),
                           restore(s, "green", commit)]
    assert session.host.probes == [s.port_of("green")]  # its health, before saying so
    assert session.failures == [(error, "verify", {"from_colour": "blue"})]
    out = capsys.readouterr().out
    assert "switching back to blue" in out
    assert f"green runs its previous release {commit[:12]} again" in out


def test_a_colour_that_was_not_running_is_stopped_again(s, capsys):
    session = Session(s, blue_live(s, green="missing"))
    attempt(session, "start").fail(Failure("the container did not start"))
    assert session.ran == [stop(s, "green")]
    assert "stopped green, as it was before this release" in capsys.readouterr().out


def test_a_failed_health_gate_shows_the_colours_last_log_lines(s, capsys):
    session = Session(s, blue_live(s))
    logs = logs_tail(s, "green")
    session.answers[logs] = read_step(
        f"{M} begin logs\nboot\nTraceback: boom\n\n{M} end logs")
    attempt(session, "health").fail(Failure("green is not healthy"))
    assert session.ran[0] == logs
    out = capsys.readouterr().out
    assert "last log lines of green:" in out and "  | Traceback: boom" in out


def test_nothing_is_undone_before_the_target_was_touched(s):
    session = Session(s, blue_live(s))
    attempt(session, "git", rebuilt=None).fail(Failure("branch gone is not in GIT_REPO"))
    assert session.ran == [] and [f[1] for f in session.failures] == ["git"]


def test_an_undo_that_fails_is_said_and_the_failure_still_recorded(s, capsys):
    view = blue_live(s)
    switch_back = switching.switch(s, view.nginx_text)
    session = Session(s, view, fail_on=switch_back)
    error = Failure("nginx did not serve green")
    attempt(session, "verify", switched=True).fail(error)  # never raises
    out = capsys.readouterr().out
    assert "could not undo everything: " in out and "lost the SSH connection to prod" in out
    assert session.failures == [(error, "verify", {"from_colour": "blue"})]


# Was a bug (tasks/deploy/steps.py, Attempt.fail: `rep.line(f"could not undo everything:
# {undo}")`): str() of a Failure is its "error: ..." line, so the operator
# reads "could not undo everything: error: lost the SSH connection ...";
# the undo's message (undo.message for a Failure) is what belongs there.
def test_an_undo_failure_is_worded_once(s, capsys):
    view = blue_live(s)
    switch_back = switching.switch(s, view.nginx_text)
    session = Session(s, view, fail_on=switch_back)
    attempt(session, "verify", switched=True).fail(Failure("nginx did not serve green"))
    assert "could not undo everything: lost the SSH connection to prod" in capsys.readouterr().out


def test_a_restore_that_fails_names_the_kept_image(s):
    session = Session(s, blue_live(s))
    commit = session.view.record("green")["commit"]
    session.answers[restore(s, "green", commit)] = read_step(
        f"{M} error no kept image bluegreen-shop:{commit}",
        code=START_FAILED)
    with pytest.raises(Failure) as err:
        restore_idle(session, "green", session.view.containers["green"], False)
    assert err.value.message == (f"could not start green's previous release {commit[:12]} "
                                 f"again: no kept image bluegreen-shop:{commit}")


# --- the switch step: one message per exit code ---------------------------------------


def switched(s, code, out="", error=None, stderr=""):
    session = Session(s, blue_live(s))
    text = f"{M} begin output\n{out}\n{M} end output"
    if error:
        text = f"{M} error {error}\n" + text
    session.answers[switching.switch(s, render_nginx(s, "green"))] = read_step(
        text, code=code, stderr=stderr)
    with pytest.raises(Failure) as err:
        switch_nginx(session, "green")
    return err.value


def test_a_file_nginx_never_saw_is_a_write_failure_not_an_nginx_verdict(s):
    f = switched(s, NGINX_WRITE_FAILED, error="could not write /etc/nginx/conf.d/shop.conf",
                 stderr="tee: /etc/nginx/conf.d/shop.conf.tmp: Permission denied")
    assert f.message == ("could not write /etc/nginx/conf.d/shop.conf on prod (USE_SUDO=false): "
                         "tee: /etc/nginx/conf.d/shop.conf.tmp: Permission denied; the old "
                         "nginx file is untouched, nothing live changed")
    assert "USE_SUDO=true" in f.hint and f.code == 1


def test_nginx_t_failing_names_the_emerg_line(s):
    f = switched(s, NGINX_TEST_FAILED,
                 out="nginx: [emerg] cannot load certificate \"/c.pem\"\n"
                     "nginx: configuration file /etc/nginx/nginx.conf test failed")
    assert f.message == ("the new nginx file failed `nginx -t`; the old one is back in place: "
                         "nginx: [emerg] cannot load certificate \"/c.pem\"")


def test_a_failed_reload_says_the_old_file_is_back(s):
    f = switched(s, NGINX_RELOAD_FAILED, out="nginx: [error] open() \"/run/nginx.pid\"")
    assert f.message.startswith("`nginx -s reload` failed; the old nginx file is back in place")


def test_a_good_switch_says_what_it_did(s, capsys):
    session = Session(s, blue_live(s))
    switch_nginx(session, "green")
    assert session.ran == [switching.switch(s, render_nginx(s, "green"))]
    assert "nginx -> green (tested, reloaded)" in capsys.readouterr().out


def test_within_an_attempt_a_switch_names_its_phase_and_marks_it_switched(s):
    session = Session(s, blue_live(s))
    a = attempt(session, "health", rebuilt=None)
    switch_nginx(session, "green", attempt=a)
    assert (a.phase, a.switched) == ("switch", True)


def test_a_switch_that_fails_is_its_phase_and_leaves_the_attempt_unswitched(s):
    session = Session(s, blue_live(s))
    session.answers[switching.switch(s, render_nginx(s, "green"))] = read_step(
        "", code=NGINX_TEST_FAILED)
    a = attempt(session, "health", rebuilt=None)
    with pytest.raises(Failure), a:
        switch_nginx(session, "green", attempt=a)
    # nginx kept its old file: nothing to switch back
    assert (a.phase, a.switched) == ("switch", False) and session.ran == [
        switching.switch(s, render_nginx(s, "green"))]
    assert [f[1] for f in session.failures] == ["switch"]


def test_each_step_names_its_phase_once_in_the_attempt(s, monkeypatch):
    session = Session(s, blue_live(s))
    a = attempt(session, "switch", switched=True, rebuilt=None)

    def fails(*args, **kw):
        raise Failure("nginx did not serve green")

    monkeypatch.setattr(steps, "verify_public", fails)
    with pytest.raises(Failure):
        steps.verify(session, "green", attempt=a)
    assert a.phase == "verify"
    b = attempt(session, "plan", rebuilt=None)
    with pytest.raises(Failure):  # a failed build is recorded with its phase
        session.answers[building.checkout(s, "green", branch="main", ref=None)] = \
            read_step(f"{M} error git fetch from GIT_REPO failed", code=42)
        steps.checkout(session, b, "green", SimpleNamespace(branch="main", ref=None))
    assert b.phase == "git"


# --- helpers --------------------------------------------------------------------------


def test_step_bound_is_the_hosts_bound_and_some():
    assert step_bound(make_settings()) == build_timeout(make_settings()) + 30


def test_the_before_container_decides_restore_or_stop(s):
    # A crash-looping colour was not "running" before: it is stopped, not restored.
    session = Session(s, blue_live(s))
    restore_idle(session, "green", Container("green", "running", restart_count=3),
                         False)
    assert session.ran == [stop(s, "green")]
