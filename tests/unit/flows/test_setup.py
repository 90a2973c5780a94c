"""flows/setup.py: the tools checked first, DEPLOY_DIR created, then the first
release, or nothing released when a colour is live already. The session is a
fake that answers each step (no SSH); release_live and switch_nginx are stubs."""

from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from support.plain_settings import make_settings
from tasks.commands import host_files
from tasks.connection.step_shell import StepResult
from tasks.errors import FAILED, Failure
from tasks.flows import setup as setup_flow
from tasks.model.state import empty_state, format_state
from tasks.output import Reporter

TOOLS = {"git": "2.39.5", "docker": "20.10.24", "compose": "2.40.3", "nginx": "1.22.1"}


class FakeSession:
    def __init__(self, settings, tools=TOOLS, dirs=None, live=None, nginx=True):
        self.settings, self.name, self.reporter = settings, "prod", Reporter("prod")
        self.answers = [StepResult(0, "", "", dict(tools), {}),
                        dirs or StepResult(0, "", "", {}, {},
                                           marks=(("created", "/srv/shop/state.json"),))]
        self.scripts, self.uploads = [], 0
        self.view = SimpleNamespace(live=live, nginx=object() if nginx else None,
                                    nginx_version="1.22.1")

    def connect(self):
        pass

    def run(self, script, timeout=None):
        self.scripts.append(script)
        return self.answers.pop(0)

    @contextmanager
    def locked(self):
        yield self.view

    def upload_app_env(self):
        self.uploads += 1

    def summary(self, result, timed=True, **fields):
        return {"result": result, **fields}


@pytest.fixture
def s():
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git")


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(setup_flow, "release_live", lambda session, request, first: seen.append(
        ("release_live", request.artifacts, first)) or {"live": "blue", "commit": "a" * 40})
    monkeypatch.setattr(setup_flow, "switch_nginx", lambda session, colour, nginx_version: (
        seen.append(("switch_nginx", colour, nginx_version))))
    return seen


def test_a_fresh_host_gets_its_dirs_and_the_first_release_under_the_same_lock(s, calls, capsys):
    session = FakeSession(s)
    summary = setup_flow.setup(session, artifacts=None)
    assert calls == [("release_live", None, True)]
    assert summary == {"live": "blue", "commit": "a" * 40, "result": "ok", "released": True}
    assert session.scripts[1] == host_files.setup(s, format_state(empty_state("shop")))
    out = capsys.readouterr().out
    assert "git 2.39.5, docker 20.10.24, compose 2.40.3, nginx 1.22.1" in out
    assert "created /srv/shop/state.json" in out


def test_a_host_with_a_live_colour_releases_nothing_and_puts_back_the_nginx_file(s, calls,
                                                                                capsys):
    session = FakeSession(s, live="green", nginx=False)
    summary = setup_flow.setup(session, artifacts=None)
    assert summary == {"result": "ok", "live": "green", "released": False}
    assert calls == [("switch_nginx", "green", "1.22.1")] and session.uploads == 1
    assert "already set up: green is live" in capsys.readouterr().out


def test_missing_tools_stop_setup_before_any_directory_is_made(s, calls):
    session = FakeSession(s, tools={**TOOLS, "git": "missing", "docker": "daemon-down"})
    with pytest.raises(Failure) as exc:
        setup_flow.setup(session, artifacts=None)
    assert exc.value.code == FAILED
    assert exc.value.message == ("prod: git is not installed (or not in the deploy user's "
                                 "PATH); the Docker daemon does not answer (is it running? "
                                 "may the deploy user use it?)")
    assert len(session.scripts) == 1 and calls == []


def test_a_host_that_builds_nothing_itself_needs_no_git(calls):
    local = make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git", BUILD_ON="local")
    artifacts = SimpleNamespace(image=None)
    session = FakeSession(local, tools={**TOOLS, "git": "missing"})
    setup_flow.setup(session, artifacts=artifacts)
    assert calls == [("release_live", artifacts, True)]


def test_a_deploy_dir_that_cannot_be_made_says_which_and_what_to_do(s, calls):
    dirs = StepResult(1, "", "", {"error": "mkdir: Permission denied"}, {})
    with pytest.raises(Failure) as exc:
        setup_flow.setup(FakeSession(s, dirs=dirs), artifacts=None)
    assert exc.value.message == "could not create /srv/shop on prod: mkdir: Permission denied"
    assert exc.value.hint == "create it for the deploy user, or set DEPLOY_DIR"
    assert calls == []
