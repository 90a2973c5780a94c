"""`fab status` over hosts that serve different commits (flows/status.py)."""

from tasks.flows.status import mixed_line, note_mixed


def result(commit, live="blue"):
    return {"set_up": True, "live": live, "colours": {live: {"commit": commit}}}


def test_hosts_on_different_commits_are_a_mixed_fleet():
    results = {"web1": result("a" * 40), "web2": result("b" * 40, live="green")}
    note_mixed(results)
    assert all(r["fleet"] == "mixed" for r in results.values())
    rows = [(name, r, None) for name, r in results.items()]
    assert mixed_line(rows) == [f"mixed: the hosts serve different commits: web1 serves "
                                f"{'a' * 12}, web2 serves {'b' * 12}"]


def test_one_commit_everywhere_is_not_mixed():
    results = {"web1": result("a" * 40), "web2": result("a" * 40, live="green")}
    note_mixed(results)
    assert not any("fleet" in r for r in results.values())
    assert mixed_line([(n, r, None) for n, r in results.items()]) == []
