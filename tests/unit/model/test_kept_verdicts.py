"""Kept releases are releases: failed and reverted builds are neither listed nor kept."""

import pytest

from tasks.errors import FAILED, Failure
from tasks.model.compose_file import Container
from tasks.model.kept_releases import (not_releases, parse_images, prune_plan, releases_of,
                                       resolve)

APP = "shop"
C = {n: n * 40 for n in "abcd"}
IMG = {n: "sha256:" + n * 64 for n in "abcd"}
IMAGES = parse_images("\n".join(
    f"{IMG[n]}|2025-01-0{i + 1}T10:00:00Z|1000|bluegreen-{APP}:{C[n]} "
    for i, n in enumerate("abcd")))
STATE = {"live": "blue", "colours": {
    "blue": {"commit": C["a"], "image": IMG["a"], "branch": "main"},
    "green": {"commit": C["b"], "image": IMG["b"], "branch": "main"}}}
CONTAINERS = {"blue": Container("blue", "running", image=IMG["a"]),
              "green": Container("green", "running", image=IMG["b"])}
HISTORY = [
    {"task": "setup", "result": "ok", "to": "blue", "commit": C["a"]},
    {"task": "release", "result": "ok", "to": "green", "commit": C["b"]},
    {"task": "rollback", "result": "ok", "to": "blue", "commit": C["a"], "kept": True},
    {"task": "release", "result": "failed", "phase": "health", "to": "green", "commit": C["c"]},
    {"task": "release", "result": "reverted", "to": "blue", "commit": C["d"]},
]


def test_a_failed_or_reverted_build_is_not_listed():
    found = releases_of(IMAGES, APP, STATE, CONTAINERS, HISTORY)
    assert [r.commit for r in found] == [C["b"], C["a"]] or \
        sorted(r.commit for r in found) == [C["a"], C["b"]]
    assert all(r.ever_live for r in found)
    assert not_releases(IMAGES, APP, STATE, HISTORY) == {C["c"]: "failed", C["d"]: "reverted"}


def test_a_build_that_passed_later_is_a_release_again():
    again = HISTORY + [{"task": "release", "result": "staged", "to": "green",
                        "commit": C["c"]}]
    found = {r.commit: r for r in releases_of(IMAGES, APP, STATE, CONTAINERS, again)}
    assert C["c"] in found and not found[C["c"]].ever_live


def test_failed_builds_take_no_keep_releases_slot():
    plan = prune_plan(IMAGES, APP, 1, STATE, CONTAINERS, HISTORY, now=2e9)
    assert sorted(plan.remove_tags) == [f"bluegreen-{APP}:{C['c']}", f"bluegreen-{APP}:{C['d']}"]


def test_rollback_to_a_reverted_build_names_release_ref():
    kept = releases_of(IMAGES, APP, STATE, CONTAINERS, HISTORY)
    with pytest.raises(Failure) as exc:
        resolve(C["d"][:8], kept, "prod", not_kept=not_releases(IMAGES, APP, STATE, HISTORY))
    assert exc.value.code == FAILED
    assert "watch reverted it" in exc.value.message
    assert f"fab -H prod release --ref {C['d']}" in exc.value.hint


def test_a_commit_both_colours_run_lists_both():
    """--force of the live commit: the rebuild takes the commit tag; the live
    colour's image keeps only its colour tag, and still runs the commit."""
    images = parse_images(f"{IMG['a']}|2025-01-01T10:00:00Z|1000|bluegreen-{APP}:blue \n"
                          f"{IMG['b']}|2025-01-02T10:00:00Z|1000|bluegreen-{APP}:{C['a']} ")
    state = {"live": "blue", "colours": {"blue": {"commit": C["a"]}, "green": {"commit": C["a"]}}}
    containers = {"blue": Container("blue", "running", image=IMG["a"]),
                  "green": Container("green", "running", image=IMG["b"], commits=(C["a"],))}
    [release] = releases_of(images, APP, state, containers, [])
    assert release.colours == ["blue", "green"] and release.live
