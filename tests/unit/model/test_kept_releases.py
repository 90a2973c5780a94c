"""model/kept_releases.py: `fab releases`, pruning and `rollback --to` as pure
decisions over `docker image ls` output, state.json and the containers.
"""

import pytest

from tasks.configuration.values import Invalid
from tasks.errors import BAD_INPUT, FAILED, Failure
from tasks.model.compose_file import Container
from tasks.model.kept_releases import (check_commit_prefix, parse_images, prune_plan, releases_of,
                                       resolve)


APP = "shop"
C = {n: f"{n}" * 40 for n in "abcdef"}  # commits aaaa..., bbbb..., ...
IMG = {n: "sha256:" + n * 64 for n in "abcdef"}


def image_line(n, created, extra_tags=()):
    tags = " ".join([f"bluegreen-{APP}:{C[n]}", *extra_tags])
    return f"{IMG[n]}|{created}|1000|{tags} "


IMAGES = parse_images("\n".join([
    image_line("a", "2025-01-01T10:00:00.5Z"),
    image_line("b", "2025-01-02T10:00:00Z"),
    image_line("c", "2025-01-03T10:00:00Z"),
    image_line("d", "2025-01-04T10:00:00Z", [f"bluegreen-{APP}:blue"]),
    image_line("e", "2025-01-05T10:00:00Z", [f"bluegreen-{APP}:green"]),
    "sha256:" + "9" * 64 + "|2025-01-05T09:00:00Z|1000|",  # untagged
]))


def state(blue="d", green="e", live="green"):
    return {"live": live, "colours": {
        "blue": {"commit": C[blue], "image": IMG[blue], "branch": "main"},
        "green": {"commit": C[green], "image": IMG[green], "branch": "main"}}}


def containers(blue="d", green="e"):
    return {"blue": Container("blue", "running", image=IMG[blue]),
            "green": Container("green", "running", image=IMG[green])}


NOW = 1736100000.0  # 2025-01-05T18:00Z


def test_parse_images_reads_ids_times_sizes_and_tags():
    assert IMAGES[0].created == "2025-01-01T10:00:00+00:00"
    assert IMAGES[3].tags == (f"bluegreen-{APP}:{C['d']}", f"bluegreen-{APP}:blue")
    assert IMAGES[5].tags == () and IMAGES[5].size == 1000


def test_prune_keeps_the_newest_and_removes_older_commit_tags_and_untagged_images():
    plan = prune_plan(IMAGES, APP, 3, state(), containers(), [], NOW)
    assert [r.commit for r in plan.keep] == [C["e"], C["d"], C["c"]]
    assert plan.remove_tags == [f"bluegreen-{APP}:{C['b']}", f"bluegreen-{APP}:{C['a']}"]
    assert plan.remove_ids == ["sha256:" + "9" * 64]
    # Build cache unused since the oldest kept image was built (c: 2025-01-03T10:00Z).
    assert plan.cache_age == int(NOW - 1735898400)


def test_prune_never_removes_what_a_colour_runs_or_state_json_records():
    # blue runs a (old), green's record names b (its container runs e).
    st = state(blue="a", green="b")
    plan = prune_plan(IMAGES, APP, 1, st, containers(blue="a", green="e"), [], NOW)
    kept = {r.commit for r in plan.keep}
    assert kept == {C["e"], C["a"], C["b"]}
    assert plan.remove_tags == [f"bluegreen-{APP}:{C['d']}", f"bluegreen-{APP}:{C['c']}"]


def test_a_recent_release_of_an_old_build_counts_as_new():
    history = [{"task": "rollback", "result": "ok", "commit": C["a"], "branch": "hotfix",
                "time": "2025-01-06T00:00:00+00:00"}]
    found = releases_of(IMAGES, APP, state(), containers(), history)
    assert found[0].commit == C["a"] and found[0].branch == "hotfix"
    assert found[1].commit == C["e"] and found[1].colours == ["green"] and found[1].live


def test_nothing_to_remove_keeps_the_build_cache():
    plan = prune_plan(IMAGES[:5], APP, 5, state(), containers(), [], NOW)
    assert (plan.remove_tags, plan.remove_ids, plan.cache_age) == ([], [], None)


@pytest.mark.parametrize("value", [";rm -rf /", "abc", "v2", "x" * 70, "", "12 34"])
def test_a_malformed_prefix_is_refused(value):
    with pytest.raises(Invalid, match="hex digits"):
        check_commit_prefix(value)


def test_prefix_resolution():
    found = releases_of(IMAGES, APP, state(), containers(), [])
    assert check_commit_prefix("ABCD") == "abcd"
    assert resolve("cccc", found, "prod").commit == C["c"]
    with pytest.raises(Failure) as exc:
        resolve("1234", found, "prod")
    assert exc.value.code == FAILED and "release --ref 1234" in exc.value.hint
    twins = found + [found[0].__class__(commit="cccc" + "0" * 36, image=IMG["c"], built_at="",
                                        released_at="", size=1)]
    with pytest.raises(Failure) as exc:
        resolve("cccc", twins, "prod")
    assert exc.value.code == BAD_INPUT and "matches 2 kept releases" in exc.value.message
