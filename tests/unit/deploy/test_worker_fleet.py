"""The workers' hand-over over several hosts (deploy/workers.py with
deploy/fleet_switch.py): all or none. Each host's session answers the
hand-over step as the host would; threads stand in for the hosts."""

import threading

from support.fleet_threads import each_host
from support.local_step import M, read_step
from support.plain_settings import make_settings
from tasks.deploy.fleet_switch import SOLO, Fleet, FleetAbort
from tasks.deploy.workers import hand_over
from tasks.errors import Failure
from tasks.output import Reporter

BEFORE = {"live": "blue", "colours": {"blue": {"processes": {"worker": "w", "clock": "c"}}}}
AFTER = {"live": "green", "colours": {"blue": {"processes": {"worker": "w", "clock": "c"}},
                                      "green": {"processes": {"worker": "w", "clock": "c"}}}}


class Session:
    """Answers the hand-over step: ready (stop-first clock id ``c1``) or not."""

    def __init__(self, name, ready=True):
        self.name, self.ready, self.ran = name, ready, []
        self.settings = make_settings(APP_NAME="shop", WORKER_READY_SECONDS="3")
        self.reporter = Reporter(name)

    def run(self, script, **kw):
        self.ran.append(script)
        if "--force-recreate" not in script:
            return read_step("")
        if not self.ready:
            return read_step(f"{M} begin new\ngreen worker exited 0 /shop-green-worker-1 none\n"
                             f"{M} end new\n{M} ready failed", code=1)
        return read_step(f"{M} ready ok\n{M} first c1")


def run(sessions):
    """Every session's hand_over in its thread, as on_fleet runs the flows."""
    return each_host(Fleet(list(sessions)), {
        name: lambda handle, session=session: hand_over(
            session, AFTER, "green", "blue", before=BEFORE, fleet=handle)
        for name, session in sessions.items()})


def stops_blue(script):
    return "label=bluegreen.colour=blue" in script and "docker stop" in script \
        and "--force-recreate" not in script


def test_over_several_hosts_the_old_workers_stop_once_every_host_is_ready():
    sessions = {"a": Session("a"), "b": Session("b")}
    out = run(sessions)
    assert all(sorted(v) == ["clock", "worker"] for v in out.values()), out
    for s in sessions.values():
        handing, stop = s.ran[-2:]
        assert "--force-recreate" in handing and not stops_blue(handing)  # old ones kept
        assert stops_blue(stop)


def test_one_host_whose_workers_fail_puts_every_host_back():
    sessions = {"a": Session("a"), "b": Session("b", ready=False), "c": Session("c")}
    out = run(sessions)
    assert out == {"a": "abort:b", "b": "failed", "c": "abort:b"}
    for name in "ac":
        undo = sessions[name].ran[-1]
        assert not any(stops_blue(s) for s in sessions[name].ran)  # old workers never stopped
        assert "label=bluegreen.colour=green" in undo and "docker start c1" in undo
        assert '"live": "blue"' in undo  # state.json as before the task
    assert '"live": "blue"' in sessions["b"].ran[-1]


def test_a_host_without_workers_still_waits_and_goes_back_with_the_others():
    plain = Session("a")
    sessions = {"a": plain, "b": Session("b", ready=False)}
    fleet, out = Fleet(["a", "b"]), {}

    def a():
        try:
            hand_over(plain, {"live": "green", "colours": {}}, "green", "blue",
                      before={"live": "blue", "colours": {}}, fleet=fleet.handle("a"))
        except FleetAbort as exc:
            out["a"] = exc.cause
    t = threading.Thread(target=a)
    t.start()
    try:
        hand_over(sessions["b"], AFTER, "green", "blue", before=BEFORE, fleet=fleet.handle("b"))
    except Failure as exc:
        fleet.drop("b", exc)
    t.join(10)
    assert out == {"a": "b"}
    assert plain.ran and '"live": "blue"' in plain.ran[-1]  # no workers: state.json only


def test_one_host_hands_over_in_one_step():
    s = Session("a")
    assert sorted(hand_over(s, AFTER, "green", "blue", before=BEFORE, fleet=SOLO)) == \
        ["clock", "worker"]
    assert len(s.ran) == 1 and stops_blue(s.ran[0].split("--force-recreate")[1])
