"""Several hosts at once (status, check, release --parallel) build their SSH
connections in threads: each must do so from a Fabric config of its own.

fabric.Connection() writes `inline_ssh_env` into the config it is given, and
Invoke answers every write by rebuilding that config from an empty dict. A
thread that read the shared config meanwhile found no 'gateway', 'user' or
'authentication' (issue 26). The window is short; here Invoke's merge is made
slower so the race shows every time, not once in a hundred runs.
"""

import os
import threading
import time

import fabric
import invoke.config
import pytest
import yaml

from tasks.cli.on_hosts import on_hosts

HOSTS = [f"web{n}" for n in range(10)]


@pytest.fixture
def slow_merge(monkeypatch):
    """Invoke's config merge, with a pause in each step: what a busy machine does."""
    original = invoke.config.merge_dicts

    def merge_dicts(base, updates):
        time.sleep(0.0005)
        return original(base, updates)

    monkeypatch.setattr(invoke.config, "merge_dicts", merge_dicts)


@pytest.fixture
def fleet(tmp_path, monkeypatch):
    """Ten hosts in a hosts.yml, and a Context with Fabric's config as `fab -H` gives it."""
    hosts_file = tmp_path / "hosts.yml"
    hosts_file.write_text(yaml.safe_dump(
        {"hosts": {name: {"host": "127.0.0.1", "port": 2200 + n}
                   for n, name in enumerate(HOSTS)}}))
    monkeypatch.chdir(tmp_path)  # no .env here
    for name in list(os.environ):
        if name.startswith("BLUEGREEN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BLUEGREEN_HOSTS_FILE", str(hosts_file))
    config = fabric.Config()
    config["bluegreen_hosts"] = list(HOSTS)
    return invoke.Context(config=config)


def build_connections(session, rounds=5):
    """What a session does first in its thread: build its fabric.Connection."""
    for _ in range(rounds):
        conn, _ = session.host._build()
    return conn.port


def test_shared_config_is_the_race(slow_merge):
    """The cause, shown without our code: threads building Connections from one config."""
    shared, errors = fabric.Config(), []
    barrier = threading.Barrier(8)

    def one():
        barrier.wait()
        for _ in range(5):
            try:
                fabric.Connection("h", config=shared, connect_kwargs={"timeout": 1})
            except AttributeError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors and "No attribute or config key found" in str(errors[0])


def test_each_host_builds_its_connection_from_a_config_of_its_own(fleet, slow_merge):
    results = on_hosts(fleet, "status", build_connections, parallel=True,
                           rolling=False, require_repo=False)
    assert results == {name: 2200 + n for n, name in enumerate(HOSTS)}


def test_the_task_config_is_not_written_by_the_threads(fleet):
    before = fleet.config._modifications.copy()
    on_hosts(fleet, "status", build_connections, parallel=True, rolling=False,
                 require_repo=False)
    assert fleet.config._modifications == before


def test_a_bug_in_one_host_thread_fails_the_run(fleet, capsys):
    """An unexpected exception in one host's thread is not lost: that host is
    listed as failed and the exception is raised once every host is done
    (a thread's exception would otherwise only be printed, and the run exit 0)."""
    def body(session):
        if session.name == "web3":
            raise ZeroDivisionError("division by zero")
        return "ok"

    with pytest.raises(ZeroDivisionError):
        on_hosts(fleet, "status", body, parallel=True, rolling=False,
                     require_repo=False)
    out = capsys.readouterr().out
    assert "status stopped on web3 by an unexpected ZeroDivisionError" in out
    assert "failed: web3;" in out
    assert "done: " + ", ".join(h for h in HOSTS if h != "web3") + ";" in out
