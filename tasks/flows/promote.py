"""fab promote: everyone to the staged colour or the canary (health, PRE_SWITCH_CMD, switch)."""

from ..deploy.fleet_switch import SOLO
from ..deploy.signatures import verify_kept
from ..deploy.steps import Attempt, healthy_now, pre_switch, stop_old_colour, switch_everyone
from ..deploy.workers import hand_over
from ..model.pending import pending_source, plan_promote
from ..model.processes import processes_of, worker_types
from .watched import watch_release


def promote_staged(session, *, watch_seconds=0, stop_old=False, wait_lock=0.0, fleet=SOLO):
    """Send everyone to the staged colour or the canary: health, PRE_SWITCH_CMD
    (not again for a canary), switch, verify, record. ``fleet``: over several
    hosts, every host is checked before any switches, then all switch together
    (deploy/fleet_switch.py)."""
    rep, name = session.reporter, session.name
    session.connect()
    with session.locked(wait=wait_lock) as view:
        fleet.locked()
        with Attempt(session, live=view.live, fields={"from_colour": view.live}) as attempt:
            p = plan_promote(view, name)
            record = view.record(p.to)
            branch, ref, follows = pending_source(record)
            attempt.fields.update(to_colour=p.to, branch=branch, commit=record.get("commit"),
                                  ref=ref, follows=follows if follows != branch else None,
                                  was=p.kind, percent=p.percent)
            # ALLOWED_SIGNERS may have changed since the build was staged.
            attempt.fields["signer"] = verify_kept(session, record.get("commit") or "") or None
            healthy_now(session, attempt, p.to)
            fleet.prepared()  # every host can promote, or none does
            # A canary's clients met it: its PRE_SWITCH_CMD ran then.
            if p.kind != "canary" and fleet.runs_pre_switch(session.settings):
                pre_switch(session, attempt, p.to)
            attempt.fields["workers"] = worker_types(
                processes_of(view.state, p.to), session.settings) or None
            state = switch_everyone(session, attempt, view.state, p.to,
                                    nginx_version=view.nginx_version, fleet=fleet)
            hand_over(session, state, p.to, p.live, before=view.state, fleet=fleet)
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
