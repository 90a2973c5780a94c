"""commands/locking.py: the lock directory, its holder shell, take-over of a
lock whose holder is gone; run as steps of a local `sh -s`.
"""

import json
import os
import subprocess

import pytest

from support.local_step import run_step
from support.script_box import holder, lock_box, proc_start
from support.plain_settings import make_settings
from tasks.commands import locking
from tasks.commands.locking import adopt_lock


# --- the lock -----------------------------------------------------------------


def test_take_lock_and_unlock(box):
    deploy, s = lock_box(box)
    owner = json.dumps({"user": "o'brien", "command": "release $(x)", "pid": 7})
    r = box(locking.take_lock(s, owner))
    assert (r.code, r.values, r.stdout) == (0, {"lock": "taken"}, "")
    assert (deploy / ".lock" / "owner.json").read_text() == owner + "\n"
    assert box(locking.take_lock(s, "{}")).values == {"lock": "held"}
    assert (deploy / ".lock" / "owner.json").read_text() == owner + "\n"
    r = box(locking.unlock_lock(s))
    assert r.code == 0 and not (deploy / ".lock").exists()
    assert box(locking.unlock_lock(s)).code == 0  # unlocking twice is fine


def test_a_lock_whose_holder_shell_still_runs_is_held(box):
    deploy, s = lock_box(box)
    (deploy / ".lock").mkdir()
    alive = holder(os.getpid(), proc_start(os.getpid()))
    (deploy / ".lock" / "owner.json").write_text(alive + "\n")
    r = box(locking.take_lock(s, holder(1, 1)))
    assert r.values == {"lock": "held"} and "stale_owner" not in r.blocks
    assert (deploy / ".lock" / "owner.json").read_text() == alive + "\n"


@pytest.mark.parametrize("why", ["gone", "pid reused"])
def test_a_lock_whose_holder_shell_is_gone_is_taken_over(box, why):
    deploy, s = lock_box(box)
    (deploy / ".lock").mkdir()
    with open("/proc/sys/kernel/pid_max") as f:
        never = int(f.read()) + 1  # a pid no process can have
    stale = (holder(never, 12345) if why == "gone"
             else holder(os.getpid(), proc_start(os.getpid()) + 1))
    (deploy / ".lock" / "owner.json").write_text(stale + "\n")
    ours = holder(4242, 77)
    r = box(locking.take_lock(s, ours))
    assert r.code == 0, r.stderr
    assert r.values == {"lock": "taken-over"}
    assert r.blocks["stale_owner"] == stale + "\n"
    assert (deploy / ".lock" / "owner.json").read_text() == ours + "\n"
    assert sorted(p.name for p in deploy.iterdir()) == [".lock"]  # no .lock.stale left


def test_a_lock_without_a_holder_shell_is_never_taken_over(box):
    # Records written before host_pid existed, or a half-written owner.json.
    deploy, s = lock_box(box)
    (deploy / ".lock").mkdir()
    (deploy / ".lock" / "owner.json").write_text('{"pid": 1}\n')
    assert box(locking.take_lock(s, holder(1, 1))).values == {"lock": "held"}


def test_adopt_lock_renames_the_holder_only_while_the_lock_is_ours(tmp_path):
    s = make_settings(APP_NAME="shop", DEPLOY_DIR=str(tmp_path))
    (tmp_path / ".lock").mkdir()
    owner = tmp_path / ".lock" / "owner.json"
    owner.write_text(json.dumps({"host_pid": 41, "host_pid_start": 7}, sort_keys=True) + "\n")
    new = json.dumps({"host_pid": 42, "host_pid_start": 9}, sort_keys=True)
    run_step(adopt_lock(s, 41, new))
    assert json.loads(owner.read_text())["host_pid"] == 42
    # Another task's lock (taken over meanwhile) is left alone.
    other = json.dumps({"host_pid": 4100, "host_pid_start": 1}, sort_keys=True)
    owner.write_text(other + "\n")
    run_step(adopt_lock(s, 41, new))
    assert json.loads(owner.read_text())["host_pid"] == 4100


def test_a_holder_shell_left_by_its_sshd_session_is_stopped_and_its_lock_taken_over(box):
    # A cut connection ends sshd's session process at once; its shell goes
    # on with the step it was in (a build) under another parent.
    deploy, s = lock_box(box)
    (deploy / ".lock").mkdir()
    orphan = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        real_parent = os.getpid()
        record = json.loads(holder(orphan.pid, proc_start(orphan.pid)))
        record["host_ppid"] = real_parent + 1  # the sshd session it was started by, now gone
        (deploy / ".lock" / "owner.json").write_text(json.dumps(record) + "\n")
        r = box(locking.take_lock(s, holder(4242, 77)))
        assert r.values == {"lock": "taken-over", "stopped_orphan": str(orphan.pid)}, (r, open(f"/proc/{orphan.pid}/stat").read(), real_parent)
        assert orphan.wait(timeout=5) == -15  # SIGTERM, by its session
    finally:
        orphan.kill()
        orphan.wait()


def test_a_holder_shell_still_under_its_sshd_session_keeps_its_lock(box):
    deploy, s = lock_box(box)
    (deploy / ".lock").mkdir()
    record = json.loads(holder(os.getpid(), proc_start(os.getpid())))
    record["host_ppid"] = os.getppid()
    (deploy / ".lock" / "owner.json").write_text(json.dumps(record) + "\n")
    assert box(locking.take_lock(s, holder(1, 1))).values == {"lock": "held"}
