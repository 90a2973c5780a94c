"""The workers follow the colour that serves everyone: the hand-over, one call per host.

After a task switched web to a colour, verified it and recorded it,
``hand_over`` moves the workers there: the compose file is brought to
what state.json records (each colour's Procfile), STOP_FIRST types stop in
the old colour, the new colour's workers start and must stay up
WORKER_READY_SECONDS (or turn Docker-healthy within it, when their image
has a HEALTHCHECK), then the old colour's stop (SIGTERM,
WORKER_STOP_TIMEOUT). A new worker that does not stay up fails the task:
the old colour's workers never stopped (stop-first ones start again),
state.json is put back as it was, and the task's Attempt switches web back.
Over several hosts the old colour's stop waits for every host's new
workers, and one host's failure puts every host back.
"""

from ..commands import workers as scripts
from ..commands.base import NO_DEPLOY_DIR, mark, q, write_file
from ..commands.one_off import reap
from ..errors import FAILED, Failure
from ..model.compose_file import render_compose
from ..model.processes import (has_workers, plan_hand_over, processes_by_colour, processes_of,
                               workers_colour)
from ..model.state import format_state
from .fleet_switch import SOLO, FleetAbort


def hand_over(session, state, new, old, before=None, undo=True, fleet=SOLO):
    """Workers from ``old`` to ``new`` (``state``: what was just recorded, with
    its processes). ``before``: the state before the task (where the workers
    ran); with ``undo`` it is put back if a new worker does not stay up (then
    raises Failure; the task's Attempt switches web back). ``fleet``: over
    several hosts the old colour's workers stop only once every host's new
    ones are ready; when any host's are not, every host puts its workers and
    state.json back and raises (FleetAbort: its Attempt switches web back).
    Returns the types handed over ([]: none)."""
    s, rep = session.settings, session.reporter
    processes = processes_of(state, new)
    if workers_colour(before) == new or (
            not processes and not any(processes_of(state, c) for c in ("blue", "green"))
            and not workers_colour(before)):
        # There already (a rollback of a canary: its clients went back), or no
        # app with workers here: no round trip, but a fleet's hosts still wait
        # for each other's.
        meet(session, fleet, before if undo else None)
        return []
    plan = plan_hand_over(new, old, processes, s)
    together = fleet.several
    with rep.phase("workers") as ph:
        script = sync_compose(s, state) + scripts.hand_over(
            s, plan, s.worker_ready_seconds, stop_old=not together)
        bound = s.worker_ready_seconds + 2 * s.worker_stop_timeout + 120
        result = session.run(script, timeout=bound)
        if result.values.get("ready") != "ok":
            if undo and before is not None:
                session.run(record_only(s, before))
            raise not_ready(session, plan, result)
        if together:
            meet(session, fleet, before if undo else None,
                 put_back=scripts.put_back(s, new, result.values.get("first", "")))
            if old:
                session.run(scripts.stop_workers(s, old), timeout=2 * s.worker_stop_timeout + 60)
        moved = ", ".join(f"{w.kind}x{w.scale}" for w in plan.workers) or "none"
        ph.detail = (f"{moved} -> {new}" + (f"; {old}'s stopped" if old else ""))
    return plan.types


def meet(session, fleet, before, put_back=""):
    """Wait for the other hosts' hand-overs; when one failed, put this host's
    workers (``put_back``: the script) and state.json (``before``) back, then
    raise the FleetAbort for the Attempt."""
    try:
        fleet.workers_ready()
    except FleetAbort:
        undo = put_back + (record_only(session.settings, before) if before is not None else "")
        if undo:
            session.run(undo, timeout=2 * session.settings.worker_stop_timeout + 60)
        raise


def not_ready(session, plan, result):
    """The Failure of a hand-over whose new workers were not ready."""
    s, new, old = session.settings, plan.new, plan.old
    found = scripts.parse_workers(result.blocks.get("new", "")).get(new, {})
    bad = [f"{w.kind} ({describe(found.get(w.kind), w.scale)})" for w in plan.workers
           if not found.get(w.kind) or found[w.kind]["running"] < w.scale
           or found[w.kind]["restarts"] or found[w.kind].get("unhealthy")
           or found[w.kind].get("starting")]
    healthy = any(e.get("unhealthy") or e.get("starting") for e in found.values())
    return Failure(
        f"a new worker did not {'turn healthy within' if healthy else 'stay up'} "
        f"{s.worker_ready_seconds}s in {new}: "
        f"{', '.join(bad) or 'see its logs'}; "
        f"{'the workers of ' + old + ' keep running' if old else 'no workers run'}",
        f"`fab -H {session.name} logs --colour {new} --process "
        f"{(bad[0].split()[0] if bad else plan.types[0] if plan.types else 'worker')}` "
        "shows why; fix it and release again", code=FAILED)


def describe(entry, wanted):
    if not entry:
        return f"0/{wanted} running"
    text = f"{entry['running']}/{wanted} running"
    if entry["restarts"]:
        text += f", restarted {entry['restarts']}x"
    if entry.get("unhealthy"):
        text += f", {entry['unhealthy']} unhealthy"
    if entry.get("starting"):
        text += f", {entry['starting']} not yet healthy"
    return text


def sync_compose(settings, state):
    """Shell text: write the compose file rendered from ``state`` if it differs."""
    text = render_compose(settings, processes_by_colour(state))
    d = settings.deploy_dir
    return (f"cd {q(d)} || exit {NO_DEPLOY_DIR}\n{reap(settings)}"
            f"if ! printf '%s' {q(text)} | cmp -s - compose.yml; then "
            f"{write_file(d + '/compose.yml', text)} && {mark('compose', 'updated')}; fi\n")


def record_only(settings, state):
    """state.json put back as it was before the task (no history line: the
    task's Attempt records the failure)."""
    d = settings.deploy_dir
    return f"cd {q(d)} && {write_file(d + '/state.json', format_state(state))}\n"


def put_right(session, state, live):
    """After a takeover of a dead task's lock (or a repair): workers only in
    ``live``, the colour that serves everyone, all of its running. One step."""
    s, rep = session.settings, session.reporter
    if live is None or not has_workers(state):
        return
    processes = processes_of(state, live)
    plan = plan_hand_over(live, None, processes, s)
    script = (sync_compose(s, state) +
              "\n".join(scripts.stop_workers(s, c) for c in ("blue", "green") if c != live) +
              "\n" + scripts.start_workers(s, live, plan))
    with rep.phase("workers") as ph:
        session.run(script, timeout=2 * s.worker_stop_timeout + 120)
        ph.detail = f"{', '.join(plan.types) or 'none'} in {live} only"
