"""What runs is what is reported: a colour's commit is told by its container's image."""

import json
from types import SimpleNamespace

import pytest

from tasks.errors import Failure
from tasks.model.pending import refuse_pending

from tasks.model.compose_file import parse_inspect
from tasks.model.host_view import HostView

S = SimpleNamespace(app_name="shop")
A, B = "a" * 40, "b" * 40


def lines(*rows):
    return "\n".join(json.dumps(r) for r in rows)


def container(colour, image):
    return {"name": f"/shop-{colour}-1", "state": "running", "exit": 0, "restarts": 0,
            "image": image, "started": ""}


def test_the_commit_comes_from_the_image_tag_or_its_revision_label():
    out = lines(container("blue", "sha256:1"), container("green", "sha256:2"),
                {"id": "sha256:1", "tags": [f"bluegreen-shop:{A}", "bluegreen-shop:blue",
                                            f"bluegreen-other:{B}"], "labels": None},
                {"id": "sha256:2", "tags": ["ci/app:7"],
                 "labels": {"org.opencontainers.image.revision": B}})
    found = parse_inspect(out, S)
    assert found["blue"].runs_commit() == A
    assert found["green"].runs_commit() == B
    assert found["green"].commits == ()


def test_an_image_with_two_commit_tags_runs_the_recorded_one():
    out = lines(container("blue", "sha256:1"),
                {"id": "sha256:1", "tags": [f"bluegreen-shop:{A}", f"bluegreen-shop:{B}"],
                 "labels": {}})
    blue = parse_inspect(out, S)["blue"]
    assert blue.runs_commit(B) == B and blue.runs_commit(A) == A
    assert parse_inspect(out, S)["green"].runs_commit(A) == ""  # no container: nothing runs


def test_a_colour_that_runs_another_commit_than_recorded_drifts():
    out = lines(container("blue", "sha256:1"), container("green", "sha256:2"),
                {"id": "sha256:1", "tags": [f"bluegreen-shop:{A}"], "labels": {}},
                {"id": "sha256:2", "tags": [f"bluegreen-shop:{B}"], "labels": {}})
    state = {"live": "blue", "colours": {"blue": {"commit": A}, "green": {"commit": A}}}
    view = HostView(now=0, deploy_dir=True, lock="", holder=None, state=state,
                    state_error=None, nginx_text="", nginx=None,
                    containers=parse_inspect(out, S))
    assert view.runs("green") == B and view.colour_drift("blue") is None
    assert view.colour_drift("green") == (
        f"green runs {B[:12]} but state.json records {A[:12]} for it")


def test_a_refused_rollback_after_a_revert_names_rollback_to_the_release_before():
    C = "c" * 40
    out = lines(container("blue", "sha256:1"), container("green", "sha256:2"),
                {"id": "sha256:1", "tags": [f"bluegreen-shop:{A}"], "labels": {}},
                {"id": "sha256:2", "tags": [f"bluegreen-shop:{B}"], "labels": {}})
    state = {"live": "blue", "colours": {"blue": {"commit": A},
                                         "green": {"commit": B, "pending": "reverted"}}}
    history = [{"task": "release", "result": "ok", "to": "green", "commit": C},
               {"task": "release", "result": "ok", "to": "blue", "commit": A},
               {"task": "release", "result": "ok", "to": "green", "commit": B},
               {"task": "release", "result": "reverted", "to": "blue", "commit": B}]
    view = HostView(now=0, deploy_dir=True, lock="", holder=None, state=state,
                    state_error=None, nginx_text="", nginx=None,
                    containers=parse_inspect(out, S), history=history)
    with pytest.raises(Failure) as exc:
        refuse_pending(view, "green", "prod")
    assert f"fab -H prod rollback --to {C[:12]}" in exc.value.hint
