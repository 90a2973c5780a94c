"""One task's time on one host: the connection, the lock, what it saw, its record.

Every task that talks to a host holds a Session. The steps it runs go to
the one remote shell of its connection (``session.run``); a task that
changes the host runs them in one block under the lock (``with
session.locked() as view:``, as Kamal's ``with_lock``): the lock is taken
and the host read in one step, and released however the block ends. A
failed attempt is recorded in one place (``session.record_failure``); its
summary is built in one (``session.summary``).
"""

import hashlib
import os
import json as jsonlib
import time
from contextlib import contextmanager
from dataclasses import replace

from ..commands import host_files, host_reading
from ..commands.host_reading import parse_view
from ..commands.locking import adopt_lock, unlock_lock
from ..configuration.app_env import read_app_env_text, render_app_env
from ..errors import FAILED, Failure
from ..model.lock_owner import identity_soon, lock_held, owner_record
from ..model.plan import require_setup
from ..model.state import format_history_line, history_entry
from ..model.templating import preload
from ..output import masked
from .ssh import Host


class Session:
    def __init__(self, entry, settings, reporter, task, *, command=None,
                 accept_new_host_key=False, fabric_config=None, after_takeover=None):
        self.name = entry.name
        self.settings = settings
        self.reporter = reporter
        self.task = task
        self.command = command or f"fab -H {entry.name} {task}"
        self._who = identity_soon()  # git's answer is read once connected
        self.started = time.monotonic()
        self.unrecorded = None  # why a failed attempt could not be written to history
        self.holds_lock = False
        self.hosts_in_run = 1  # how many hosts this run of the task covers
        self.lock_pid = None  # the host pid of the shell that took the lock
        self.view = None
        # app.env's bytes for this run (cli/secrets.py: APP_ENV_FILE and
        # SECRETS_CMD, read once per run), kept in memory only.
        self.app_env = None
        # nginx's worker processes just before this task's last reload
        # (deploy/handover.py waits for them to stop accepting)
        self.nginx_workers = None
        # after_takeover(session, view): run once this task took over the lock
        # of a holder that is gone (deploy/recover.py puts back what it left).
        self.after_takeover = after_takeover
        self.host = Host(entry, settings, accept_new_host_key=accept_new_host_key,
                         config=fabric_config)

    @property
    def who(self):
        """Who runs this task (lock.identity)."""
        return self._who()

    # --- the connection ---

    def connect(self):
        with self.reporter.phase("connect") as ph:
            self.host.connect()
            ph.detail = self.host.describe()

    def run(self, script, **kwargs):
        """One step in the task's remote shell -> shell.StepResult."""
        return self._shell().run(script, **kwargs)

    def send(self, script):
        """One step that runs on the host while the task goes on -> shell.Pending
        (its .result() waits for it; so does the next step)."""
        return self._shell().send(script)

    def _shell(self):
        shell = self.host.shell
        if self.holds_lock and shell.pid != self.lock_pid:
            # A step stopped part-way ended the shell that holds the lock.
            old, self.lock_pid = self.lock_pid, shell.pid
            shell.run(adopt_lock(self.settings, old, self.owner_json(shell)))
        return shell

    def close(self):
        self.host.close()
        self._who()  # git's process is reaped, also when nothing asked who runs this

    def ssh_stats(self):
        """SSH round trips so far, for --json summaries: remote shells and
        steps, channels opened (health probes, verification) and uploads."""
        stats = self.host.stats
        return {key: int(stats.get(key, 0))
                for key in ("commands", "steps", "channels", "uploads")}

    # --- reading the host, and the lock ---

    def inspect(self, history_lines=0, workers=False):
        """Read the host without the lock (status, logs, unlock); ``workers``:
        the worker containers too."""
        self.view = parse_view(self.run(host_reading.inspect(
            self.settings, history_lines=history_lines, workers=workers)), self.settings)
        return self.view

    @contextmanager
    def locked(self, wait=0.0, force_unlock=False, ports=True):
        """A task's block under the lock, as Kamal's ``with_lock``: take it and
        read the host (``lock``, the view is what the block gets), run the
        block, release the lock however it ends: done, a Failure, Ctrl-C or
        any other exception (the exception then goes on up).

        Inside a block that holds the lock already (setup's first release)
        the block just runs: the outer one releases it. A lock that could not
        be taken is not released: it was never this task's.
        """
        if self.holds_lock:
            yield self.view
            return
        view = self.lock(wait=wait, force_unlock=force_unlock, ports=ports)
        try:
            yield view
        except BaseException:
            self.release_after_failure()
            raise
        self.unlock()

    def lock(self, wait=0.0, force_unlock=False, ports=True):
        """Take the lock and read the host under it, in one step (``locked``
        runs a block under it).

        A lock whose holder's shell on the host is gone (its connection
        ended: a killed fab, a lost laptop) is taken over by the step
        itself, said and recorded in history. A holder still connected is
        waited for up to ``wait`` seconds, then refused. ``ports``: also read
        which ports something listens on (a release's plan refuses a busy
        one); a switch or rollback decides nothing on ports.
        """
        shell = self.host.shell  # started: the host runs its login shell first
        # Every task that takes the lock renders the nginx file: Jinja2 and
        # the template load meanwhile, off the task's path.
        preload("nginx.conf.j2")
        self.lock_pid = shell.pid  # the shell's first answer
        script = host_reading.inspect(self.settings, owner_json=self.owner_json(shell),
                                 history_lines=20, app_env=self.settings.has_app_env,
                                 listening=ports)
        deadline = time.monotonic() + wait
        removed = None  # the holder whose lock --force-unlock removed
        with self.reporter.phase("lock") as ph:
            while True:
                view = self.view = parse_view(self.run(script), self.settings)
                if view.lock == "taken":
                    self.holds_lock = True
                    ph.detail = "taken"
                    break
                if not view.deploy_dir:
                    require_setup(view, self.name)
                if force_unlock and view.holder and view.holder.local_and_dead:
                    # Said now; recorded once the lock is ours (took_over).
                    self.reporter.line(f"--force-unlock: removing the lock of a process that "
                                       f"is gone: {view.holder.describe()}")
                    self.run(unlock_lock(self.settings))
                    removed, force_unlock = view.holder, False
                    continue
                if time.monotonic() >= deadline:
                    ph.detail = "held"
                    raise lock_held(view.holder, self.name)
                if wait:
                    self.reporter.progress(f"waiting for the lock: {view.holder.describe()}")
                time.sleep(min(1.0, max(0.1, deadline - time.monotonic())))
            if view.lock_taken_over is not None:
                ph.detail = "taken over from a holder that is gone"
                self.took_over(view.lock_taken_over)
            elif removed is not None:
                ph.detail = "taken after --force-unlock"
                self.took_over(removed, forced=True)
            else:
                return view
        # The dead holder may have left an idle colour half-released.
        if self.after_takeover is not None:
            self.after_takeover(self, view)
            # What the colours run now (the recovery may have restarted one):
            # the task decides and reports on what runs, not on what ran.
            # Its ports too: a colour the recovery stopped no longer holds one;
            # and state.json, which it may have brought to what nginx serves.
            fresh = parse_view(self.run(host_reading.inspect(self.settings, listening=ports)),
                               self.settings)
            view = self.view = replace(view, containers=fresh.containers,
                                       state=fresh.state or view.state,
                                       listening=fresh.listening if ports else view.listening,
                                       workers=fresh.workers)
        return view

    def owner_json(self, shell):
        """The lock's owner record: who runs what, and the shell that holds it."""
        record = owner_record(self.command, self.who)
        record.update(host_pid=shell.pid, host_pid_start=shell.started)
        if getattr(shell, "parent", None):  # sshd's session process (take_lock)
            record["host_ppid"] = shell.parent
        return jsonlib.dumps(record, sort_keys=True)

    def took_over(self, holder, forced=False):
        """Say and record (history, task `lock`) that this task took the lock of
        a holder that is gone: by itself, or removed by --force-unlock."""
        if forced:
            result, how = "force-unlocked", "removed by --force-unlock of"
        else:
            self.reporter.line(f"took over the lock of {holder.describe()}: its connection "
                               f"to {self.name} is gone")
            result, how = "taken-over", "taken over by"
        line = format_history_line(history_entry(
            host=self.name, app=self.settings.app_name, task="lock", who=self.who,
            result=result, duration=0.0,
            error=f"stale lock of {holder.describe()} {how} `{self.command}`"))
        self.run(host_files.record(self.settings, history_line=line))

    def unlock(self):
        if self.holds_lock:
            self.run(unlock_lock(self.settings))
            self.holds_lock = False

    def release_after_failure(self):
        """Release the lock on the way out of a failed block; never raises.

        When the connection itself is gone, say what is left to do.
        """
        try:
            self.unlock()
        except Exception:
            if self.holds_lock:
                self.reporter.line(
                    f"could not record the failure or release the lock on {self.name}: "
                    f"the next task takes the lock over once this connection is gone, "
                    f"or run `fab -H {self.name} unlock`")
                return
        if self.unrecorded:
            self.reporter.line(
                f"could not record the failure in {self.name}'s history "
                f"({self.unrecorded}); the lock is released")

    # --- the record ---

    def summary(self, result, *, timed=True, **fields):
        """What a task reports at its end on this host: the dict --json prints
        (docs/ci.md), ``fields`` in between; ``timed``: with its seconds and
        phases. Built once the lock is released, so its figures count that."""
        summary = {"host": self.name, "app": self.settings.app_name, "task": self.task,
                   "result": result, **fields}
        if timed:
            summary.update(seconds=round(time.monotonic() - self.started, 3),
                           phases=self.reporter.durations())
        summary["ssh"] = self.ssh_stats()
        return summary

    def history_line(self, result, *, from_colour=None, to_colour=None, branch=None,
                     commit=None, phase=None, error=None, ref=None, **extra):
        entry = history_entry(
            host=self.name, app=self.settings.app_name, task=self.task,
            who=self.who, result=result, duration=time.monotonic() - self.started,
            from_colour=from_colour, to_colour=to_colour, branch=branch,
            commit=commit, phase=phase, error=error, ref=ref)
        entry.update({k: v for k, v in extra.items() if v is not None})
        return masked(format_history_line(entry))  # no secret is ever recorded

    def record(self, state_text, history_line, unlock=False):
        """Write state.json and the history line (one step); Failure if state.json
        cannot be written, with nothing recorded. ``unlock``: the task's last
        step, so the same step drops the lock once both are written."""
        result = self.run(host_files.record(self.settings, state_text=state_text,
                                         history_line=history_line,
                                         unlock=unlock and self.holds_lock))
        if result.code != 0:
            why = result.values.get("error") or f"the record step failed (exit {result.code})"
            raise Failure(f"{why} on {self.name}; nothing was recorded",
                          f"free space or fix {self.settings.deploy_dir}, then try again; "
                          f"`fab -H {self.name} status` shows any drift", code=FAILED)
        if unlock:
            self.holds_lock = False

    def record_failure(self, exc, *, phase, fields):
        """Append the failed attempt to history; never raises. (The task's
        ``locked`` block releases the lock next, or says why it could not.)"""
        if isinstance(exc, Failure):
            error = exc.message
        elif isinstance(exc, KeyboardInterrupt):
            error = "interrupted (Ctrl-C)"
        else:
            error = f"{type(exc).__name__}: {exc}"
        try:
            result = self.run(host_files.record(self.settings, history_line=self.history_line(
                "failed", phase=phase, error=error, **fields)))
            if result.code != 0:
                self.unrecorded = result.values.get("error") or f"exit {result.code}"
        except Exception as exc:  # said when the lock is released (or cannot be)
            self.unrecorded = exc.message if isinstance(exc, Failure) else str(exc) or repr(exc)

    # --- steps shared by the tasks ---

    def upload_app_env(self):
        """The run's app.env to DEPLOY_DIR/app.env (0600, SFTP, from memory): only
        when it changed (the host's sha256 of it differs)."""
        if not self.settings.has_app_env:
            return
        data = self.app_env
        if data is None:  # a task run without cli/on_hosts.py (tests, tools)
            data = app_env_bytes(self.settings)
        if hashlib.sha256(data).hexdigest() == self.view.app_env_hash:
            return
        with self.reporter.phase("secrets") as ph:
            self.host.put_bytes(data, f"{self.settings.deploy_dir}/app.env", mode=0o600)
            ph.detail = "app.env uploaded (mode 0600)"


def app_env_bytes(settings, environ=None):
    """app.env from APP_ENV_FILE alone (SECRETS_CMD runs in cli/secrets.py)."""
    if not settings.app_env_file:
        return b""
    with open(settings.app_env_file, encoding="utf-8") as f:
        text = f.read()
    return render_app_env(read_app_env_text(text, settings.app_env_file,
                                            os.environ if environ is None else environ))
