"""flows/releases.py: `fab releases` lists a host's kept releases, newest first,
as a table or one JSON object each, and refuses a host that is not set up."""

import json

import pytest

from support.host_output import SHA_BLUE, container_line, host_output, released_state, view_of
from support.plain_settings import make_settings
from tasks.connection.step_shell import StepResult
from tasks.errors import FAILED, Failure
from tasks.flows.releases import releases

OLD = "c" * 40
# blue's container runs the image of SHA_BLUE's tag
BLUE_RUNS = container_line(make_settings(APP_NAME="shop"), "blue", image="sha256:" + "a" * 64)


class FakeSession:
    """Connects, reads the host (a HostView) and answers list_script with ``images``."""

    def __init__(self, view, images, settings, containers=""):
        self.settings, self.name = settings, "prod"
        self.view, self.images, self.containers, self.steps = view, images, containers, []

    def connect(self):
        self.steps.append("connect")

    def inspect(self):
        self.steps.append("inspect")
        return self.view

    def run(self, script, timeout=None):
        self.steps.append("list")
        return StepResult(0, "", "", {}, {"images": self.images,
                                          "containers": self.containers, "history": ""})


def image(commit, created, *tags):
    return "|".join([f"sha256:{commit[0] * 64}", created, "2000000",
                     " ".join([f"bluegreen-shop:{commit}", *tags]) + " "])


@pytest.fixture
def s():
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git", KEEP_RELEASES="3")


def session_for(s, images, containers="", **output):
    view = view_of(host_output(s, **output), s)
    return FakeSession(view, "\n".join(images), s, containers)


def test_the_table_lists_the_newest_first_and_names_the_live_colour(s, capsys):
    session = session_for(s, [image(OLD, "2025-01-01T10:00:00Z"),
                              image(SHA_BLUE, "2025-01-02T10:00:00Z", "bluegreen-shop:blue")],
                          BLUE_RUNS, state=released_state(s, "blue"))
    assert releases(session, json_mode=False) is None
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ("prod  kept releases of shop (most recently released first; "
                      "KEEP_RELEASES=3; failed and reverted builds are not kept)")
    assert out[1].split() == ["commit", "branch", "built", "at", "size", "runs", "in", "was",
                              "live", "signed", "by"]
    assert out[2].startswith(SHA_BLUE[:12]) and "blue (live)" in out[2]
    assert out[3].startswith(OLD[:12]) and out[3].split()[-2:] == ["never", "-"]
    assert session.steps == ["connect", "inspect", "list"]


def test_json_is_one_object_per_kept_release(s, capsys):
    session = session_for(s, [image(SHA_BLUE, "2025-01-02T10:00:00Z", "bluegreen-shop:blue")],
                          BLUE_RUNS, state=released_state(s, "blue"))
    releases(session, json_mode=True)
    (obj,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (obj["host"], obj["app"], obj["commit"]) == ("prod", "shop", SHA_BLUE)
    assert obj["live"] is True and obj["colours"] == ["blue"] and obj["size"] == 2000000


def test_no_kept_release_says_none_yet(s, capsys):
    releases(session_for(s, [], state=released_state(s, "blue")), json_mode=False)
    assert capsys.readouterr().out.splitlines()[-1] == "  none yet"


def test_a_host_that_is_not_set_up_is_refused_before_listing(s):
    session = session_for(s, [], deploy_dir=False)
    with pytest.raises(Failure) as exc:
        releases(session, json_mode=False)
    assert exc.value.code == FAILED and exc.value.hint == "run: fab -H prod setup"
    assert session.steps == ["connect", "inspect"]
