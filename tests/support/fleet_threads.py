"""Threads standing in for the hosts of a run over several hosts, as
cli/on_fleet.py runs their flows (unit tests of deploy/fleet_switch.py and
of what meets there)."""

import threading

from tasks.deploy.fleet_switch import FleetAbort, NotStarted
from tasks.errors import Failure


def each_host(fleet, bodies):
    """bodies: {host: fn(handle)}, each in its own thread with the fleet's
    handle for that host. Returns {host: what fn returned | "not started" |
    "abort:CAUSE" | "failed"}; a host that fails is dropped from the fleet,
    as on_fleet drops it."""
    out = {}

    def one(name):
        try:
            out[name] = bodies[name](fleet.handle(name))
        except NotStarted:
            out[name] = "not started"
        except FleetAbort as exc:
            out[name] = f"abort:{exc.cause}"
            fleet.drop(name, exc)
        except Failure as exc:
            out[name] = "failed"
            fleet.drop(name, exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "a host never got past a point"
    return out
