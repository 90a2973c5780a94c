"""Several hosts switched together or not at all: the meeting points of one run.

Each host runs its own flow (flows/release.py release_live, flows/switch.py)
in a thread of its own, holding its lock and its Attempt as on one host. At
each meeting point (``Fleet.meet``) a host waits until every host of the run
has reached it or dropped out; when one dropped out, every other raises
``FleetAbort`` there, so its own Attempt undoes what it did (switches back,
puts its idle colour back) and records the failure naming the host that
caused it. The hosts leave the "switch" point at the same moment (one
notify_all), so they reload together.

``--batch N`` takes the hosts N at a time: a batch prepares and switches
once the batch before it verified; the "prepared" and "switch" points are
met within a batch, "locked" and "verified" by every host of the run, so an
earlier batch serves the new version, unrecorded, until the last verified,
and switches back when any host fails.

``SOLO`` is the one-host handle: every point is passed at once.
"""

import threading
import time

from ..errors import FAILED, Failure

# The points, in the order a host meets them.
LOCKED = "locked"  # every lock taken and every host read: nothing changed yet
PREPARED = "prepared"  # every idle colour up and healthy (release), or checked (rollback)
SWITCH = "switch"  # PRE_SWITCH_CMD done: all switch now
BATCH_VERIFIED = "batch verified"  # --batch with --watch: the batch switched, now watched
VERIFIED = "verified"  # every host serves the new colour: all record
WORKERS = "workers ready"  # every host's new workers up: the old ones stop
POINTS = (LOCKED, PREPARED, SWITCH, BATCH_VERIFIED, VERIFIED, WORKERS)
IN_A_BATCH = (PREPARED, SWITCH, BATCH_VERIFIED)  # met by the hosts of one batch


class FleetAbort(Failure):
    """This host gives up because another failed: its Attempt undoes, as
    after its own failure, and history names ``cause``."""

    def __init__(self, message, hint, cause):
        super().__init__(message, hint, code=FAILED)
        self.cause = cause


class NotStarted(Exception):
    """Hosts prepared in order: an earlier one failed, this one never began."""


class Fleet:
    """The shared state of one run over several hosts (thread-safe)."""

    def __init__(self, names, in_order=False, batch=None, clock=time.monotonic):
        self.names = list(names)
        self.in_order = in_order  # prepare one host after another (no --parallel)
        size = batch or len(self.names)
        self.batches = [self.names[i:i + size] for i in range(0, len(self.names), size)]
        self.clock = clock
        self._cond = threading.Condition()
        self._reached = {name: -1 for name in self.names}  # index of the last point met
        self.failed = {}  # host -> (point, Failure): those that dropped out themselves
        self.aborted = []  # hosts that gave up because another failed
        self.verified_at = {}  # host -> the clock when its verify passed
        self.watched = {}  # host -> whether its --watch called for a revert

    def handle(self, name):
        return HostHandle(self, name)

    # --- what the runner and the handles call ---

    def drop(self, name, exc, point=None):
        """``name`` failed on its own (not a FleetAbort): the others give up."""
        with self._cond:
            if name not in self.failed and not isinstance(exc, FleetAbort):
                self.failed[name] = (point or self._point_of(name), exc)
            self._reached[name] = len(POINTS)
            self._cond.notify_all()

    def done(self, name):
        """``name``'s flow ended well: it waits for nobody and nobody for it."""
        with self._cond:
            self._reached[name] = len(POINTS)
            self._cond.notify_all()

    def meet(self, name, point):
        """Wait until every host (of this batch, for "prepared" and "switch")
        met ``point`` or dropped out; raise FleetAbort when any host failed."""
        index = POINTS.index(point)
        hosts = self.batch_of(name) if point in IN_A_BATCH else self.names
        with self._cond:
            self._reached[name] = max(self._reached[name], index)
            self._cond.notify_all()
            # A failure anywhere: give up at once (undo while the others do).
            self._cond.wait_for(lambda: self.failed or all(
                self._reached[h] >= index for h in hosts))
            if self.failed:
                self.aborted.append(name)
                raise self._abort(name)

    def watch_verdicts(self, name, revert):
        """After each host's --watch: wait for every host's verdict (or its
        drop); returns the hosts whose watch reverted, in order."""
        with self._cond:
            self.watched[name] = revert
            self._cond.notify_all()
            self._cond.wait_for(lambda: all(
                n in self.watched or self._reached[n] >= len(POINTS) for n in self.names))
            return [n for n in self.names if self.watched.get(n)]

    def batch_of(self, name):
        return next(b for b in self.batches if name in b)

    def wait_turn(self, name):
        """Wait until the batch before this host's verified and (without
        --parallel) the host before it in its batch is prepared; raise
        NotStarted when one failed first."""
        batch = self.batch_of(name)
        index = self.batches.index(batch)
        earlier = self.batches[index - 1] if index else []
        before = batch[:batch.index(name)] if self.in_order else []
        with self._cond:
            self._cond.wait_for(lambda: self.failed or (
                all(self._reached[b] >= POINTS.index(VERIFIED) for b in earlier)
                and all(self._reached[b] >= POINTS.index(PREPARED) for b in before)))
            if self.failed:
                self._reached[name] = len(POINTS)
                self._cond.notify_all()
                raise NotStarted()

    def spread(self):
        """Seconds between the first host's verified switch and the last's, the
        largest over the batches (None for one host)."""
        spreads = [max(t) - min(t) for t in (
            [self.verified_at[h] for h in b if h in self.verified_at] for b in self.batches)
            if len(t) > 1]
        return round(max(spreads), 3) if spreads else None

    # --- helpers ---

    def _point_of(self, name):
        reached = self._reached[name]
        return POINTS[reached + 1] if reached + 1 < len(POINTS) else POINTS[-1]

    def _abort(self, name):
        causes = sorted(self.failed)
        point = self.failed[causes[0]][0]
        why = "its workers' hand-over" if point == WORKERS else \
            "its switch, verify or watch" if point in (SWITCH, BATCH_VERIFIED, VERIFIED) else \
            "connecting or locking" if point == LOCKED else "its preparation"
        return FleetAbort(
            f"{name} gives up: {', '.join(causes)} failed ({why}); the hosts switch together "
            "or not at all",
            f"see {', '.join(causes)}'s lines; fix it and run again", cause=causes[0])


class HostHandle:
    """One host's view of the run: the points its flow meets, in order."""

    def __init__(self, fleet, name):
        self.fleet, self.name = fleet, name
        # --batch with --watch: this host's watch of its batch (raises to
        # revert), run once its batch verified and before the next batch starts
        self.watch_batch = None

    @property
    def several(self):
        return True

    @property
    def first(self):
        return self.fleet.names[0]

    def runs_pre_switch(self, settings):
        """PRE_SWITCH_ON=first: the run's first host only; every: each."""
        return settings.pre_switch_on == "every" or self.first == self.name

    def locked(self):
        self.fleet.meet(self.name, LOCKED)
        self.fleet.wait_turn(self.name)

    def prepared(self):
        self.fleet.meet(self.name, PREPARED)

    def switch_now(self):
        self.fleet.meet(self.name, SWITCH)

    def verified(self):
        with self.fleet._cond:
            self.fleet.verified_at[self.name] = self.fleet.clock()
        if self.watch_batch is not None:
            self.fleet.meet(self.name, BATCH_VERIFIED)
            self.watch_batch()
        self.fleet.meet(self.name, VERIFIED)

    def workers_ready(self):
        """This host's new workers are ready (or it has none to hand over):
        the old colour's stop only once every host's are."""
        self.fleet.meet(self.name, WORKERS)

    def reverted_by_watch(self, revert):
        """``revert``: this host's watch called for one; returns the hosts whose
        watch did (a revert on one reverts every host)."""
        return self.fleet.watch_verdicts(self.name, revert)


class Solo:
    """One host: every point passes at once."""

    several = False
    first = None
    watch_batch = None

    def runs_pre_switch(self, settings):
        return True

    def locked(self):
        pass

    def prepared(self):
        pass

    def switch_now(self):
        pass

    def verified(self):
        pass

    def workers_ready(self):
        pass

    def reverted_by_watch(self, revert):
        return ["this host"] if revert else []


SOLO = Solo()
