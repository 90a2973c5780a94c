"""The app's processes: its Procfile, and which worker containers each colour runs.

Pure. ``web`` is the served process (its command unless APP_CMD is set),
``release`` runs once per release before the switch (unless PRE_SWITCH_CMD
is set); every other type is a worker: compose services ``COLOUR-TYPE``,
SCALE containers each, from that colour's image.
"""

import re
from dataclasses import dataclass

from ..errors import BAD_INPUT, Failure

TYPE_RE = re.compile(r"([A-Za-z0-9_-]+):\s*(.*)")
NOT_WORKERS = ("web", "release")
# Names that usually mean a scheduler: two at once fire every job twice.
SCHEDULER_LIKE = ("clock", "scheduler", "beat", "cron", "celerybeat", "timer", "schedule")


def parse_procfile(text, origin="Procfile"):
    """{type: command} in the file's order; a bad line is exit 2 naming it."""
    processes = {}
    for number, line in enumerate((text or "").splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = TYPE_RE.fullmatch(stripped)
        if not match or not match.group(2).strip():
            raise Failure(f"{origin} line {number} is not `type: command`: {stripped[:120]!r}",
                          "each line is a process type ([A-Za-z0-9_-]+), a colon and its "
                          "command; # starts a comment", code=BAD_INPUT)
        kind, command = match.group(1), match.group(2).strip()
        if kind in processes:
            raise Failure(f"{origin} line {number} names type {kind} a second time",
                          "each process type once", code=BAD_INPUT)
        processes[kind] = command
    return processes


@dataclass(frozen=True)
class Worker:
    """One worker type of a colour: its compose service and how it hands over."""

    kind: str
    command: str
    scale: int
    stop_first: bool

    def service(self, colour):
        return f"{colour}-{self.kind}"


def workers_of(processes, settings):
    """The worker types of a Procfile's processes, with SCALE and STOP_FIRST."""
    scale = dict(settings.scale)
    return tuple(Worker(kind, command, scale.get(kind, 1), kind in settings.stop_first)
                 for kind, command in (processes or {}).items() if kind not in NOT_WORKERS)


def check_scale_types(processes, settings, origin="Procfile"):
    """Exit 2 when SCALE names a type the Procfile does not have."""
    known = set(processes or {})
    for kind, _ in settings.scale:
        if kind not in known:
            raise Failure(f"SCALE names {kind}, which is no process type of {origin} "
                          f"(types: {', '.join(sorted(known - set(NOT_WORKERS))) or 'none'})",
                          "fix SCALE, or add the type to the Procfile", code=BAD_INPUT)


def web_command(processes, settings):
    """What the web container runs: APP_CMD, else the Procfile's web, else the image's CMD."""
    return settings.app_cmd or (processes or {}).get("web", "")


def release_command(processes, settings):
    """What runs before the switch: PRE_SWITCH_CMD, else the Procfile's release."""
    return settings.pre_switch_cmd or (processes or {}).get("release", "")


def unscheduled(processes, settings):
    """Scheduler-like worker types that are not in STOP_FIRST (check warns)."""
    return [w.kind for w in workers_of(processes, settings)
            if w.kind.lower() in SCHEDULER_LIKE and not w.stop_first]


@dataclass(frozen=True)
class HandOver:
    """What a hand-over from ``old`` to ``new`` does, in order."""

    new: str
    old: str  # None: no colour had workers (the first release)
    stop_first: tuple  # Workers of ``new`` whose type stops in ``old`` first
    start: tuple  # Workers of ``new`` started with the others, before ``old``'s stop

    @property
    def workers(self):
        return self.stop_first + self.start

    @property
    def types(self):
        return [w.kind for w in self.workers if w.scale]


def plan_hand_over(new, old, processes, settings):
    """Start ``new``'s workers (SCALE 0: none), stop-first types after ``old``'s stop."""
    workers = [w for w in workers_of(processes, settings) if w.scale > 0]
    return HandOver(new=new, old=old if old != new else None,
                    stop_first=tuple(w for w in workers if w.stop_first),
                    start=tuple(w for w in workers if not w.stop_first))


# --- what state.json records of processes ----------------------------------------
# Each colour's record keeps its release's ``processes`` ({type: command}),
# ``procfiles`` keeps them by commit (rollback --to starts a kept release
# with its own), and ``workers`` names the colour the workers run in.

KEPT_PROCFILES = 12


def with_processes(state, colour, processes, commit=None, workers=None):
    """``state`` with ``colour``'s processes recorded (and, given, where workers run)."""
    new = dict(state)
    new["colours"] = {c: dict(r) for c, r in state.get("colours", {}).items()}
    record = new["colours"].setdefault(colour, {})
    record["processes"] = dict(processes or {})
    if commit:
        kept = dict(state.get("procfiles") or {})
        kept.pop(commit, None)
        kept[commit] = dict(processes or {})
        new["procfiles"] = dict(list(kept.items())[-KEPT_PROCFILES:])
    if workers is not None:
        new["workers"] = workers
    return new


def with_workers(state, colour):
    new = dict(state)
    new["workers"] = colour
    return new


def processes_of(state, colour):
    return ((state or {}).get("colours", {}).get(colour) or {}).get("processes") or {}


def procfile_of_commit(state, commit):
    return ((state or {}).get("procfiles") or {}).get(commit) or {}


def processes_by_colour(state):
    """{colour: processes} for the compose file."""
    return {c: processes_of(state, c) for c in ("blue", "green")}


def worker_types(processes, settings):
    """The worker types that run (SCALE > 0), for history and summaries."""
    return [w.kind for w in workers_of(processes, settings) if w.scale > 0]


def workers_colour(state):
    """The colour state.json says the workers run in (None: none recorded)."""
    return (state or {}).get("workers")


def compose_processes(state, colour, processes):
    """{colour: processes} for the compose file, ``colour`` with its new ones."""
    found = processes_by_colour(state)
    found[colour] = dict(processes or {})
    return found


def read_procfile(text, settings, where="in the commit being released, read on the host"):
    """The Procfile's processes, checked: its lines, and SCALE's types (exit 2).
    ``where``: which Procfile, for the message (the commit on a host, this
    machine's checkout, an --image)."""
    try:
        processes = parse_procfile(text, origin=settings.procfile) if settings.procfile else {}
    except Failure as exc:
        exc.message = f"{exc.message} ({where})"
        raise
    check_scale_types(processes, settings, origin=settings.procfile or "the Procfile")
    return processes


def has_workers(state):
    """Whether either colour's release has worker types, or workers run somewhere."""
    return bool(workers_colour(state)) or any(
        kind not in NOT_WORKERS for c in ("blue", "green") for kind in processes_of(state, c))


def process_counts(state, colour, found, settings):
    """{type: {"running", "wanted", "restarts"}} of ``colour``'s workers: wanted
    is SCALE where the workers belong (state.json's ``workers``), else 0;
    ``found``: commands/workers.parse_workers of what runs."""
    here = (found or {}).get(colour, {})
    wanted = {w.kind: w.scale for w in workers_of(processes_of(state, colour), settings)}
    if workers_colour(state) != colour:
        wanted = {kind: 0 for kind in wanted}
    counts = {}
    for kind in list(wanted) + [k for k in here if k not in wanted]:
        seen = here.get(kind) or {}
        counts[kind] = {"running": seen.get("running", 0), "wanted": wanted.get(kind, 0),
                        "restarts": seen.get("restarts", 0)}
    return counts


def planned_workers(state, live, target, settings, commit=None, switches=True):
    """What a release's workers would do, in words, for `release --plan`: the
    Procfile's types are known before a checkout only when the planned commit
    was released before (state.json keeps its Procfile)."""
    if not settings.procfile:
        return "none (PROCFILE=none)"
    running = worker_types(processes_of(state, workers_colour(state) or live), settings)
    where = workers_colour(state) or live
    now = f"{', '.join(running)} run in {where}" if running and where else "none run now"
    if not switches:
        return f"{now}; they stay there until promote (a staged build or canary serves few)"
    known = procfile_of_commit(state, commit) if commit else {}
    types = worker_types(known, settings) if known else []
    new = (f"{', '.join(types)} start in {target}" if types
           else f"{target} starts the types its Procfile ({settings.procfile}) names")
    first = [t for t in running if t in settings.stop_first]
    return (f"{now}; after the switch {new}"
            + (f" ({', '.join(first)} stopped in {where} first)" if first else "")
            + (f", then {where}'s stop after WORKER_READY_SECONDS={settings.worker_ready_seconds}"
               if running else ""))
