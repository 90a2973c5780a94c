"""After a stale lock is taken over: put back an idle colour its dead holder left half-done.

A task killed part-way (fab killed, the laptop gone) cannot run its own
undo (``steps.Attempt.fail``): a release killed after its start step
leaves the idle colour running an unrecorded build, perhaps not even
healthy, and `rollback` would switch to it. The task that takes the lock
over compares each idle colour's container with state.json and starts
the recorded release's kept image again where they differ (no git, no
build), so the host is as the record says before that task plans.
"""

from dataclasses import dataclass

from ..commands import building, containers
from ..commands.base import build_timeout
from ..errors import Failure
from ..model.pending import canary_of
from ..model.processes import read_procfile
from ..model.state import format_history_line, format_state, history_entry
from ..model.takeover import served_unrecorded, with_served
from .health import gate
from .workers import put_right


@dataclass(frozen=True)
class Drift:
    colour: str
    commit: str  # the recorded release to start again; None: none, stop what runs
    found: str  # what the container runs (image id), or its state


def unrecorded_idle(view):
    """Idle colours whose container is not the recorded release's (pure)."""
    serving = {view.live} | ({canary_of(view)[0]} if canary_of(view) else set())
    found = []
    for colour, container in view.containers.items():
        record = view.record(colour)
        if colour in serving:
            continue
        if not record.get("commit"):
            # Never released: whatever runs there is a dead task's unrecorded build.
            if container.state in ("running", "restarting"):
                found.append(Drift(colour, None, container.image or container.state))
            continue
        if record.get("image") and (container.state == "missing"
                                    or container.image != record["image"]):
            found.append(Drift(colour, record["commit"],
                               container.image or container.state))
    return found


def restore_unrecorded(session, view):
    """Start each drifted idle colour's recorded release again and wait for its
    health. Says what it did; a failure is a warning (the task goes on, its
    own plan decides what that colour is used for). The Session runs it after
    a takeover of the lock (cli/on_hosts.py hands it over)."""
    s, rep = session.settings, session.reporter
    bound = build_timeout(s) + 30
    state = record_served(session, view)
    for drift in unrecorded_idle(view):
        if drift.commit is None:
            rep.line(f"{drift.colour} runs a build that was never recorded (the task that "
                     "held the lock died part-way) and had no release before: stopping it")
            session.run(containers.stop(s, drift.colour))
            continue
        with rep.phase("restore") as ph:
            rep.line(f"{drift.colour} does not run its recorded release {drift.commit[:12]} "
                     "(the task that held the lock died part-way): starting it again")
            result = session.run(building.restore(s, drift.colour, drift.commit),
                                 timeout=bound)
            if result.code != 0:
                ph.detail = "FAILED"
                rep.line(f"warning: could not start {drift.colour}'s release "
                         f"{drift.commit[:12]} again: {result.values.get('error') or result.code}")
                continue
            try:
                ph.detail = gate(session.host, s, drift.colour, rep)
            except Exception as exc:  # the task goes on; status shows the colour
                ph.detail = "not healthy"
                rep.line(f"warning: {drift.colour} is not healthy after its restart: "
                         f"{getattr(exc, 'message', exc)}")
    # A task killed mid-hand-over may have left workers in both colours.
    put_right(session, state, view.live)


def record_served(session, view):
    """state.json as nginx serves: a task killed between its switch and its
    record left nginx serving a colour state.json does not record so. Records
    what that colour's container runs (said, and a history line); returns the
    state (``view.state`` when nothing was to record)."""
    served = served_unrecorded(view)
    if served is None:
        return view.state
    s, rep, colour = session.settings, session.reporter, served.colour
    processes = None
    if served.unrecorded and s.procfile:
        result = session.run(building.procfile_at(s, colour, served.commit))
        try:
            if result.blocks.get("procfile", "").strip():
                processes = read_procfile(result.blocks["procfile"], s)
        except Failure:  # not one the release could have run: as recorded before
            processes = None
    container = view.containers[colour]
    state = with_served(view.state, served, image=container.image or None,
                        started_at=container.started_at, history=view.history,
                        default_branch=s.branch_of(colour), processes=processes)
    live, record = view.state.get("live"), view.record(colour)
    was = (f"{live or 'nothing'} live" if live != colour else
           f"{(record.get('commit') or 'nothing')[:12]}"
           + (f" {record['pending']}" if record.get("pending") else "") + f" in {colour}")
    said = (f"nginx serves {colour}, which runs {served.commit[:12]}, but state.json said "
            f"{was} (the task that held the lock died between its switch and its record): "
            "recorded what serves")
    line = format_history_line(history_entry(
        host=session.name, app=s.app_name, task="lock", who=session.who, result="recorded",
        duration=0.0, from_colour=live, to_colour=colour, commit=served.commit, error=said))
    try:
        session.record(format_state(state), line)
    except Failure as exc:  # the task goes on; status shows the drift
        rep.line(f"warning: {exc.message}")
        return view.state
    rep.line(said)
    return state
