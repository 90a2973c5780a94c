"""flows/release.py: the one place that picks a canary, a staged build or a
plain release, and which Artifacts make this host's image here."""

from types import SimpleNamespace

import pytest

from support.plain_settings import make_settings
from tasks.flows import release as release_flow
from tasks.flows.release import ReleaseRequest


@pytest.fixture
def calls(monkeypatch):
    """Which flow release() ran, with what."""
    seen = []
    for name in ("release_canary", "release_staged", "release_live"):
        monkeypatch.setattr(release_flow, name,
                            lambda session, request, name=name: seen.append(name) or name)
    return seen


@pytest.mark.parametrize("request_, flow", [
    (ReleaseRequest(), "release_live"),
    (ReleaseRequest(branch="main", watch_seconds=60, stop_old=True), "release_live"),
    (ReleaseRequest(no_switch=True), "release_staged"),
    (ReleaseRequest(percent=10), "release_canary"),
    (ReleaseRequest(percent=0, no_switch=True), "release_staged"),
])
def test_release_runs_one_flow_chosen_by_the_request(calls, request_, flow):
    assert release_flow.release("session", request_) == flow
    assert calls == [flow]


def test_a_request_is_frozen():
    with pytest.raises(AttributeError):
        ReleaseRequest().branch = "x"


@pytest.mark.parametrize("image, build_on, made_here", [
    (None, "host", False),  # the host checks out and builds
    (None, "local", True),  # BUILD_ON=local: built on this machine, shipped
    ("shop:7", "host", True),  # --image: shipped whatever BUILD_ON says
    ("shop:7", "local", True),
])
def test_made_here_is_the_artifacts_only_when_this_machine_makes_the_image(image, build_on,
                                                                          made_here):
    artifacts = SimpleNamespace(image=image)
    settings = make_settings(APP_NAME="shop", BUILD_ON=build_on)
    request = ReleaseRequest(artifacts=artifacts)
    assert request.made_here(settings) is (artifacts if made_here else None)
    assert ReleaseRequest().made_here(settings) is None  # no Artifacts for the run
