"""The workers follow the colour that serves everyone: the hand-over, one call per host.

After a task switched web to a colour, verified it and recorded it,
``hand_over`` moves the workers there: the compose file is brought to
what state.json records (each colour's Procfile), STOP_FIRST types stop in
the old colour, the new colour's workers start and must stay up
WORKER_READY_SECONDS, then the old colour's stop (SIGTERM,
WORKER_STOP_TIMEOUT). A new worker that does not stay up fails the task:
the old colour's workers never stopped (stop-first ones start again),
state.json is put back as it was, and the task's Attempt switches web back.
"""

from ..commands import workers as scripts
from ..commands.base import NO_DEPLOY_DIR, mark, q, write_file
from ..commands.one_off import reap
from ..errors import FAILED, Failure
from ..model.compose_file import render_compose
from ..model.processes import (has_workers, plan_hand_over, processes_by_colour, processes_of,
                               workers_colour)
from ..model.state import format_state


def hand_over(session, state, new, old, before=None, undo=True):
    """Workers from ``old`` to ``new`` (``state``: what was just recorded, with
    its processes). ``before``: the state before the task (where the workers
    ran); with ``undo`` it is put back if a new worker does not stay up (then
    raises Failure; the task's Attempt switches web back). Returns the types
    handed over ([]: none)."""
    s, rep = session.settings, session.reporter
    processes = processes_of(state, new)
    if workers_colour(before) == new:
        return []  # there already (a rollback of a canary: its clients went back)
    if not processes and not any(processes_of(state, c) for c in ("blue", "green")) \
            and not workers_colour(before):
        return []  # no app with workers here: no round trip
    plan = plan_hand_over(new, old, processes, s)
    with rep.phase("workers") as ph:
        script = sync_compose(s, state) + scripts.hand_over(s, plan, s.worker_ready_seconds)
        bound = s.worker_ready_seconds + 2 * s.worker_stop_timeout + 120
        result = session.run(script, timeout=bound)
        if result.values.get("ready") != "ok":
            found = scripts.parse_workers(result.blocks.get("new", "")).get(new, {})
            bad = [f"{w.kind} ({describe(found.get(w.kind), w.scale)})" for w in plan.workers
                   if not found.get(w.kind) or found[w.kind]["running"] < w.scale
                   or found[w.kind]["restarts"]]
            if undo and before is not None:
                session.run(record_only(s, before))
            raise Failure(
                f"a new worker did not stay up {s.worker_ready_seconds}s in {new}: "
                f"{', '.join(bad) or 'see its logs'}; "
                f"{'the workers of ' + old + ' keep running' if old else 'no workers run'}",
                f"`fab -H {session.name} logs --colour {new} --process "
                f"{(bad[0].split()[0] if bad else plan.types[0] if plan.types else 'worker')}` "
                "shows why; fix it and release again", code=FAILED)
        moved = ", ".join(f"{w.kind}x{w.scale}" for w in plan.workers) or "none"
        ph.detail = (f"{moved} -> {new}" + (f"; {old}'s stopped" if old else ""))
    return plan.types


def describe(entry, wanted):
    if not entry:
        return f"0/{wanted} running"
    text = f"{entry['running']}/{wanted} running"
    if entry["restarts"]:
        text += f", restarted {entry['restarts']}x"
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
