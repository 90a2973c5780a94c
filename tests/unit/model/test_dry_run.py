"""Before a release acts: would it change anything, what to say first."""

from types import SimpleNamespace

from tasks.model.compose_file import Container
from tasks.model.dry_run import did_you_mean, follow_note, nothing_to_release, outlook
from tasks.model.host_view import HostView

A, B = "a" * 40, "b" * 40


def view(live="blue", runs=A, branches=("main", "feature")):
    state = {"live": live, "colours": {"blue": {"commit": A, "branch": branches[0]},
                                       "green": {"commit": B, "branch": branches[1]}}}
    containers = {"blue": Container("blue", "running", image="sha256:1", commits=(runs,)),
                  "green": Container("green", "running", image="sha256:2", commits=(B,))}
    return HostView(now=0, deploy_dir=True, lock="", holder=None, state=state,
                    state_error=None, nginx_text="", nginx=None, containers=containers)


def test_the_live_commit_with_the_same_files_is_nothing_to_release():
    same = dict(app_env_same=True, compose_same=True, nginx_same=True)
    assert outlook(view(), A, **same).unchanged
    assert not outlook(view(), B, **same).unchanged
    assert not outlook(view(), "", **same).unchanged  # known only after the checkout
    changed = outlook(view(), A, app_env_same=False, compose_same=True, nginx_same=False)
    assert changed.changes == ("app env", "nginx file") and not changed.unchanged
    assert nothing_to_release("blue", A, "prod", "green").startswith(
        f"nothing to release: blue already runs {A[:12]}")


def test_a_plain_release_into_a_colour_that_follows_another_branch_says_so():
    plan = SimpleNamespace(live="blue", target="green", branch="feature")
    assert follow_note(view(), plan, explicit=False) == (
        "note: green follows branch feature, the live blue follows main: this release "
        "deploys feature (--branch main deploys main instead)")
    assert follow_note(view(), plan, explicit=True) is None
    same = SimpleNamespace(live="blue", target="green", branch="main")
    assert follow_note(view(), same, explicit=False) is None


def test_did_you_mean():
    assert did_you_mean("mian", ["main", "feature", "HEAD"]) == " (did you mean main?)"
    assert did_you_mean("prdo", ["prod", "staging"]) == " (did you mean prod?)"
    assert did_you_mean("zzz", ["main"]) == ""
