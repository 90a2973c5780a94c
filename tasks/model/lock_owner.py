"""The host's lock (DEPLOY_DIR/.lock, made with mkdir) and who is deploying.

The lock itself is taken and dropped by remote scripts (tasks/commands/);
this module makes the owner record, reads it back and says how old it is.
"""

import functools
import getpass
import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass

from ..errors import LOCKED, Failure


def identity():
    """Who runs this: local user and machine, git identity, CI job if any."""
    return identity_soon()()


@functools.lru_cache(maxsize=1)
def identity_soon():
    """identity(), with `git config` started now and read when first asked:
    a task asks once it has connected, by when git has long answered, so
    its ~5 ms (a process) are no longer on the task's way. Once per run:
    the hosts of a run share one answer (twenty hosts, one `git config`).
    Returns a function that returns the dict (the same one each time)."""
    try:
        git = subprocess.Popen(GIT_IDENTITY, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except (OSError, subprocess.SubprocessError):
        git = None
    known, asking = [], threading.Lock()  # hosts' threads ask at once

    def who():
        with asking:
            if not known:
                known.append(_who(_git_identity(git)))
        return known[0]

    return who


GIT_IDENTITY = ["git", "config", "--get-regexp", r"^user\.(name|email)$"]


def _who(git):
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some CI containers
        user = os.environ.get("USER") or "unknown"
    who = {"user": user, "machine": socket.gethostname()}
    if git:
        who["git"] = git
    ci = _ci_job()
    if ci:
        who["ci"] = ci
    return who


def _git_identity(git):
    """The user.name <user.email> that `git config` (a started Popen) printed."""
    if git is None:
        return None
    try:
        out, _ = git.communicate(timeout=2)
    except (OSError, subprocess.SubprocessError):
        git.kill()
        git.communicate()
        return None
    values = dict(line.split(" ", 1) for line in (out or "").splitlines() if " " in line)
    name, email = values.get("user.name"), values.get("user.email")
    if name and email:
        return f"{name} <{email}>"
    return name or email


def _ci_job():
    env = os.environ
    if env.get("GITHUB_ACTIONS") == "true":
        return (f"github {env.get('GITHUB_REPOSITORY', '')} run "
                f"{env.get('GITHUB_RUN_ID', '')} by {env.get('GITHUB_ACTOR', '')}").strip()
    if env.get("GITLAB_CI") == "true":
        return (f"gitlab {env.get('CI_PROJECT_PATH', '')} job {env.get('CI_JOB_ID', '')} "
                f"by {env.get('GITLAB_USER_LOGIN', '')}").strip()
    if env.get("CI"):
        return "ci"
    return None


def describe_who(who):
    text = f"{who.get('user', '?')}@{who.get('machine', '?')}"
    if who.get("git"):
        text += f" ({who['git']})"
    if who.get("ci"):
        text += f" [{who['ci']}]"
    return text


def process_start(pid):
    """When process `pid` started (clock ticks since boot, /proc/PID/stat
    field 22), or None where this cannot be read (no /proc, process gone).
    With the pid it names one process: a pid the kernel hands out again
    later comes with another start time."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError, OverflowError):
        return None


def owner_record(command, who=None):
    """The owner.json a task writes when it takes the lock: `pid` and
    `pid_start` (see process_start) tell the holding process apart from a
    later one that got the same pid."""
    who = who or identity()
    record = {"pid": os.getpid(), "command": command, "started_at": int(time.time()), **who}
    start = process_start(os.getpid())
    if start is not None:
        record["pid_start"] = start
    return record


@dataclass(frozen=True)
class Holder:
    record: dict
    age: float  # seconds, by the host's clock

    @property
    def local_and_dead(self):
        """True when the holder ran on this machine and its process is gone."""
        return self._local_process() == "gone"

    @property
    def local_and_alive(self):
        """True when the holder ran on this machine and its process still runs."""
        return self._local_process() == "alive"

    def _local_process(self):
        """'alive', 'gone', or None when this machine cannot tell (another
        machine, no pid)."""
        if self.record.get("machine") != socket.gethostname():
            return None
        pid = self.record.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "gone"
        except PermissionError:  # another user's process: it exists
            return "alive"
        except OverflowError:
            # A pid no kernel hands out (owner.json edited by hand);
            # `fab status` reads this property and must not crash on it.
            return None
        recorded = self.record.get("pid_start")
        if isinstance(recorded, int) and not isinstance(recorded, bool):
            now = process_start(pid)
            if now is not None and now != recorded:
                return "gone"  # the holder ended; its pid now names another process
        return "alive"

    def describe(self):
        r = self.record
        if not r:
            return "an unknown holder (owner.json is missing or unreadable)"
        return (f"{describe_who(r)} pid {r.get('pid', '?')} running "
                f"`{r.get('command', '?')}` for {format_age(self.age)}")


def parse_holder(text, now):
    """The lock's holder from owner.json text and the host's clock."""
    try:
        record = json.loads(text) if text and text.strip() else {}
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}
    started = record.get("started_at")
    age = max(0.0, now - started) if isinstance(started, (int, float)) else 0.0
    return Holder(record=record, age=age)


def format_age(seconds):
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def lock_held(holder, host_name):
    hint = "wait for it, retry with --wait-lock SECONDS, or if that process is gone: "
    hint += f"fab -H {host_name} unlock"
    if holder.local_and_dead:
        hint = (f"that process no longer runs on this machine: fab -H {host_name} unlock "
                "(or release --force-unlock)")
    return Failure(f"{host_name} is locked by {holder.describe()}", hint, code=LOCKED)
