"""The meeting points of a run over several hosts (deploy/fleet_switch.py),
with threads standing in for the hosts' flows."""

import threading

import pytest

from support.fleet_threads import each_host
from tasks.deploy.fleet_switch import Fleet
from tasks.errors import Failure


def run(fleet, flows):
    """flows: {host: fn(handle, log)}; every host in its thread, as on_fleet does.
    Returns {host: "ok" | "abort:CAUSE" | "failed" | "not started"} and the log."""
    log, lock = [], threading.Lock()

    def note(what):
        with lock:
            log.append(what)

    def body(flow):
        def ran(handle):
            flow(handle, note)
            return "ok"
        return ran

    return each_host(fleet, {name: body(flow) for name, flow in flows.items()}), log


def release(fail_at=None):
    def flow(h, note):
        h.locked()
        if fail_at == "prepare":
            raise Failure("health gate failed")
        note(f"{h.name} prepared")
        h.prepared()
        h.switch_now()
        note(f"{h.name} switched")
        if fail_at == "verify":
            raise Failure("verify failed")
        h.verified()
        note(f"{h.name} recorded")
    return flow


def test_every_host_switches_only_once_every_host_is_prepared():
    fleet = Fleet(["a", "b", "c"], in_order=True)
    out, log = run(fleet, {n: release() for n in "abc"})
    assert out == {"a": "ok", "b": "ok", "c": "ok"}
    assert log[:3] == ["a prepared", "b prepared", "c prepared"]  # in order
    assert all("prepared" in e for e in log[:3]) and all("recorded" in e for e in log[-3:])
    assert fleet.spread() is not None and fleet.spread() >= 0


def test_in_order_a_failed_preparation_leaves_the_rest_not_started():
    fleet = Fleet(["a", "b", "c"], in_order=True)
    out, log = run(fleet, {"a": release(), "b": release("prepare"), "c": release()})
    assert out == {"a": "abort:b", "b": "failed", "c": "not started"}
    assert not any("switched" in e for e in log)


def test_concurrently_a_failed_preparation_switches_nobody():
    fleet = Fleet(["a", "b", "c"])
    out, log = run(fleet, {"a": release(), "b": release(), "c": release("prepare")})
    assert out == {"a": "abort:c", "b": "abort:c", "c": "failed"}
    assert not any("switched" in e for e in log)


def test_a_failed_verify_makes_the_switched_hosts_give_up_before_recording():
    fleet = Fleet(["a", "b", "c"])
    out, log = run(fleet, {"a": release(), "b": release("verify"), "c": release()})
    assert out == {"a": "abort:b", "b": "failed", "c": "abort:b"}
    assert not any("recorded" in e for e in log)


def test_a_lock_that_fails_stops_every_host_before_any_change():
    def no_lock(h, note):
        raise Failure("lock held", code=4)
    fleet = Fleet(["a", "b"])
    out, log = run(fleet, {"a": release(), "b": no_lock})
    assert out == {"a": "abort:b", "b": "failed"} and log == []


def test_batches_one_at_a_time_and_a_late_failure_takes_back_the_first_batch():
    fleet = Fleet(["a", "b", "c"], batch=1)
    out, log = run(fleet, {"a": release(), "b": release(), "c": release("verify")})
    assert out == {"a": "abort:c", "b": "abort:c", "c": "failed"}
    assert log == ["a prepared", "a switched", "b prepared", "b switched",
                   "c prepared", "c switched"]


def test_batches_record_only_once_the_last_batch_verified():
    fleet = Fleet(["a", "b", "c"], batch=2)
    out, log = run(fleet, {n: release() for n in "abc"})
    assert set(out.values()) == {"ok"}
    assert log.index("c switched") < min(log.index(f"{n} recorded") for n in "abc")
    assert fleet.spread() is not None


def test_pre_switch_on_first_runs_on_the_first_host_only():
    class S:
        pre_switch_on = "first"
    fleet = Fleet(["a", "b"])
    assert [fleet.handle(n).runs_pre_switch(S) for n in "ab"] == [True, False]
    S.pre_switch_on = "every"
    assert [fleet.handle(n).runs_pre_switch(S) for n in "ab"] == [True, True]


@pytest.mark.parametrize("times,spread", [({"a": 1.0, "b": 1.25}, 0.25), ({"a": 1.0}, None)])
def test_the_spread(times, spread):
    fleet = Fleet(list(times))
    fleet.verified_at.update(times)
    assert fleet.spread() == spread


def test_batches_under_watch_each_batch_is_watched_before_the_next_starts():
    def watched(revert):
        def flow(h, note):
            def watch():
                note(f"{h.name} watched")
                if revert:
                    raise Failure("5xx: revert")
            h.watch_batch = watch
            release()(h, note)
        return flow
    fleet = Fleet(["a", "b"], batch=1)
    out, log = run(fleet, {"a": watched(False), "b": watched(False)})
    assert set(out.values()) == {"ok"}
    assert log.index("a watched") < log.index("b prepared")
    fleet = Fleet(["a", "b"], batch=1)
    out, log = run(fleet, {"a": watched(True), "b": watched(False)})
    assert out == {"a": "failed", "b": "not started"}
    assert "b prepared" not in log
