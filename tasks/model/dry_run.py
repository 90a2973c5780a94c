"""Before a release acts: what it would change, and what to say first (pure).

A release that would change nothing (the live colour already runs the
planned commit, with the same app env and rendered files) touches nothing
and keeps the other colour as the rollback target; `release --plan` says
all of it without acting.
"""

from dataclasses import dataclass

from ..configuration.values import did_you_mean  # noqa: F401 (the plan's words)


@dataclass(frozen=True)
class Outlook:
    """What a release of the plan would do to the host, read without acting."""

    commit: str  # the commit it would deploy; '' when it is known only after the checkout
    changes: tuple  # what differs from what the live colour runs, in words
    running: str  # the commit the live colour's container runs ('' when none)

    @property
    def unchanged(self):
        return bool(self.commit) and not self.changes


def outlook(view, commit, *, app_env_same, compose_same, nginx_same):
    """What a release of ``commit`` would change beside what is live."""
    live = view.live
    if not live:
        return Outlook(commit=commit, changes=("nothing is live yet",), running="")
    running = view.runs(live)
    changes = []
    if not commit:
        changes.append("a commit known only after the checkout")
    elif running != commit:
        changes.append(f"commit {(running or 'unknown')[:12]} -> {commit[:12]}")
    if not app_env_same:
        changes.append("app env")
    if not compose_same:
        changes.append("compose file")
    if not nginx_same:
        changes.append("nginx file")
    return Outlook(commit=commit, changes=tuple(changes), running=running)


def nothing_to_release(live, commit, host_name, target):
    """The line of a release that touches nothing."""
    return (f"nothing to release: {live} already runs {commit[:12]} (same app env and "
            f"files); {target} stays the rollback target; `fab -H {host_name} release "
            "--force` releases it into the idle colour anyway")


def follow_note(view, plan, explicit):
    """A plain release whose target follows another branch than the live colour's,
    in one sentence (None when they agree, or a branch or ref was named)."""
    if explicit or not plan.live:
        return None
    live_branch = view.record(plan.live).get("branch")
    if not live_branch or live_branch == plan.branch:
        return None
    return (f"note: {plan.target} follows branch {plan.branch}, the live {plan.live} "
            f"follows {live_branch}: this release deploys {plan.branch} "
            f"(--branch {live_branch} deploys {live_branch} instead)")
