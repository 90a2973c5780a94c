"""Decisions: which colour a task targets and what it deploys. Pure."""

from dataclasses import dataclass

from ..configuration.settings import other
from ..errors import FAILED, Failure
from .pending import canary_of, refuse_during_canary, refuse_pending


@dataclass(frozen=True)
class ReleasePlan:
    live: str  # the colour serving now, or None before the first release
    target: str  # the idle colour this release builds into
    branch: str  # the branch deployed (its newest commit), unless ref is given
    ref: str  # the ref to deploy, or None for the branch's newest commit
    drift: str  # a warning when state.json and nginx disagree, or None
    # The branch state.json records for the target on success: the one a
    # later plain release follows. Only --branch changes it; a --ref or a
    # BLUEGREEN_<COLOUR>_BRANCH release keeps the colour's branch.
    record_branch: str = None

    @property
    def history_fields(self):
        """What a history line says was deployed: the branch checked out (and
        the ref), and the branch recorded when that is another one."""
        return {"branch": self.branch, "ref": self.ref,
                "follows": self.record_branch if self.record_branch != self.branch else None}

    @property
    def source(self):
        """What was deployed, for the summary line: `ref v1.2` or the branch."""
        return f"ref {self.ref}" if self.ref else self.branch


class NotSetUp(Failure):
    """DEPLOY_DIR is missing: whichever phase noticed it did not fail."""

    blames_phase = False


def require_setup(view, host_name):
    if not view.deploy_dir:
        raise NotSetUp(f"{host_name} is not set up for this app (no DEPLOY_DIR)",
                       f"run: fab -H {host_name} setup", code=FAILED)
    if view.state_error is not None:
        raise view.state_error


def branch_for_this_run(settings, colour):
    """BLUE_BRANCH/GREEN_BRANCH from the environment (BLUEGREEN_*), or None.

    Values from .env and hosts.yml name where a colour starts; after its
    first release the colour follows its recorded branch instead (the seed's
    rule). A BLUEGREEN_GREEN_BRANCH in a CI job's environment is meant for
    this run only: it wins for the run and is not recorded (docs/ci.md), so
    the next plain release deploys the colour's own branch again.
    """
    key = f"{colour.upper()}_BRANCH"
    if settings.origins.get(key, "").startswith("the environment"):
        return settings.branch_of(colour)
    return None


def refuse_foreign_port(view, settings, host_name):
    if view.nginx is not None and view.nginx.served is None:
        raise Failure(
            f"{settings.nginx_file} on {host_name} proxies to port {view.nginx.port}, "
            "which is neither BLUE_PORT nor GREEN_PORT",
            f"fix the file or the ports, then run: fab -H {host_name} repair", code=FAILED)


def plan_release(view, settings, host_name, *, branch=None, ref=None):
    require_setup(view, host_name)
    refuse_foreign_port(view, settings, host_name)
    refuse_during_canary(view, host_name)
    live = view.live
    target = other(live) if live else "blue"
    require_free_port(view, settings, host_name, target)
    followed = view.record(target).get("branch") or settings.branch_of(target)
    if branch is not None:  # --branch B: deploy B and, on success, follow it
        record = branch
    elif ref is not None:  # --ref: that commit; the colour keeps its branch
        branch = record = followed
    else:
        branch = branch_for_this_run(settings, target) or followed
        record = followed
    return ReleasePlan(live=live, target=target, branch=branch, ref=ref,
                       drift=view.drift, record_branch=record)


def require_free_port(view, settings, host_name, target):
    """Refuse before building when another program holds the target's port.

    The new container could not publish (or, with host networking, listen
    on) it, and the health gate could pass against the squatter. The
    target's own container listens there while it runs, so only a port in
    use while that container is not running counts. No `ss` on the host
    means no listening ports in the view: nothing to refuse.
    """
    port = settings.port_of(target)
    container = view.containers[target]
    if port in view.listening and container.state not in ("running", "paused"):
        key = f"{target.upper()}_PORT"
        program = view.listening[port] or "another program"
        raise Failure(
            f"{key} {port} on {host_name} is in use by {program}, not by {target}'s "
            f"container ({container.describe()}): {target} cannot start there; nothing "
            "was built and nothing live changed",
            f"stop what listens on {port}, or set {key} to a free port "
            f"(`fab -H {host_name} check` lists the ports in use)", code=FAILED)


def plan_switch(view, settings, host_name, to):
    """Where a switch or rollback goes, or why it cannot."""
    require_setup(view, host_name)
    refuse_foreign_port(view, settings, host_name)
    live = view.live
    canary = canary_of(view)
    if canary and to in (None, live):  # everyone back to the live colour
        return live
    if to is None:
        if live is None:
            raise Failure(f"nothing is live on {host_name} yet: there is nothing to roll back",
                          f"release first: fab -H {host_name} release", code=FAILED)
        to = other(live)
    if to == live:
        raise Failure(f"{to} is already live on {host_name}",
                      "nothing to do; `fab status` shows both colours", code=FAILED)
    container = view.containers[to]
    commit = view.record(to).get("commit")
    if not container.running:
        # Its recorded release's image is kept (pruning spares what state.json
        # records): `rollback --to` starts it again without git or a build.
        again = (f"start its release {commit[:12]} again and switch to it: fab -H {host_name} "
                 f"rollback --to {commit[:12]}" if commit and not view.record(to).get("pending")
                 else f"release into it first: fab -H {host_name} release")
        raise Failure(
            f"{to} on {host_name} is not running ({container.describe()}): "
            "switching to it would take the app down", again, code=FAILED)
    if not view.record(to).get("commit"):
        raise Failure(f"{to} on {host_name} has never been released",
                      f"release into it first: fab -H {host_name} release", code=FAILED)
    refuse_pending(view, to, host_name)
    return to
