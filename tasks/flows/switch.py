"""fab rollback and fab switch --to: one good health answer, then switch, verify, record."""

from ..deploy.fleet_switch import SOLO
from ..deploy.steps import Attempt, go_live, healthy_now
from ..deploy.workers import hand_over
from ..model.pending import after_switch, canary_of
from ..model.plan import plan_switch
from ..model.processes import has_workers, processes_of, with_workers, worker_types, workers_colour
from ..model.state import build_of, source_of


def switch(session, to=None, *, wait_lock=0.0, fleet=SOLO):
    """rollback (to=None: the other colour) and switch --to: steps 7-9 after
    one good health answer from the colour switched to. ``fleet``: this
    host's handle over several hosts (deploy/fleet_switch.py): every host is
    locked and checked before any switches, then all switch together."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    with session.locked(wait=wait_lock, ports=False) as view:
        fleet.locked()
        with Attempt(session, live=view.live, fields={"from_colour": view.live}) as attempt:
            to = plan_switch(view, s, name, to)
            record = view.record(to)
            canary = canary_of(view)
            if canary and to == view.live:
                # Everyone back from the canary: history says from which colour.
                attempt.fields.update(from_colour=canary[0], was="canary", percent=canary[1])
            build = build_of(record)
            # What its container runs (its image says), as history and the summary tell it.
            commit = view.runs(to) or record.get("commit")
            attempt.fields.update(to_colour=to, branch=build["branch"], ref=build["ref"],
                                  commit=commit)

            healthy_now(session, attempt, to)
            fleet.prepared()  # every host can switch, or none does

            state = with_workers(after_switch(view.state, to, canary and canary[0]), to)
            workers = has_workers(view.state)
            if workers and workers_colour(view.state) != to:
                attempt.fields["workers"] = worker_types(processes_of(view.state, to), s) or None
            # Without workers the record step drops the lock too; with them, web
            # switched just as fast (over several hosts: every host verified and
            # recorded), then the workers follow under the lock.
            # Over several hosts every host waits for the others' hand-over
            # under its lock (one that fails puts every host back).
            together = workers or fleet.several
            go_live(session, attempt, to, state, unlock=not together, fleet=fleet)
            if together:
                hand_over(session, state, to, view.live, before=view.state, fleet=fleet)
    summary = session.summary("ok", live=to, previous=view.live, commit=commit,
                              branch=build["branch"])
    rest = (f"the {canary_of(view)[0]} canary serves nobody now (staged: `fab -H {name} "
            "promote` still can)" if to == view.live else f"{view.live} keeps running")
    rep.line(f"{session.task}: {to} is live ({(commit or '?')[:12]} "
             f"{source_of(record) or ''}) in {summary['seconds']:.1f}s; {rest}")
    return summary
