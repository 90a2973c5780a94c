"""release --no-switch (a staged colour) and release --canary (a share of clients).

Both share their steps up to the new colour's health (``bring_up_idle``)
and its record (``record_pending``). A failure before the record reaches
``Attempt.fail`` as in a release.
"""

from ..deploy.handover import settle
from ..deploy.health import verify_canary
from ..deploy.steps import Attempt, bring_up, built_fields, pre_switch, switch_nginx
from ..model.dry_run import follow_note
from ..model.lock_owner import describe_who
from ..model.pending import plan_canary, qa_access, with_pending
from ..model.plan import plan_release
from ..model.processes import with_processes
from ..model.state import bypass_headers, format_state, with_signer
from .watched import watch_canary


def release_staged(session, request):
    """release --no-switch: build and health-check the idle colour, switch
    nothing, record it staged. Returns the summary dict; raises Failure."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    with session.locked(wait=request.wait_lock, force_unlock=request.force_unlock) as view:
        with Attempt(session, live=view.live, fields={"from_colour": view.live}) as attempt:
            plan, commit, image = bring_up_idle(session, attempt, view, request)

            record_pending(session, attempt, view, plan, "staged", commit, image,
                           from_image=request.from_image)
        qa = qa_access(s, name, plan.target)
        rep.line(f"staged {plan.target}: {commit[:12]} ({request.source(plan)}); "
                 f"{qa}; nothing switched: {plan.live or 'nothing'} stays live; "
                 f"then: fab -H {name} promote")
    return session.summary("staged", **idle_fields(session, attempt, request, plan, commit,
                                                   image), qa=qa)


def release_canary(session, request):
    """release --canary: build and health-check the idle colour, send ``percent``
    % of clients to it, record it; with --watch, promote it when clean (or
    revert). Returns the summary dict; raises Failure."""
    s, rep, name = session.settings, session.reporter, session.name
    percent, watch_seconds = request.percent, request.watch_seconds
    session.connect()
    with session.locked(wait=request.wait_lock, force_unlock=request.force_unlock) as view:
        with Attempt(session, live=view.live, fields={"from_colour": view.live}) as attempt:
            plan, commit, image = bring_up_idle(session, attempt, view, request)
            target = plan.target

            # The canary's clients meet the new version now: its migrations first.
            pre_switch(session, attempt, target)
            switch_nginx(session, plan.live, nginx_version=view.nginx_version,
                         canary=(target, percent), attempt=attempt)
            with attempt.step("verify") as ph:
                answered = verify_canary(session.host, s, plan.live, target, rep,
                                         headers=bypass_headers(view.state))
                ph.detail = f"{answered}; {settle(session)}"

            state = record_pending(session, attempt, view, plan, "canary", commit, image,
                                   percent=percent, from_image=request.from_image)
        rep.line(f"canary {target}: {commit[:12]} ({request.source(plan)}) serves "
                 f"{percent}% of clients (sticky per client); {plan.live} serves the rest")
        figures = None
        if watch_seconds:  # revert (raises), promote when clean, or leave it running
            figures = watch_canary(session, state, new=target, old=plan.live,
                                   seconds=watch_seconds, fields=attempt.fields,
                                   stop_old=request.stop_old, before=view.record(target))
        else:
            rep.line(f"then: fab -H {name} promote (everyone to {target}) or fab -H {name} "
                     f"rollback (everyone back to {plan.live})")
    promoted = bool(figures and figures["promoted"])
    summary = session.summary("promoted" if promoted else "canary",
                              **idle_fields(session, attempt, request, plan, commit, image,
                                            live=target if promoted else plan.live),
                              percent=percent, **({"watch": figures} if figures else {}))
    if promoted:  # a clean watch ends with its summary line, as a release does
        keep = ("" if request.stop_old
                else f"; {plan.live} keeps running for `fab -H {name} rollback`")
        rep.line(f"released {target}: {commit[:12]} ({request.source(plan)}), "
                 f"promoted after a clean watch, in {summary['seconds']:.1f}s{keep}")
    return summary


def bring_up_idle(session, attempt, view, request):
    """What a staged release and a canary share up to the new colour's health:
    plan (a canary needs a live colour), secrets, check out or ship, build,
    start, health gate. Returns (plan, commit, image id)."""
    s, name = session.settings, session.name
    plan = plan_release(view, s, name, branch=request.branch, ref=request.ref)
    plan_canary(view, name, request.percent)
    note = follow_note(view, plan, request.branch is not None or request.ref is not None)
    if note:
        session.reporter.line(note)
    attempt.fields.update(to_colour=plan.target, **plan.history_fields)
    if request.from_image:  # no branch was checked out, as a plain --image release says
        attempt.fields.update(branch=None, ref=None, follows=plan.record_branch)
    session.upload_app_env()

    commit, image = bring_up(session, attempt, plan, request.made_here(s))
    return plan, commit, image


def record_pending(session, attempt, view, plan, pending, commit, image, percent=None,
                   from_image=None):
    """Record the new colour as ``pending`` (staged or canary): state.json and
    history, one step (``from_image``: the --image name released). Returns the
    new state."""
    state = with_processes(
        with_pending(view.state, plan.target, pending, branch=plan.record_branch,
                     commit=commit, image=image, who=describe_who(session.who),
                     ref=plan.ref, percent=percent, deployed=plan.branch,
                     from_image=from_image),
        plan.target, attempt.processes, commit)
    state = with_signer(state, plan.target, attempt.fields.get("signer"))
    with attempt.step("record") as ph:
        session.record(format_state(state), session.history_line(
            pending, percent=percent, **attempt.fields))
        ph.detail = "state.json, history"
    return state


def idle_fields(session, attempt, request, plan, commit, image, live=None):
    """The summary's fields of a release into the idle colour (staged or canary)."""
    from_image = request.from_image
    return {"live": live or plan.live, "target": plan.target,
            "branch": None if from_image else plan.branch,
            "ref": None if from_image else plan.ref, "commit": commit, "image": image,
            "port": session.settings.port_of(plan.target), **built_fields(attempt)}
