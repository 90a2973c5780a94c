"""`fab status` over several hosts: one table, a row per host and colour,
with what needs attention under it. Data in, text out."""

from tasks.errors import FAILED, NO_CONNECTION, Failure
from tasks.flows.status import format_status, format_statuses


def colour(role, commit=None, branch="main", container="running", health="HTTP 200",
           failure=None):
    return {"role": role, "port": 8081, "branch": branch if commit else None,
            "commit": commit, "image": None,
            "deployed_at": "2024-05-01T10:00:00Z" if commit else None,
            "deployed_by": "ana@laptop (pid 4242)" if commit else None,
            "container": container if commit else "no container",
            "healthy": bool(commit), "health": health if commit else "not running",
            "last_failure": failure}


def result(host, app="shop", live="blue", lock=None, **colours):
    cols = {"blue": colour("live" if live == "blue" else "idle", "a" * 40),
            "green": colour("live" if live == "green" else "idle", "b" * 40)}
    cols.update(colours)
    return {"host": host, "app": app, "deploy_dir": f"/srv/{app}", "set_up": True,
            "live": live, "drift": None, "state_error": None,
            "nginx": {"file": f"/etc/nginx/conf.d/{app}.conf", "port": 8081,
                      "colour": live, "header": live},
            "lock": lock, "colours": cols}


def cells(text):
    return [line.split() for line in text.splitlines()]


def test_one_host_keeps_its_detailed_view():
    r = result("web1")
    assert format_statuses([("web1", r, None)]) == format_status(r)


def test_one_host_that_failed_prints_nothing_its_error_says_it():
    assert format_statuses([("web1", None, Failure("no route", None, NO_CONNECTION))]) == ""


def test_several_hosts_are_one_table_in_host_order():
    text = format_statuses([("web1", result("web1"), None),
                            ("web2", result("web2", app="shop", live="green"), None)])
    lines = text.splitlines()
    assert cells(text)[0][:4] == ["host", "app", "colour", "role"]
    assert [row[:4] for row in cells(text)[1:5]] == [
        ["web1", "shop", "blue", "live"], ["web1", "shop", "green", "idle"],
        ["web2", "shop", "blue", "idle"], ["web2", "shop", "green", "live"]]
    assert cells(text)[1][4:6] == ["main", "a" * 12]
    # columns line up: every row starts its commit where the header does
    at = lines[0].index("commit")
    assert all(line[at:at + 12] in ("a" * 12, "b" * 12) for line in lines[1:5])
    assert lines[-1] == "locks: free on every host"
    assert "ana@laptop" in text and "(pid" not in text


def test_unreachable_failed_and_not_set_up_hosts_get_a_row_and_a_note():
    fresh = dict(result("web3"), set_up=False)
    text = format_statuses([
        ("web1", result("web1"), None),
        ("web2", None, Failure("could not connect to web2: connection refused", "x",
                               NO_CONNECTION)),
        ("web3", fresh, None),
        ("web4", None, Failure("bad DEPLOY_DIR", None, FAILED)),
    ])
    rows = {row[0]: row for row in cells(text)[1:] if row and row[0].startswith("web")
            and not row[0].endswith(":")}
    assert rows["web2"][3] == "unreachable"
    assert rows["web3"][3:5] == ["not", "set"]
    assert rows["web4"][3] == "failed"
    assert "web2: could not connect to web2: connection refused" in text
    assert "web3: /srv/shop is missing: run `fab -H web3 setup`" in text
    assert "web4: bad DEPLOY_DIR" in text
    assert text.splitlines()[-1] == "locks: free on every host that answered"


def test_notes_name_their_host():
    failure = {"time": "2024-05-02T09:00:00Z", "phase": "health", "commit": "c" * 40,
               "error": "green is not healthy"}
    lock = {"holder": "bo@ci (pid 7) running `fab release` for 12s", "age": 12,
            "command": "fab release", "gone": False}
    web2 = result("web2", lock=lock,
                  green=colour("failed", "b" * 40, container="stopped (exit code 3)",
                               failure=failure))
    web2["drift"] = "state.json says green is live but nginx serves blue"
    text = format_statuses([("web1", result("web1"), None), ("web2", web2, None)])
    assert ("web2: green: last release failed at 2024-05-02T09:00:00Z in health: "
            "green is not healthy") in text
    assert "web2: lock: held by bo@ci (pid 7) running `fab release` for 12s" in text
    assert "web2: drift: state.json says green is live but nginx serves blue" in text
    assert "locks: free on every host" not in text
    assert [row[3] for row in cells(text)[1:5]] == ["live", "idle", "live", "failed"]
