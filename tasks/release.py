"""The pipeline: release, switch, rollback and setup on one host.

Reads like the release steps in the README. Decisions come from plan.py,
scripts from scripts.py; this module runs them over one Host, in order, and
makes sure a failure changes nothing live, records itself in history and
drops the lock.
"""

import json as jsonlib
import time

from . import health, scripts
from .compose import render_clojure_dockerfile, render_compose
from .check import tool_problems, tools_script
from .errors import FAILED, Failure
from .facts import parse_view
from .lock import describe_who, identity, lock_held, owner_record
from .nginx import render_nginx
from .plan import plan_release, plan_switch, require_setup
from .state import (empty_state, format_history_line, format_state, history_entry,
                    with_live, with_release)


class Session:
    """One task's time on one host: connection, lock, what it saw, history."""

    def __init__(self, entry, settings, reporter, task, *, command=None,
                 accept_new_host_key=False, fabric_config=None):
        from .host import Host, Target

        self.name = entry.name
        self.settings = settings
        self.reporter = reporter
        self.task = task
        self.command = command or f"fab -H {entry.name} {task}"
        self.who = identity()
        self.started = time.monotonic()
        self.locked = False
        self.view = None
        self.step = None  # the step switch_verify_record is in
        self.continued = None  # what lock(then=...) ran after taking the lock
        self.switched = False  # nginx was switched by this task
        target = Target(name=entry.name, host=entry.host, user=entry.user,
                        port=entry.port, identity_file=entry.identity_file,
                        known_hosts=entry.known_hosts)
        self.host = Host(target, settings, accept_new_host_key=accept_new_host_key,
                         config=fabric_config)

    # --- connection and lock ---

    def connect(self):
        with self.reporter.phase("connect") as ph:
            self.host.connect()
            ph.detail = self.host.describe()

    def inspect(self, history_lines=0):
        result = self.host.run(scripts.inspect(self.settings, history_lines=history_lines))
        self.view = parse_view(result.stdout, self.settings)
        return self.view

    def lock(self, wait=0.0, force_unlock=False, then=None):
        """Take the lock and read the host under it (one round trip).

        With ``then(view)`` -> (script, on_line), the lock script waits once
        the lock is ours and runs that script in the same round trip (a
        release's build, planned from the view); self.continued is then
        (its RunResult, the exception ``then`` raised or None).
        """
        owner = jsonlib.dumps(owner_record(self.command, self.who), sort_keys=True)
        script = scripts.inspect(self.settings, owner_json=owner, history_lines=20,
                                 app_env=bool(self.settings.app_env_file), listening=True,
                                 then_from_stdin=then is not None)
        deadline = time.monotonic() + wait
        with self.reporter.phase("lock") as ph:
            while True:
                if then is None:
                    view = parse_view(self.host.run(script).stdout, self.settings)
                else:
                    view = self._lock_then(script, then, ph)
                if view.lock == "taken":
                    self.locked, self.view = True, view
                    ph.detail = "taken"
                    return view
                if not view.deploy_dir:
                    self.view = view
                    require_setup(view, self.name)
                if force_unlock and view.holder and view.holder.local_and_dead:
                    self.reporter.progress(f"removing the lock of a process that is gone: "
                                           f"{view.holder.describe()}")
                    self.host.run(scripts.unlock_lock(self.settings))
                    force_unlock = False
                    continue
                if time.monotonic() >= deadline:
                    ph.detail = "held"
                    raise lock_held(view.holder, self.name)
                if wait:
                    self.reporter.progress(f"waiting for the lock: {view.holder.describe()}")
                time.sleep(min(1.0, max(0.1, deadline - time.monotonic())))

    def _lock_then(self, script, then, phase):
        """One lock attempt whose script, once the lock is taken, runs then(view)'s."""
        lines, nxt, errors = [], [], []

        def on_line(stream, line):
            if nxt:
                nxt[0][1](stream, line)
            elif stream == "stdout":
                lines.append(line)

        def reply(stream, line):
            if stream != "stdout" or line.strip() != "::inspected":
                return None
            view = parse_view("\n".join(lines) + "\n", self.settings)
            if view.lock != "taken":
                return ""
            self.locked, self.view = True, view
            phase.detail = "taken"
            phase.end()  # the lock line comes before the next script's lines
            try:
                nxt.append(then(view))
            except BaseException as exc:  # the caller records it and drops the lock
                errors.append(exc)
                return ""
            return nxt[0][0]

        try:
            result = self.host.run(script, on_line=on_line, reply=reply)
        except BaseException as exc:
            if not self.locked:
                raise
            # Ctrl-C or a lost connection after the lock was taken: the
            # caller records the attempt and drops the lock, as for any step.
            self.continued = (None, exc)
            return self.view
        if self.locked:
            self.continued = (result, errors[0] if errors else None)
            return self.view
        return parse_view(result.stdout, self.settings)

    def unlock(self):
        if self.locked:
            self.host.run(scripts.unlock_lock(self.settings))
            self.locked = False

    def close(self):
        self.host.close()

    def ssh_stats(self):
        """SSH round trips so far, for --json summaries: remote commands,
        channels opened (health probes, verification) and uploads."""
        stats = self.host.stats
        return {"commands": int(stats.get("commands", 0)),
                "channels": int(stats.get("channels", 0)),
                "uploads": int(stats.get("uploads", 0))}

    # --- history ---

    def history_line(self, result, *, from_colour=None, to_colour=None, branch=None,
                     commit=None, phase=None, error=None, ref=None):
        entry = history_entry(
            host=self.name, app=self.settings.app_name, task=self.task,
            who=self.who, result=result, duration=time.monotonic() - self.started,
            from_colour=from_colour, to_colour=to_colour, branch=branch,
            commit=commit, phase=phase, error=error, ref=ref)
        return format_history_line(entry)

    def abandon(self, exc, *, phase, history_kwargs, stop_colour=None, log_colour=None):
        """Record a failed attempt, stop what it started, drop the lock.

        Best effort: when the connection itself is gone, say what is left.
        """
        if isinstance(exc, Failure):
            error = exc.message
        elif isinstance(exc, KeyboardInterrupt):
            error = "interrupted (Ctrl-C)"
        else:
            error = f"{type(exc).__name__}: {exc}"
        line = self.history_line("failed", phase=phase, error=error, **history_kwargs)
        try:
            result = self.host.run(scripts.finish(
                self.settings, history_line=line, unlock=self.locked,
                stop_colour=stop_colour, log_colour=log_colour))
        except Exception:
            if self.locked:
                self.reporter.line(
                    f"could not record the failure or release the lock on {self.name}: "
                    f"run `fab -H {self.name} unlock` once it is reachable")
            return
        self.locked = False
        _, blocks = scripts.parse_output(result.stdout)
        logs = blocks.get("logs", "").rstrip()
        if logs:
            self.reporter.line(f"last log lines of {log_colour}:")
            for text in logs.splitlines():
                self.reporter.progress(text)
        if stop_colour:
            self.reporter.line(f"stopped {stop_colour}; its logs stay readable with "
                               f"`fab -H {self.name} logs --colour {stop_colour}`")

    # --- steps shared by release, switch and rollback ---

    def upload_app_env(self):
        """APP_ENV_FILE to DEPLOY_DIR/app.env (0600, SFTP): only when it changed."""
        import hashlib

        path = self.settings.app_env_file
        if not path:
            return
        with open(path, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() == self.view.app_env_hash:
            return
        with self.reporter.phase("secrets") as ph:
            self.host.put_bytes(data, f"{self.settings.deploy_dir}/app.env", mode=0o600)
            ph.detail = "app.env uploaded (mode 0600)"

    def switch_nginx(self, colour):
        """Steps 7: render, put in place keeping the old file, test, reload."""
        with self.reporter.phase("switch") as ph:
            result = self.host.run(scripts.switch(self.settings,
                                                  render_nginx(self.settings, colour)))
            self.check_switched(result)
            ph.detail = f"nginx -> {colour} (tested, reloaded)"

    def check_switched(self, result):
        """Raise what went wrong when a switch script did not switch."""
        values, blocks = scripts.parse_output(result.stdout)
        error = values.get("error", "")
        if result.code == scripts.NGINX_TEST_FAILED and error.startswith("could not write"):
            # Not nginx's verdict: the file never got there (permissions, sudo).
            sudo = "true" if self.settings.use_sudo else "false"
            raise Failure(
                f"{error} on {self.name} (USE_SUDO={sudo}): "
                f"{last_line(result.stderr)}; the old nginx file is untouched, "
                "nothing live changed",
                "let the deploy user write NGINX_CONF_DIR, or set USE_SUDO=true and allow "
                "it `sudo -n` tee, mv and rm of that file (README: Security and failure model)",
                code=FAILED)
        if result.code == scripts.NGINX_TEST_FAILED:
            detail = (blocks.get("nginx_test") or error or "").strip()
            raise Failure(
                f"the new nginx file failed `{self.settings.nginx_test_cmd}`; the "
                f"old one is back in place: {last_line(detail)}",
                "nothing live changed; fix the setting nginx names above "
                "(an SSL file path?) and release again", code=FAILED)
        if result.code == scripts.NGINX_RELOAD_FAILED or "switched" not in values:
            detail = (blocks.get("nginx_reload") or result.stderr).strip()
            raise Failure(
                f"`{self.settings.nginx_reload_cmd}` failed; the old nginx file "
                f"is back in place: {last_line(detail)}",
                "check that nginx runs and NGINX_RELOAD_CMD is right (`fab check`)",
                code=FAILED)

    def switch_verify_record(self, colour, *, state_text, history, stop_colour=None):
        """Steps 7-9 in one round trip: switch nginx to ``colour``, verify
        through nginx while the script waits, then write state.json, append
        ``history()``, stop ``stop_colour`` once drained, drop the lock.

        Each remote command costs a round trip plus the host's login shell,
        so the switch and the record share one. self.step names the step
        under way and self.switched says whether nginx was switched, for the
        caller's clean-up. A failed switch or verification raises Failure
        with nothing recorded.
        """
        s, rep = self.settings, self.reporter
        then = scripts.finish(s, state_text=state_text, history_from_stdin=True,
                              stop_colour=stop_colour)
        script = scripts.switch(s, render_nginx(s, colour), then=then)
        marks, failed = {"switch": time.monotonic()}, []

        def reply(stream, line):
            if stream != "stdout" or line.strip() != "::switched":
                return None
            self.switched = True
            rep.record_phase("switch", time.monotonic() - marks["switch"],
                             f"nginx -> {colour} (tested, reloaded)")
            self.step = "verify"
            try:
                self.verify(colour)
            except Failure as exc:
                failed.append(exc)
                return "abandon\n"  # the script ends; the caller switches back
            self.step = "record"
            marks["record"] = time.monotonic()
            return "record\n" + history()

        self.step = "switch"
        result = self.host.run(script, reply=reply)
        if failed:
            raise failed[0]
        if not self.switched:
            rep.record_phase("switch", time.monotonic() - marks["switch"], "FAILED")
            self.check_switched(result)
        if result.code != 0 or "record" not in marks:
            rep.record_phase("record", time.monotonic() - marks.get("record", marks["switch"]),
                             "FAILED")
            # The caller switches nginx back (self.switched): state.json and
            # history still describe the colour that was live.
            values, _ = scripts.parse_output(result.stdout)
            why = values.get("error") or f"the record step failed (exit {result.code})"
            raise Failure(f"{why} on {self.name}; nothing was recorded",
                          f"free space or fix {s.deploy_dir}, then try again; "
                          f"`fab -H {self.name} status` shows any drift", code=FAILED)
        self.locked = False
        rep.record_phase("record", time.monotonic() - marks["record"],
                         "state.json, history" + (f", stopped {stop_colour}" if stop_colour else ""))

    def verify(self, colour):
        with self.reporter.phase("verify") as ph:
            ph.detail = health.verify_public(self.host, self.settings, colour, self.reporter)

    def switch_back(self, colour):
        """Undo a switch whose verification failed; never raises."""
        try:
            self.reporter.line(f"switching back to {colour}")
            self.switch_nginx(colour)
        except Exception as exc:  # already failing: report, keep the first error
            self.reporter.line(f"could not switch back to {colour}: {exc}")


def last_line(text):
    """The line of a tool's output that says what went wrong."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in lines:
        if "[emerg]" in line or "[alert]" in line or "[crit]" in line:
            return line
    return lines[-1] if lines else "(no output)"


def release(session, *, branch=None, ref=None, stop_old=False, wait_lock=0.0,
            force_unlock=False, first=False):
    """Steps 1-9 of a release. Returns the summary dict; raises Failure."""
    s, rep, name = session.settings, session.reporter, session.name
    hist, planned = {}, {}

    def plan_and_build(view):
        """Steps 2-3 under the lock: the plan, then the build script to run."""
        hist.update(from_colour=view.live)  # what a refused plan records
        plan = planned["plan"] = plan_release(view, s, name, branch=branch, ref=ref)
        hist.update(from_colour=plan.live, to_colour=plan.target, branch=plan.record_branch,
                    ref=plan.ref)
        if plan.drift:
            rep.line(f"warning: {plan.drift}; trusting nginx: {plan.live or 'nothing'} is live")
        session.upload_app_env()
        script, on_line, planned["finish"] = prepare_build(session, plan)
        return script, on_line

    if not first:
        session.connect()
        # The lock script runs the build in the same round trip.
        session.lock(wait=wait_lock, force_unlock=force_unlock, then=plan_and_build)
    view = session.view
    phase, target, live, started_target = "plan", None, None, False
    try:
        if session.continued is None:  # setup's first release: the lock is already held
            script, on_line = plan_and_build(view)
            ran, error = session.host.run(script, on_line=on_line), None
        else:
            ran, error = session.continued
        if error is not None:
            phase = "git" if "finish" in planned else "plan"
            raise error
        plan = planned["plan"]
        target, live = plan.target, plan.live

        phase = "git"
        result = planned["finish"](ran)
        commit, image = result["commit"], result["image"]
        hist["commit"] = commit
        started_target = True

        phase = "health"
        with rep.phase("health") as ph:
            ph.detail = health.gate(session.host, s, target, rep)

        if s.pre_switch_cmd:
            phase = "pre-switch"
            run_pre_switch(session, target)

        phase = "switch"
        state = with_release(view.state, target, branch=plan.record_branch, commit=commit,
                             image=image, who=describe_who(session.who), live=True,
                             ref=plan.ref)
        try:
            session.switch_verify_record(
                target, state_text=format_state(state),
                history=lambda: session.history_line("ok", **hist),
                stop_colour=live if stop_old and live else None)
        finally:
            phase = session.step
    except BaseException as exc:
        if session.switched and live:
            session.switch_back(live)
        stop = target if started_target and target != live else None
        session.abandon(exc, phase=phase, history_kwargs=hist, stop_colour=stop,
                        log_colour=stop if phase in ("health", "pre-switch") else None)
        raise
    total = time.monotonic() - session.started
    keep = f"{live} keeps running for `fab -H {name} rollback`" if live and not stop_old else ""
    rep.line(f"released {target}: {commit[:12]} ({plan.source}) in {total:.1f}s"
             + (f"; {keep}" if keep else ""))
    return {"host": name, "app": s.app_name, "task": session.task, "result": "ok",
            "live": target, "previous": live, "branch": plan.record_branch, "ref": plan.ref,
            "commit": commit,
            "image": image, "seconds": round(total, 3), "phases": rep.durations(),
            "ssh": session.ssh_stats()}


def prepare_build(session, plan):
    """Steps 3-4 (checkout, build, start): the script, the handler of its
    output (phases timed from its markers), and finish(result), which
    returns {"commit", "image"} or raises Failure. The script runs in the
    lock's round trip, or on its own when the lock is already held (setup).
    """
    s, rep = session.settings, session.reporter
    script = scripts.build(
        s, plan.target, branch=plan.branch, ref=plan.ref,
        compose_text=render_compose(s), dockerfile_text=render_clojure_dockerfile(s))
    markers = {}
    current = {"name": "git", "start": time.monotonic()}
    tail = []

    def close_phase(next_name):
        now = time.monotonic()
        detail = {
            "git": lambda: (f"{plan.ref or plan.branch} @ {markers.get('commit', '?')[:12]}"
                            f" \"{markers.get('subject', '')}\""),
            "build": lambda: f"bluegreen-{s.app_name}:{plan.target}",
            "start": lambda: f"{plan.target} on port {s.port_of(plan.target)}",
        }.get(current["name"], lambda: "")()
        rep.record_phase(current["name"], now - current["start"], detail)
        current.update(name=next_name, start=now)

    def on_line(stream, line):
        tail.append(line)
        del tail[:-30]
        if line.startswith("::"):
            key, _, value = line[2:].partition(" ")
            if key == "phase":
                if value != current["name"]:
                    close_phase(value)
            else:
                markers[key] = value
            return
        if rep.verbose or is_progress(line):
            rep.progress(line.strip())

    def finish(result):
        failed = result.code != 0 or "image" not in markers
        if failed:
            phase = current["name"]
            rep.record_phase(phase, time.monotonic() - current["start"], "FAILED")
            for text in tail[-15:]:
                if not text.startswith("::"):
                    rep.progress(text)
            why = markers.get("error") or f"the {phase} step failed (exit {result.code})"
            hints = {
                "git": "check GIT_REPO, the branch or ref, and that the host can reach the "
                       "repository (`fab check`)",
                "build": "the Docker build failed: its output is above (--verbose shows all)",
                "start": "the container did not start: see the output above",
            }
            raise Failure(f"{why}; nothing live changed", hints.get(phase), code=FAILED)
        close_phase("done")
        return {"commit": markers["commit"], "image": markers.get("image", "")}

    return script, on_line, finish


def is_progress(line):
    """Build lines worth showing without --verbose: steps and errors."""
    text = line.strip()
    return (text.startswith("#") and " [" in text and "internal]" not in text) or \
        text.startswith(("ERROR", "error", "Step ", "failed to")) or " Built" in text


def run_pre_switch(session, target):
    s, rep = session.settings, session.reporter
    with rep.phase("pre-switch") as ph:
        result = session.host.run(scripts.pre_switch(s, target),
                                  on_line=lambda _, line: rep.progress(line))
        if result.code != 0:
            raise Failure(f"PRE_SWITCH_CMD failed in {target} (exit {result.code}); "
                          "nothing live changed",
                          "its output is above; fix it and release again", code=FAILED)
        ph.detail = f"PRE_SWITCH_CMD ran in {target}"


def switch(session, to=None, *, wait_lock=0.0):
    """rollback (to=None: the other colour) and switch --to: steps 7-9 after
    one good health answer from the colour switched to."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    view = session.lock(wait=wait_lock)
    phase, hist, live = "plan", {}, view.live
    try:
        to = plan_switch(view, s, name, to)
        record = view.record(to)
        hist = {"from_colour": live, "to_colour": to, "branch": record.get("branch"),
                "commit": record.get("commit")}
        phase = "health"
        with rep.phase("health") as ph:
            ok, text = health.describe_probe(session.host, s, to)
            if not ok:
                raise Failure(f"{to} is not healthy ({text} on {s.health_path}); "
                              "nothing live changed",
                              f"see `fab -H {name} logs --colour {to}`, or release again",
                              code=FAILED)
            ph.detail = f"{to} answers {text}"
        phase = "switch"
        try:
            session.switch_verify_record(
                to, state_text=format_state(with_live(view.state, to)),
                history=lambda: session.history_line("ok", **hist))
        finally:
            phase = session.step
    except BaseException as exc:
        if session.switched and live:
            session.switch_back(live)
        session.abandon(exc, phase=phase, history_kwargs=hist)
        raise
    total = time.monotonic() - session.started
    rep.line(f"{session.task}: {to} is live ({(record.get('commit') or '?')[:12]} "
             f"{record.get('branch') or ''}) in {total:.1f}s; {live} keeps running")
    return {"host": name, "app": s.app_name, "task": session.task, "result": "ok",
            "live": to, "previous": live, "commit": record.get("commit"),
            "branch": record.get("branch"), "seconds": round(total, 3),
            "phases": rep.durations(), "ssh": session.ssh_stats()}


def setup(session):
    """Check the host, create what is missing, first release into blue."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    with rep.phase("tools") as ph:
        result = session.host.run(tools_script(s))
        values, _ = scripts.parse_output(result.stdout)
        problems = tool_problems(values)
        if problems:
            raise Failure(f"{name}: {'; '.join(problems)}",
                          "install them on the host (Debian: apt-get install git docker.io "
                          "nginx; Compose v2 as a docker CLI plugin), then run setup again",
                          code=FAILED)
        ph.detail = ", ".join(f"{t} {values[t]}" for t in ("git", "docker", "compose", "nginx"))
    with rep.phase("dirs") as ph:
        result = session.host.run(scripts.setup(s, format_state(empty_state(s.app_name))))
        values, _ = scripts.parse_output(result.stdout)
        created = [line[len("::created "):] for line in result.stdout.splitlines()
                   if line.startswith("::created ")]
        if result.code != 0:
            raise Failure(f"could not create {s.deploy_dir} on {name}: "
                          f"{values.get('error', result.stderr.strip())}",
                          "create it for the deploy user, or set DEPLOY_DIR", code=FAILED)
        ph.detail = ("created " + ", ".join(created)) if created else "all present"
    view = session.lock()
    if view.live:
        try:
            session.upload_app_env()
            if view.nginx is None:
                session.switch_nginx(view.live)
        finally:
            session.unlock()
        rep.line(f"already set up: {view.live} is live; created what was missing, "
                 "released nothing (use `fab release`)")
        return {"host": name, "app": s.app_name, "task": "setup", "result": "ok",
                "live": view.live, "released": False, "ssh": session.ssh_stats()}
    summary = release(session, first=True)
    summary["released"] = True
    return summary
