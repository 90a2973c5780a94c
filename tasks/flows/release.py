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
from ..deploy.fleet_switch import SOLO
from ..deploy.prune import prune_releases
from ..deploy.recover import record_served
from ..deploy.steps import Attempt, bring_up, built_fields, go_live, pre_switch, stop_old_colour
from ..deploy.workers import hand_over
from ..model.lock_owner import describe_who
from ..model.plan import plan_release
from ..model.dry_run import follow_note
from ..model.processes import with_processes, worker_types
from ..model.state import maintenance_of, with_release, with_signer
from ..shipping.ship import source_note
from .plan import look_ahead, unchanged
from .stage_canary import release_canary, release_staged
from .watched import watch_batch, watch_release


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
    batch: int = None  # --batch N: hosts N at a time (cli/on_fleet.py)
    force: bool = False  # release even when the live colour runs the same commit and files

    def made_here(self, settings):
        """The Artifacts that make this host's image on this machine (--image,
        or BUILD_ON=local), or None when the host checks out and builds."""
        if self.artifacts is not None and (self.artifacts.image is not None
                                           or settings.build_on == "local"):
            return self.artifacts
        return None

    @property
    def from_image(self):
        """The --image name released (None: a build from git, here or on the host)."""
        image = self.artifacts.image if self.artifacts is not None else None
        return image.name if image is not None else None

    def source(self, plan):
        """What the summary line names as the release's source: the image, or
        the plan's branch or ref."""
        return f"image {self.from_image}" if self.from_image else plan.source


def release(session, request):
    """The one place that chooses which release runs: a canary, a staged
    build, or a plain release that switches everyone."""
    if request.percent:
        return release_canary(session, request)
    if request.no_switch:
        return release_staged(session, request)
    return release_live(session, request)


def release_live(session, request, first=False, fleet=SOLO):
    """Steps 1-9 of a release. Returns the summary dict; raises Failure.
    ``first``: setup's first release, run inside setup's block (connected,
    the lock held and released by setup). ``fleet``: this host's handle in a
    release over several hosts (cli/on_fleet.py, deploy/fleet_switch.py): it
    meets the others at each ``fleet.`` line, and gives up there when any
    host failed."""
    s, rep, name = session.settings, session.reporter, session.name
    branch, ref, watch_seconds = request.branch, request.ref, request.watch_seconds
    if not first:
        session.connect()
    with session.locked(wait=request.wait_lock, force_unlock=request.force_unlock) as view:
        fleet.locked()  # every host locked and read before any host changes
        with Attempt(session, live=view.live, fields={"from_colour": view.live}) as attempt:
            plan = plan_release(view, s, name, branch=branch, ref=ref)
            target = plan.target
            attempt.fields.update(to_colour=target, **plan.history_fields)
            from_image = request.from_image
            if from_image:  # no branch was checked out: the colour keeps following one
                attempt.fields.update(branch=None, ref=None, follows=plan.record_branch)
            if plan.drift:
                rep.line(f"warning: {plan.drift}; trusting nginx: {plan.live or 'nothing'} "
                         "is live")
            note = follow_note(view, plan, branch is not None or ref is not None)
            if note:
                rep.line(note)
            if plan.live and not request.force and not first:
                ahead, _ = look_ahead(session, view, plan, request)
                if ahead.unchanged:  # keeps the other colour as the rollback target
                    # A dead task's switch (its connection cut after the reload)
                    # left nginx serving this: state.json is brought to it.
                    record_served(session, view)
                    return unchanged(session, plan, ahead)
            session.upload_app_env()

            commit, image = bring_up(session, attempt, plan, request.made_here(s))
            fleet.prepared()  # every host's idle colour healthy, else every one put back

            if fleet.runs_pre_switch(s):
                pre_switch(session, attempt, target)
            elif s.pre_switch_cmd:
                rep.line(f"PRE_SWITCH_CMD skipped here: PRE_SWITCH_ON=first runs it on "
                         f"{fleet.first} only")

            if fleet.several and request.batch and watch_seconds and plan.live:
                # --batch with --watch: each batch watched before the next starts;
                # a revert switches every host back (none recorded yet).
                fleet.watch_batch = lambda: watch_batch(session, new=target, old=plan.live,
                                                        seconds=watch_seconds)
            state = with_processes(
                with_release(view.state, target, branch=plan.record_branch, commit=commit,
                             image=image, who=describe_who(session.who), live=True,
                             ref=plan.ref, deployed=plan.branch, from_image=from_image),
                target, attempt.processes, commit, workers=target)
            state = with_signer(state, target, attempt.fields.get("signer"))
            attempt.fields["workers"] = worker_types(attempt.processes, s) or None
            # The kept releases are read while nginx reloads; pruned once recorded.
            kept = go_live(session, attempt, target, state, read_meanwhile=list_script(s),
                           fleet=fleet)  # every host switches at once, records once all verified
            # After the web's switch (over several hosts: after every host
            # verified and recorded), the workers follow it on this host.
            hand_over(session, state, target, plan.live, before=view.state, fleet=fleet)
        prune_releases(session, state, kept)  # KEEP_RELEASES; a warning at worst
        watched = None
        if watch_seconds and not plan.live:
            rep.line("watch: nothing was live before this release, so nothing to go back "
                     "to: not watched")
        if watch_seconds and plan.live and fleet.watch_batch is None:  # revert (raises), or keep
            watched = watch_release(session, state, new=target, old=plan.live,
                                    seconds=watch_seconds, fields=attempt.fields,
                                    before=view.record(target), fleet=fleet)
        stopped = stop_old_colour(session, plan.live, request.stop_old, watched)
    summary = session.summary("ok", live=target, previous=plan.live,
                              branch=None if from_image else plan.branch,
                              ref=plan.ref, commit=commit, image=image,
                              **built_fields(attempt), **({"watch": watched} if watched else {}))
    keep = (f"; {plan.live} keeps running for `fab -H {name} rollback`"
            if plan.live and not stopped else "")
    rep.line(f"released {target}: {commit[:12]} "
             f"({source_note(attempt.fields, request.source(plan))})"
             f" in {summary['seconds']:.1f}s{keep}")
    if maintenance_of(state):
        rep.line(maintenance_reminder(name))
    return summary


def maintenance_reminder(host_name):
    """What a release, promote or rollback says while the maintenance page is on."""
    return (f"maintenance is still on: the public still gets the 503 page; "
            f"`fab -H {host_name} maintenance off` ends it")
