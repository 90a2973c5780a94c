"""What a run over several hosts prints at its end (cli/on_fleet.py)."""

from tasks.cli.on_fleet import fleet_failure, fleet_row, format_fleet
from tasks.deploy.fleet_switch import FleetAbort
from tasks.errors import Failure


class View:
    live = "blue"

    def record(self, colour):
        return {"commit": "2415bd90c57f0000"}


def test_the_table_and_the_spread():
    rows = [fleet_row("web1", {"live": "green", "commit": "ecb2d9095c2b1111", "result": "ok"},
                      None, None),
            fleet_row("web10", {"live": "green", "commit": "ecb2d9095c2b1111", "result": "ok"},
                      None, None)]
    assert format_fleet(rows, 0.214).splitlines() == [
        "host   colour  commit        result",
        "web1   green   ecb2d9095c2b  ok",
        "web10  green   ecb2d9095c2b  ok",
        "switch spread 0.21 s"]


def test_rows_of_hosts_that_failed_were_put_back_or_never_started():
    abort = FleetAbort("web1 gives up", "hint", cause="web2")
    assert fleet_row("web1", None, abort, View()) == ("web1", "blue", "2415bd90c57f", "put back")
    assert fleet_row("web2", None, Failure("x", "y"), View())[3] == "FAILED"
    assert fleet_row("web3", None, None, View())[3] == "not started"
    assert fleet_row("web4", None, Failure("x", "y", code=3), None) == (
        "web4", "-", "-", "FAILED")


def test_the_failure_names_the_hosts_and_keeps_the_failed_hosts_code():
    failures = {"web1": FleetAbort("a", "b", cause="web2"), "web2": Failure("held", "h", code=4)}
    exc = fleet_failure("release", ["web1", "web2", "web3"], failures, json_mode=False)
    assert exc.code == 4
    assert exc.message == ("release failed on web2; no host changed its live colour; "
                           "put back: web1; not started: web3")
