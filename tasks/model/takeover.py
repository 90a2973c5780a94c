"""After a stale lock is taken over: what state.json must say of the colour nginx serves (pure).

A task killed between its switch and its record (fab killed during verify,
the laptop gone) leaves nginx serving the new colour while state.json still
names the old one live, and the new colour's record names its previous
build (or none). Every later task would then record that stale record
again. The task that takes the lock over records what nginx serves and what
that colour's container runs before it plans (deploy/recover.py writes it).
"""

from dataclasses import dataclass

from .pending import canary_of, with_promoted
from .processes import procfile_of_commit, processes_of, with_processes, with_workers
from .state import iso_utc, recover_branch, with_release

RECORDED_BY = "unknown (recorded after a takeover of a dead task's lock)"


@dataclass(frozen=True)
class Served:
    colour: str  # the colour nginx serves everyone
    commit: str  # what its container runs (its image says), or its recorded commit
    unrecorded: bool  # its container runs another build than state.json records for it


def served_unrecorded(view):
    """The colour nginx serves when state.json does not record it as served
    (another live colour, a pending build, or another build than its container
    runs); None when the record agrees, or nothing can be told (no state.json,
    no nginx file, a foreign port, a canary: its own record stands)."""
    if not view.state or view.nginx is None or view.nginx.served is None or canary_of(view):
        return None
    colour = view.nginx.served
    record = view.record(colour)
    running = view.runs(colour)
    unrecorded = bool(running) and running != record.get("commit")
    if view.state.get("live") == colour and not record.get("pending") and not unrecorded:
        return None
    commit = running or record.get("commit")
    if not commit:  # nothing runs there and nothing was recorded: nothing to record
        return None
    return Served(colour, commit, unrecorded)


def with_served(state, served, *, image, started_at, history, default_branch,
                processes=None):
    """``state`` once it records ``served``: live, nothing pending about it, its
    record naming what its container runs, the workers following it.

    A build recorded for the colour (a killed promote, rollback or switch) is
    promoted as `promote` would have; another build (a killed release) gets a
    record of its own: the branch the colour followed, the image it runs,
    ``processes`` (its Procfile, read on the host; None: as recorded for that
    commit before, else the colour's own)."""
    colour = served.colour
    if not served.unrecorded:
        return with_workers(with_promoted(state, colour), colour)
    record = (state.get("colours") or {}).get(colour) or {}
    branch, _, _ = recover_branch(colour, record, history, served.commit, default_branch)
    new = with_release(state, colour, branch=branch, commit=served.commit, image=image,
                       who=RECORDED_BY, live=True, at=iso_utc(started_at or "") or None)
    if processes is None:
        processes = procfile_of_commit(state, served.commit) or processes_of(state, colour)
    return with_processes(new, colour, processes, served.commit, workers=colour)
