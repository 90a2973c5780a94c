"""The lock's owner record: parse it, say how old it is, say who holds it."""

import json
import os
import socket
import threading
import subprocess
import sys

import pytest

from tasks.errors import LOCKED
from tasks.model.lock_owner import (Holder, describe_who, format_age, identity, identity_soon,
                                    lock_held, owner_record, parse_holder, process_start)

NOW = 1_700_000_000


def record(**kw):
    base = {"pid": 4242, "command": "release --branch hotfix", "started_at": NOW - 90,
            "user": "ana", "machine": "laptop", "git": "Ana <ana@example.com>"}
    base.update(kw)
    return base


def gone_pid():
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- parse_holder -------------------------------------------------------------


def test_age_is_measured_by_the_host_clock():
    # The laptop's clock does not matter: started_at and now both come from the host.
    holder = parse_holder(json.dumps(record(started_at=NOW - 754)) + "\n", NOW)
    assert holder.age == 754
    assert holder.record["command"] == "release --branch hotfix"


def test_a_start_in_the_future_is_age_zero():
    assert parse_holder(json.dumps(record(started_at=NOW + 30)), NOW).age == 0


@pytest.mark.parametrize("text", ["", "   \n", "{trunc", "[1, 2]", '"text"', "null"])
def test_unreadable_owner_json_is_an_unknown_holder(text):
    holder = parse_holder(text, NOW)
    assert holder == Holder(record={}, age=0.0)
    assert holder.describe() == "an unknown holder (owner.json is missing or unreadable)"


def test_a_record_without_started_at_has_age_zero():
    assert parse_holder('{"pid": 1, "started_at": "yesterday"}', NOW).age == 0


# --- describe -----------------------------------------------------------------


def test_describe_names_who_what_and_how_long():
    holder = parse_holder(json.dumps(record()), NOW)
    assert holder.describe() == ("ana@laptop (Ana <ana@example.com>) pid 4242 running "
                                 "`release --branch hotfix` for 90s")


def test_describe_a_ci_job():
    who = {"user": "runner", "machine": "gh-7", "ci": "github acme/shop run 9 by bo"}
    assert describe_who(who) == "runner@gh-7 [github acme/shop run 9 by bo]"


def test_describe_a_partial_record():
    assert Holder({"command": "switch"}, 3).describe() == "?@? pid ? running `switch` for 3s"


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (59.9, "59s"), (119, "119s"), (120, "2m00s"), (754, "12m34s"),
    (7199, "119m59s"), (7200, "2h00m"), (90061, "25h01m"),
])
def test_format_age(seconds, text):
    assert format_age(seconds) == text


# --- local_and_dead -----------------------------------------------------------


def test_a_gone_process_on_this_machine_is_local_and_dead():
    holder = Holder(record(machine=socket.gethostname(), pid=gone_pid()), 5)
    assert holder.local_and_dead is True


def test_a_live_process_on_this_machine_is_not_dead():
    assert Holder(record(machine=socket.gethostname(), pid=os.getpid()), 5).local_and_dead is False


def test_a_reused_pid_is_told_apart_by_its_start_time():
    # The holder's pid now names another process (this one): its start time differs.
    me = os.getpid()
    start = process_start(me)
    assert isinstance(start, int)
    alive = Holder(record(machine=socket.gethostname(), pid=me, pid_start=start), 5)
    assert alive.local_and_alive is True and alive.local_and_dead is False
    reused = Holder(record(machine=socket.gethostname(), pid=me, pid_start=start - 1), 5)
    assert reused.local_and_dead is True and reused.local_and_alive is False


@pytest.mark.parametrize("pid_start", [None, "123", True, 1.5])
def test_a_strange_start_time_falls_back_to_the_pid(pid_start):
    holder = Holder(record(machine=socket.gethostname(), pid=os.getpid(), pid_start=pid_start), 5)
    assert holder.local_and_alive is True


def test_a_process_on_another_machine_is_never_judged_from_here():
    holder = Holder(record(machine=socket.gethostname() + "-elsewhere", pid=gone_pid()), 5)
    assert holder.local_and_dead is False


@pytest.mark.parametrize("pid", [None, 0, -1, "123", 12.0, 2 ** 31, 2 ** 70])
def test_a_strange_pid_is_not_judged_dead(pid):
    assert Holder(record(machine=socket.gethostname(), pid=pid), 5).local_and_dead is False


def test_owner_record_is_this_process():
    rec = owner_record("release", who={"user": "ana", "machine": "laptop"})
    assert rec["pid"] == os.getpid() and rec["command"] == "release"
    assert (rec["user"], rec["machine"]) == ("ana", "laptop")
    assert isinstance(rec["started_at"], int)
    assert rec["pid_start"] == process_start(os.getpid())
    assert parse_holder(json.dumps(rec), rec["started_at"] + 2).age == 2


# --- lock_held ----------------------------------------------------------------


def test_lock_held_is_exit_4_naming_the_holder_and_unlock():
    err = lock_held(parse_holder(json.dumps(record()), NOW), "prod")
    assert err.code == LOCKED == 4
    assert err.message == ("prod is locked by ana@laptop (Ana <ana@example.com>) pid 4242 "
                           "running `release --branch hotfix` for 90s")
    assert "--wait-lock" in err.hint and err.hint.endswith("fab -H prod unlock")


def test_lock_held_by_a_gone_local_process_says_so():
    holder = parse_holder(json.dumps(record(machine=socket.gethostname(), pid=gone_pid())), NOW)
    err = lock_held(holder, "prod")
    assert err.code == LOCKED
    assert "no longer runs on this machine" in err.hint
    assert "fab -H prod unlock" in err.hint


def test_lock_held_by_an_unknown_holder():
    err = lock_held(parse_holder("", NOW), "prod")
    assert err.code == LOCKED
    assert err.message == "prod is locked by an unknown holder (owner.json is missing or unreadable)"
    assert "fab -H prod unlock" in err.hint


# --- who runs this ------------------------------------------------------------------


def git_home(tmp_path, monkeypatch, config):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(config)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.chdir(tmp_path)
    for key in ("CI", "GITHUB_ACTIONS", "GITLAB_CI"):
        monkeypatch.delenv(key, raising=False)
    identity_soon.cache_clear()  # once per run: a new run here


def test_identity_soon_reads_git_when_asked_and_says_the_same_as_identity(tmp_path, monkeypatch):
    git_home(tmp_path, monkeypatch, "[user]\n\tname = Ana\n\temail = ana@example.com\n")
    who = identity_soon()  # git runs meanwhile
    first = who()
    assert first["git"] == "Ana <ana@example.com>" and who() is first
    assert first == identity()


def test_identity_soon_without_git_or_its_identity(tmp_path, monkeypatch):
    git_home(tmp_path, monkeypatch, "")
    assert "git" not in identity_soon()()
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    identity_soon.cache_clear()
    who = identity_soon()()
    assert "git" not in who and who["machine"] == socket.gethostname()


def test_the_hosts_of_a_run_share_one_git_answer(tmp_path, monkeypatch):
    git_home(tmp_path, monkeypatch, "[user]\n\tname = Ana\n\temail = ana@example.com\n")
    asked = [identity_soon() for _ in range(20)]  # twenty hosts' sessions
    assert all(who is asked[0] for who in asked)
    results = []
    threads = [threading.Thread(target=lambda w=w: results.append(w())) for w in asked]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and all(r is results[0] for r in results)
    assert results[0]["git"] == "Ana <ana@example.com>"
