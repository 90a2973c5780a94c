"""fab release on one host: which kind of release (one place), and the release steps in order.

Each step is a plain call from deploy/steps.py that runs one script in the
task's remote shell (or probes over the connection) and returns what it
found. Decisions come from model/plan.py. The steps run in one ``with
session.locked() as view:`` block, which releases the lock however it
ends; on any failure in the ``with Attempt(...)`` block, one place
(``Attempt.fail``) switches nginx back if this task had switched it, puts
the idle colour back as it was, and records the attempt with its phase.
"""

from dataclasses import dataclass

from ..commands.kept_images import list_script
from ..deploy.prune import prune_releases
from ..deploy.steps import Attempt, bring_up, built_fields, go_live, pre_switch, stop_old_colour
from ..model.lock_owner import describe_who
from ..model.plan import plan_release
from ..model.dry_run import follow_note
from ..model.state import maintenance_of, with_release
from ..shipping.ship import source_note
from .plan import look_ahead, unchanged
from .stage_canary import release_canary, release_staged
from .watched import watch_release


@dataclass(frozen=True)
class ReleaseRequest:
    """What `fab release` was asked for, its flags checked (cli/tasks.py)."""

    branch: str = None
    ref: str = None
    stop_old: bool = False
    wait_lock: float = 0.0
    force_unlock: bool = False
    watch_seconds: float = 0
    no_switch: bool = False  # stage: build and check the idle colour, switch nothing
    percent: int = None  # canary: this share of clients to the new colour
    artifacts: object = None  # the run's shipping.local_build.Artifacts (None: none)
    force: bool = False  # release even when the live colour runs the same commit and files

    def made_here(self, settings):
        """The Artifacts that make this host's image on this machine (--image,
        or BUILD_ON=local), or None when the host checks out and builds."""
        if self.artifacts is not None and (self.artifacts.image is not None
                                           or settings.build_on == "local"):
            return self.artifacts
        return None


def release(session, request):
    """The one place that chooses which release runs: a canary, a staged
    build, or a plain release that switches everyone."""
    if request.percent:
        return release_canary(session, request)
    if request.no_switch:
        return release_staged(session, request)
    return release_live(session, request)


def release_live(session, request, first=False):
    """Steps 1-9 of a release. Returns the summary dict; raises Failure.
    ``first``: setup's first release, run inside setup's block (connected,
    the lock held and released by setup)."""
    s, rep, name = session.settings, session.reporter, session.name
    branch, ref, watch_seconds = request.branch, request.ref, request.watch_seconds
    if not first:
        session.connect()
    with session.locked(wait=request.wait_lock, force_unlock=request.force_unlock) as view:
        with Attempt(session, live=view.live, fields={"from_colour": view.live}) as attempt:
            plan = plan_release(view, s, name, branch=branch, ref=ref)
            target = plan.target
            attempt.fields.update(to_colour=target, **plan.history_fields)
            if plan.drift:
                rep.line(f"warning: {plan.drift}; trusting nginx: {plan.live or 'nothing'} "
                         "is live")
            note = follow_note(view, plan, branch is not None or ref is not None)
            if note:
                rep.line(note)
            if plan.live and not request.force and not first:
                ahead, _ = look_ahead(session, view, plan, request)
                if ahead.unchanged:  # keeps the other colour as the rollback target
                    return unchanged(session, plan, ahead)
            session.upload_app_env()

            commit, image = bring_up(session, attempt, plan, request.made_here(s))

            pre_switch(session, attempt, target)

            state = with_release(view.state, target, branch=plan.record_branch,
                                 commit=commit, image=image, who=describe_who(session.who),
                                 live=True, ref=plan.ref, deployed=plan.branch)
            # The kept releases are read while nginx reloads; pruned once recorded.
            kept = go_live(session, attempt, target, state, read_meanwhile=list_script(s))
        prune_releases(session, state, kept)  # KEEP_RELEASES; a warning at worst
        watched = None
        if watch_seconds and not plan.live:
            rep.line("watch: nothing was live before this release, so nothing to go back "
                     "to: not watched")
        if watch_seconds and plan.live:  # --watch: revert by itself (raises), or keep
            watched = watch_release(session, state, new=target, old=plan.live,
                                    seconds=watch_seconds, fields=attempt.fields,
                                    before=view.record(target))
        stopped = stop_old_colour(session, plan.live, request.stop_old, watched)
    summary = session.summary("ok", live=target, previous=plan.live, branch=plan.branch,
                              ref=plan.ref, commit=commit, image=image,
                              **built_fields(attempt), **({"watch": watched} if watched else {}))
    keep = (f"; {plan.live} keeps running for `fab -H {name} rollback`"
            if plan.live and not stopped else "")
    rep.line(f"released {target}: {commit[:12]} ({source_note(attempt.fields, plan.source)})"
             f" in {summary['seconds']:.1f}s{keep}")
    if maintenance_of(state):
        rep.line(maintenance_reminder(name))
    return summary


def maintenance_reminder(host_name):
    """What a release, promote or rollback says while the maintenance page is on."""
    return (f"maintenance is still on: the public still gets the 503 page; "
            f"`fab -H {host_name} maintenance off` ends it")
