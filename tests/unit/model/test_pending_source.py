"""A colour's recorded branch and ref change only when a build goes live for good
(issue 26, part 1): a staged, canary or reverted build, or a failed release,
leaves them as they were; the build's own source sits beside them."""

import pytest

from support.host_output import container_line, host_output, released_state, view_of
from support.plain_settings import make_settings
from tasks.errors import FAILED, Failure
from tasks.model.nginx_file import render_nginx
from tasks.model.pending import (after_switch, plan_promote, stops_old, with_pending,
                                 with_promoted, with_withdrawn)
from tasks.model.plan import plan_release
from tasks.model.state import build_of, recover_branch, source_of, with_release

HOST = "prod"
NEW = "f" * 40


@pytest.fixture
def s(tmp_path):
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git", DEPLOY_DIR=str(tmp_path))


def view(s, state, canary=None):
    return view_of(host_output(s, state=state, nginx=render_nginx(s, "blue", canary=canary),
                               containers={c: container_line(s, c) for c in ("blue", "green")}),
                   s)


def stage(s, state, pending="staged", branch="broken", ref=None, percent=None):
    plan = plan_release(view(s, state), s, HOST, branch=branch, ref=ref)
    return with_pending(state, plan.target, pending, branch=plan.record_branch, commit=NEW,
                        image="sha256:" + "e" * 64, who={"user": "bo"}, ref=plan.ref,
                        percent=percent, deployed=plan.branch)


def test_a_canary_of_another_branch_records_nothing_until_promoted(s):
    before = released_state(s, "blue", ("blue", "green"))
    state = stage(s, before, "canary", branch="broken", percent=20)
    green = state["colours"]["green"]
    assert green["branch"] == "main" and green["commit"] == NEW
    assert source_of(green) == "broken"  # what it runs, for status and releases
    # The next plain release into green follows main, not the canary's branch.
    assert plan_release(view(s, with_withdrawn(state, "green", "blue", "reverted")), s,
                        HOST).branch == "main"
    promoted = with_promoted(state, "green")["colours"]["green"]
    assert promoted["branch"] == "broken" and "build" not in promoted


@pytest.mark.parametrize("pending", ["staged", "canary"])
def test_a_withdrawn_or_replaced_staged_build_leaves_the_branch(s, pending):
    before = released_state(s, "blue", ("blue", "green"))
    state = stage(s, before, pending, branch="broken")
    # Rolled back (a canary) or reverted: the recorded branch is main's.
    for after in (after_switch(state, "blue", "green"),
                  with_withdrawn(state, "green", "blue", "reverted")):
        assert after["colours"]["green"]["branch"] == "main"
        # Replaced by another release: that one follows main.
        assert plan_release(view(s, after), s, HOST).branch == "main"


def test_a_full_release_reverted_by_its_watch_gets_the_old_record_back(s):
    before = released_state(s, "blue", ("blue", "green"))
    old_green = before["colours"]["green"]
    live = with_release(before, "green", branch="broken", ref="v9", commit=NEW,
                        image="sha256:" + "e" * 64, who={"user": "bo"}, live=True)
    after = with_withdrawn(live, "green", "blue", "reverted", old_green)
    green = after["colours"]["green"]
    assert after["live"] == "blue" and green["pending"] == "reverted"
    assert green["branch"] == "main" and "ref" not in green
    assert green["commit"] == NEW and build_of(green)["branch"] == "broken"
    assert source_of(green) == "ref v9"


def test_a_ref_staged_then_promoted_keeps_the_branch_and_records_the_ref(s):
    state = stage(s, released_state(s, "blue", ("blue", "green")), branch=None, ref="v2")
    assert "ref" not in state["colours"]["green"]
    green = with_promoted(state, "green")["colours"]["green"]
    assert (green["branch"], green["ref"]) == ("main", "v2")


def test_an_environment_branch_is_what_runs_and_not_what_is_followed(s):
    state = with_release(released_state(s), "green", branch="main", commit=NEW, image="i",
                         who={}, live=True, deployed="feature")
    green = state["colours"]["green"]
    assert green["branch"] == "main" and source_of(green) == "feature"


def test_a_reverted_build_is_never_promoted_and_nothing_suggests_it(s):
    state = with_withdrawn(stage(s, released_state(s, "blue", ("blue", "green")), "canary"),
                           "green", "blue", "reverted")
    with pytest.raises(Failure) as exc:
        plan_promote(view(s, state), HOST)
    assert exc.value.code == FAILED and "reverted" in exc.value.message
    assert "promote" not in exc.value.hint


@pytest.mark.parametrize("watched, stops", [
    (None, True), ({"verdict": "ok"}, True), ({"verdict": "too few"}, False),
    ({"verdict": "revert"}, False)])
def test_stop_old_needs_a_clean_watch(watched, stops):
    assert stops_old(watched) is stops


def test_repair_follows_what_a_promotion_recorded():
    entries = [{"task": "setup", "to": "blue", "result": "ok", "branch": "main"},
               {"task": "promote", "to": "blue", "result": "promoted", "branch": "feature",
                "follows": "main", "commit": "c"},
               {"task": "rollback", "to": "blue", "result": "ok", "branch": "x"}]
    assert recover_branch("blue", {}, entries, "c", "main")[0] == "main"
    assert recover_branch("blue", {}, entries[:1] + [dict(entries[1], follows=None)], "c",
                          "main")[0] == "feature"
