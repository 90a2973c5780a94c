"""release --no-switch, release --canary, promote, and what a watch leads to.

Each task is its steps in order, as in pipeline.py, with the steps of steps.py,
in one ``with session.locked() as view:`` block; decisions come from stage.py
(and plan.py), the watch from watch.py. A staged release and a canary share
their steps up to the new colour's health (``bring_up_idle``) and its record
(``record_pending``). A failure before the record reaches ``Attempt.fail``
as in a release. After the record, the switch is done and stays recorded: a
watch that reverts records that as one more entry, and a Ctrl-C during a
watch records nothing more; either way the task's block releases the lock.
"""

import time

from . import accesslog, health
from .errors import FAILED, Failure
from .lock import describe_who
from .plan import plan_release
from .stage import (pending_source, plan_canary, plan_promote, qa_access, with_pending,
                    with_promoted, with_withdrawn)
from .state import bypass_headers, format_state
from .steps import (Attempt, bring_up, built_fields, healthy_now, pre_switch, stop_colour,
                    stop_old_colour, switch_nginx, verify)
from .watch import watch

INTERRUPTED = 130  # the shell's code for Ctrl-C, as runner.operator_task uses


def release_staged(session, *, branch=None, ref=None, wait_lock=0.0,
                   force_unlock=False):
    """release --no-switch: build and health-check the idle colour, switch
    nothing, record it staged. Returns the summary dict; raises Failure."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    with session.locked(wait=wait_lock, force_unlock=force_unlock) as view:
        with Attempt(session, live=view.live, fields={"from_colour": view.live}) as attempt:
            plan, commit, image = bring_up_idle(session, attempt, view, branch=branch, ref=ref)

            record_pending(session, attempt, view, plan, "staged", commit, image)
        qa = qa_access(s, name, plan.target)
        rep.line(f"staged {plan.target}: {commit[:12]} ({plan.source}); {qa}; nothing "
                 f"switched: {plan.live or 'nothing'} stays live; then: fab -H {name} promote")
    return session.summary("staged", **idle_fields(session, attempt, plan, commit, image),
                           qa=qa)


def release_canary(session, percent, *, branch=None, ref=None, watch_seconds=0,
                   stop_old=False, wait_lock=0.0, force_unlock=False):
    """release --canary: build and health-check the idle colour, send ``percent``
    % of clients to it, record it; with --watch, promote it when clean (or
    revert). Returns the summary dict; raises Failure."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    with session.locked(wait=wait_lock, force_unlock=force_unlock) as view:
        with Attempt(session, live=view.live, fields={"from_colour": view.live}) as attempt:
            plan, commit, image = bring_up_idle(session, attempt, view, branch=branch, ref=ref,
                                                percent=percent)
            target = plan.target

            # The canary's clients meet the new version now: its migrations first.
            pre_switch(session, attempt, target)
            switch_nginx(session, plan.live, nginx_version=view.nginx_version,
                         canary=(target, percent), attempt=attempt)
            with attempt.step("verify") as ph:
                ph.detail = health.verify_canary(session.host, s, plan.live, target, rep,
                                                 headers=bypass_headers(view.state))

            state = record_pending(session, attempt, view, plan, "canary", commit, image,
                                   percent=percent)
        rep.line(f"canary {target}: {commit[:12]} ({plan.source}) serves {percent}% of "
                 f"clients (sticky per client); {plan.live} serves the rest")
        figures = None
        if watch_seconds:  # revert (raises), promote when clean, or leave it running
            figures = watch_canary(session, state, new=target, old=plan.live,
                                   seconds=watch_seconds, fields=attempt.fields,
                                   stop_old=stop_old, before=view.record(target))
        else:
            rep.line(f"then: fab -H {name} promote (everyone to {target}) or fab -H {name} "
                     f"rollback (everyone back to {plan.live})")
    promoted = bool(figures and figures["promoted"])
    return session.summary("promoted" if promoted else "canary",
                           **idle_fields(session, attempt, plan, commit, image,
                                         live=target if promoted else plan.live),
                           percent=percent, **({"watch": figures} if figures else {}))


def bring_up_idle(session, attempt, view, *, branch, ref, percent=None):
    """What a staged release and a canary share up to the new colour's health:
    plan (a canary needs a live colour), secrets, check out or ship, build,
    start, health gate. Returns (plan, commit, image id)."""
    s, name = session.settings, session.name
    plan = plan_release(view, s, name, branch=branch, ref=ref)
    plan_canary(view, name, percent)
    attempt.fields.update(to_colour=plan.target, **plan.history_fields)
    session.upload_app_env()

    commit, image = bring_up(session, attempt, plan)
    return plan, commit, image


def record_pending(session, attempt, view, plan, pending, commit, image, percent=None):
    """Record the new colour as ``pending`` (staged or canary): state.json and
    history, one step. Returns the new state."""
    state = with_pending(view.state, plan.target, pending, branch=plan.record_branch,
                         commit=commit, image=image, who=describe_who(session.who),
                         ref=plan.ref, percent=percent, deployed=plan.branch)
    with attempt.step("record") as ph:
        session.record(format_state(state), session.history_line(
            pending, percent=percent, **attempt.fields))
        ph.detail = "state.json, history"
    return state


def idle_fields(session, attempt, plan, commit, image, live=None):
    """The summary's fields of a release into the idle colour (staged or canary)."""
    return {"live": live or plan.live, "target": plan.target, "branch": plan.branch,
            "ref": plan.ref, "commit": commit, "image": image,
            "port": session.settings.port_of(plan.target), **built_fields(attempt)}


def promote_staged(session, *, watch_seconds=0, stop_old=False, wait_lock=0.0):
    """Send everyone to the staged colour or the canary: health, PRE_SWITCH_CMD
    (not again for a canary), switch, verify, record."""
    rep, name = session.reporter, session.name
    session.connect()
    with session.locked(wait=wait_lock) as view:
        with Attempt(session, live=view.live, fields={"from_colour": view.live}) as attempt:
            p = plan_promote(view, name)
            record = view.record(p.to)
            branch, ref, follows = pending_source(record)
            attempt.fields.update(to_colour=p.to, branch=branch, commit=record.get("commit"),
                                  ref=ref, follows=follows if follows != branch else None,
                                  was=p.kind, percent=p.percent)
            healthy_now(session, attempt, p.to)
            if p.kind != "canary":  # a canary's clients met it: its PRE_SWITCH_CMD ran then
                pre_switch(session, attempt, p.to)
            state = switch_everyone(session, attempt, view.state, p.to,
                                    nginx_version=view.nginx_version)
        rep.line(f"promoted {p.to} ({(record.get('commit') or '?')[:12]}, {p.kind}): "
                 "everyone is on it")
        figures = None
        if watch_seconds and p.live:  # revert (raises), or keep
            figures = watch_release(session, state, new=p.to, old=p.live,
                                    seconds=watch_seconds, fields=attempt.fields, before=record)
        stopped = stop_old_colour(session, p.live, stop_old, figures)
        if p.live and not stopped:
            rep.line(f"{p.live} keeps running for `fab -H {name} rollback`")
    return session.summary("promoted", live=p.to, previous=p.live, was=p.kind,
                           percent=p.percent, commit=record.get("commit"), branch=branch,
                           **({"watch": figures} if figures else {}),
                           stopped=p.live if stopped else None)


def switch_everyone(session, attempt, state, to, nginx_version=None):
    """Switch, verify and record `promoted`; returns the new state."""
    switch_nginx(session, to, nginx_version=nginx_version, attempt=attempt)
    verify(session, to, attempt=attempt)
    new = with_promoted(state, to)
    with attempt.step("record") as ph:
        session.record(format_state(new), session.history_line("promoted", **attempt.fields))
        ph.detail = "state.json, history"
    return new


# --- after the switch: the watch -------------------------------------------------------


def watch_release(session, state, *, new, old, seconds, fields, before):
    """A full release (or promotion) under watch: revert (raises) or keep.
    ``before``: the new colour's record before the task (what a revert puts back)."""
    outcome = watched(session, new=new, old=old, seconds=seconds, canary=False)
    s, rep = session.settings, session.reporter
    if outcome.verdict == accesslog.REVERT:
        revert(session, state, outcome, fields, before)
    line = outcome.sentence(s.watch_max_error_rate, s.watch_min_requests)
    rep.line(f"watch ended clean: {line}; {new} stays live" if outcome.verdict == accesslog.OK
             else f"watch: {line}; {new} stays live")
    return outcome.as_dict(s.watch_max_error_rate, s.watch_min_requests)


def watch_canary(session, state, *, new, old, seconds, fields, stop_old=False, before=None):
    """A canary under watch: revert (raises), promote when clean, or leave it
    for a person when too few requests came to judge."""
    outcome = watched(session, new=new, old=old, seconds=seconds, canary=True)
    s, rep, name = session.settings, session.reporter, session.name
    if outcome.verdict == accesslog.REVERT:
        revert(session, state, outcome, fields, before)
    line = outcome.sentence(s.watch_max_error_rate, s.watch_min_requests)
    figures = outcome.as_dict(s.watch_max_error_rate, s.watch_min_requests)
    if outcome.verdict == accesslog.TOO_FEW:
        rep.line(f"watch: {line}; the canary is NOT promoted and keeps running: "
                 f"fab -H {name} promote, or fab -H {name} rollback")
        figures["promoted"] = False
        return figures
    rep.line(f"watch ended clean: {line}; promoting {new}")
    with Attempt(session, live=old, fields={**fields, "from_colour": old, "to_colour": new,
                                            "was": "canary", "watch": figures}) as attempt:
        switch_everyone(session, attempt, state, new, nginx_version=session.view.nginx_version)
    figures["promoted"] = True
    if stop_old:
        stop_colour(session, old)
    return figures


def watched(session, *, new, old, seconds, canary):
    """The watch; Ctrl-C leaves the switch as recorded (the task's block then
    releases the lock)."""
    try:
        return watch(session, new=new, old=old, seconds=seconds)
    except KeyboardInterrupt:
        name = session.name
        raise Failure(f"watch interrupted: what was recorded before it stands ({new} "
                      f"serves as recorded; `fab -H {name} status` shows it); the lock "
                      "was released",
                      (f"watch by hand, then fab -H {name} promote or fab -H {name} rollback"
                       if canary else f"watch by hand; to go back to {old}: "
                       f"fab -H {name} rollback"),
                      code=INTERRUPTED) from None


def revert(session, state, outcome, fields, before):
    """Everyone back to the old colour at once; record `reverted` with the figures;
    exit 1 (the task's block then releases the lock, as it does if this fails)."""
    s, rep, name = session.settings, session.reporter, session.name
    new, old = outcome.new, outcome.old
    why = outcome.sentence(s.watch_max_error_rate, s.watch_min_requests)
    figures = outcome.as_dict(s.watch_max_error_rate, s.watch_min_requests)
    rep.line(f"watch: {why}: switching everyone back to {old}")
    started = time.monotonic()
    switch_nginx(session, old, nginx_version=session.view.nginx_version)
    verify(session, old)
    if outcome.detected_after_first_5xx is not None:
        # The first 5xx to everyone back on the old colour: detection on
        # the host's clock, the switch and its verification on ours.
        figures["reverted_after_first_5xx"] = round(
            outcome.detected_after_first_5xx + time.monotonic() - started, 2)
    with rep.phase("record") as ph:
        session.record(format_state(with_withdrawn(state, new, old, "reverted", before)),
                       session.history_line("reverted", **{
                           **fields, "from_colour": new, "to_colour": old,
                           "watch": figures}))
        ph.detail = "state.json, history (reverted)"
    raise Failure(f"reverted by the watch: {why}; {old} serves everyone again",
                  f"{new} keeps the release for a look: fab -H {name} logs --colour {new}; "
                  "fix it and release again", code=FAILED,
                  extra={"result": "reverted", "live": old, "reverted": new, "watch": figures})

