"""The steps of a release, below the tasks that run them in order.

Each step is a plain call that runs one script in the task's remote shell
(or probes over the connection), names its phase, and returns what it
found. ``Attempt`` is what a changing task has done so far: on any failure
it switches nginx back if the task had switched it, puts the idle colour
back as it was, and records the attempt with its phase (the task's
``session.locked()`` block then releases the lock).

A step run within an attempt names its phase once: ``attempt.step(name)``
(or ``phase(session, attempt, name)`` for a step also run outside one) is
both the phase a failure is recorded with and the timed line.
"""

import time
from dataclasses import dataclass, field

from ..commands import building, containers, switching
from ..commands.base import NGINX_TEST_FAILED, NGINX_WRITE_FAILED, TIMED_OUT, build_timeout
from ..commands.building import pre_switch_timeout
from ..commands.containers import logs_tail
from ..configuration.values import did_you_mean
from ..errors import FAILED, Failure
from ..model.compose_file import render_clojure_dockerfile, render_compose
from ..model.nginx_file import render_nginx
from ..model.pending import stops_old, with_promoted
from ..model.processes import (compose_processes, processes_of, read_procfile, release_command,
                               with_workers)
from ..model.state import bypass_headers, format_state, maintenance_of
from ..shipping.ship import deliver
from .fleet_switch import SOLO
from .handover import note_workers, settle
from .health import describe_probe, gate, verify_public
from .signatures import from_step, signers_text
from .step_results import last_line, show_progress, step_failed


@dataclass
class Attempt:
    """What a changing task has done so far: enough to undo it and record it."""

    session: object
    phase: str = "plan"
    fields: dict = field(default_factory=dict)  # for the history line
    live: str = None  # the colour nginx served when the task began
    rebuilt: str = None  # the colour this task recreated (the target)
    before: object = None  # that colour's container before, compose.Container
    switched: bool = False  # nginx was switched by this task
    processes: dict = field(default_factory=dict)  # the new release's Procfile

    def step(self, name):
        """Name the phase once: what a failure is recorded with, and the
        reporter's timed phase (use as ``with attempt.step("health") as ph:``)."""
        self.phase = name
        return self.session.reporter.phase(name)

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        """A task's block: on any exception (Ctrl-C included) undo and record
        it as ``fail`` does, then let it go on up (through the lock's block)."""
        if exc is not None:
            self.fail(exc)
        return False

    def fail(self, exc):
        """Undo what this task changed and record the failure; never raises."""
        session, rep = self.session, self.session.reporter
        try:
            if self.switched and self.live:
                rep.line(f"switching back to {self.live}")
                # The very file that was live (else one rendered for this nginx).
                switch_nginx(session, self.live, nginx_version=session.view.nginx_version,
                             text=session.view.nginx_text or None)
            if self.rebuilt and self.rebuilt != self.live:
                restore_idle(session, self.rebuilt, self.before,
                             show_logs=self.phase in ("health", "pre-switch"))
        except Exception as undo:  # already failing: report, keep the first error
            rep.line(f"could not undo everything: "
                     f"{undo.message if isinstance(undo, Failure) else undo}")
        cause = getattr(exc, "cause", None)  # a fleet's: the host that failed
        session.record_failure(exc, phase=self.phase,
                               fields={**self.fields, **({"caused_by": cause} if cause else {})})


def phase(session, attempt, name):
    """A step's timed line; within an attempt (``attempt`` not None) also the
    phase a failure is recorded with, so the step names it once."""
    return attempt.step(name) if attempt is not None else session.reporter.phase(name)

# --- the steps ---------------------------------------------------------------------


def bring_up(session, attempt, plan, made_here=None):
    """Steps 3-5: check out, build, start and health-check the plan's target
    colour; returns (commit, image id). The live colour is not touched.
    ``made_here``: the Artifacts that make the image on this machine (then
    shipped), or None: the host checks out and builds.

    Each step names its phase in ``attempt``; from the start on, the target
    is what Attempt.fail puts back as it was.
    """
    s, rep, view, target = session.settings, session.reporter, session.view, plan.target
    if made_here is not None:  # BUILD_ON=local or --image: made here, shipped
        commit = deliver(session, attempt, plan, made_here, on_line=show_progress(rep))
    else:
        commit = checkout(session, attempt, target, plan)
        attempt.fields["commit"] = commit

        build(session, attempt, target, commit, previous=view.record(target))

    attempt.rebuilt, attempt.before = target, view.containers[target]
    image = start(session, attempt, target)

    with attempt.step("health") as ph:
        ph.detail = gate(session.host, s, target, rep)
    return commit, image


def go_live(session, attempt, colour, state, read_meanwhile=None, unlock=False, fleet=SOLO):
    """Steps 7-9: switch nginx to ``colour``, verify through nginx, record ``state``.

    Each step names its phase in ``attempt``, so a failure is recorded with
    it, and the switch marks the attempt switched for Attempt.fail.
    ``read_meanwhile``: a step that only reads, run on the host while verify
    waits for nginx's reload (0.1 s or more); its result is returned.
    ``unlock``: the record is the task's last step: it drops the lock too
    (one round trip instead of two). ``fleet``: this host's handle in a run
    over several hosts (fleet_switch.py): all switch at once, and record only
    once every host verified (else this one switches back as on a failure).
    """
    fleet.switch_now()
    switch_nginx(session, colour, nginx_version=session.view.nginx_version, attempt=attempt)
    meanwhile = session.send(read_meanwhile) if read_meanwhile else None
    verify(session, colour, attempt=attempt)
    fleet.verified()

    with attempt.step("record") as ph:
        session.record(format_state(state), session.history_line("ok", **attempt.fields),
                       unlock=unlock)
        ph.detail = "state.json, history"
    return meanwhile.result() if meanwhile else None


def checkout(session, attempt, colour, plan):
    """Step 3: the colour's checkout at the requested commit; returns the commit."""
    s, rep = session.settings, session.reporter
    with attempt.step("git") as ph:
        result = session.run(building.checkout(s, colour, branch=plan.branch, ref=plan.ref,
                                               signers=signers_text(s)),
                             on_line=show_progress(rep), timeout=step_bound(s))
        if "signature" in result.values:  # ALLOWED_SIGNERS: refused before the checkout
            attempt.fields["signer"] = from_step(result, result.values.get("commit", "?"),
                                                 session.name)
        if result.code != 0 and result.values.get("branches"):  # a branch not there
            result.values["error"] += did_you_mean(
                plan.ref or plan.branch, result.values["branches"].split())
        if result.code != 0:
            raise step_failed(result, "git", "check GIT_REPO, the branch or ref, and that "
                              "the host can reach the repository (`fab check`)")
        commit = result.values["commit"]
        attempt.processes = read_procfile(result.blocks.get("procfile", ""), s,
                                          f"in the commit being released, read on {session.name}")
        ph.detail = f"{plan.ref or plan.branch} @ {commit[:12]} \"{result.values.get('subject', '')}\""
    return commit


def build(session, attempt, colour, commit, previous):
    """Step 4a: build the colour's image (the live colour is not touched)."""
    s, rep = session.settings, session.reporter
    with attempt.step("build") as ph:
        result = session.run(
            building.build(s, colour, commit=commit, compose_text=render_compose(
                               s, compose_processes(session.view.state, colour,
                                                    attempt.processes)),
                          dockerfile_text=render_clojure_dockerfile(s),
                          previous=(previous.get("commit"), previous.get("image"))),
            on_line=show_progress(rep), timeout=step_bound(s))
        if result.code != 0:
            raise step_failed(result, "build", "the Docker build failed: its output is "
                              "above (--verbose shows all)")
        ph.detail = building.image(s, commit[:12]) + (
            "; no Dockerfile in the repository: rendered the Clojure template "
            f"(FROM {s.clojure_base_image})" if "dockerfile" in result.values else "")


def start(session, attempt, colour):
    """Step 4b: recreate the colour's container; returns its image id."""
    s, rep = session.settings, session.reporter
    with attempt.step("start") as ph:
        result = session.run(building.start(s, colour), on_line=show_progress(rep),
                             timeout=step_bound(s))
        if result.code != 0:
            raise step_failed(result, "start", "the container did not start: see the "
                              "output above")
        ph.detail = f"{colour} on port {s.port_of(colour)}"
    return result.values.get("image", "")


def healthy_now(session, attempt, colour):
    """Before a switch to a colour already running: one good health answer."""
    s, name = session.settings, session.name
    with attempt.step("health") as ph:
        ok, text = describe_probe(session.host, s, colour)
        if not ok:
            raise Failure(f"{colour} is not healthy ({text}); nothing live changed",
                          f"see `fab -H {name} logs --colour {colour}`, or release again",
                          code=FAILED)
        ph.detail = f"{colour} answers {text}"


def pre_switch(session, attempt, colour):
    """Step 6: PRE_SWITCH_CMD in the new colour's container (none set: nothing)."""
    s, rep = session.settings, session.reporter
    command = release_command(attempt.processes or processes_of(session.view.state, colour), s)
    if not command:
        return
    with attempt.step("pre-switch") as ph:
        bound, started = pre_switch_timeout(s), time.monotonic()
        result = session.run(building.pre_switch(s, colour, command),
                             on_line=lambda _, line: rep.progress(line), timeout=bound + 60)
        # timeout(1)'s TERM, or its KILL 10 s later; a KILL before the bound
        # (the kernel's OOM killer, say) is the command's own failure.
        if (result.code == TIMED_OUT or result.code == 128 + 9
                and time.monotonic() - started >= bound):
            raise Failure(f"PRE_SWITCH_CMD did not finish within PRE_SWITCH_TIMEOUT="
                          f"{bound}s in {colour} and was stopped; "
                          "nothing live changed",
                          "its output is above; find what it waited for (a lock held by "
                          "the live app?), or raise PRE_SWITCH_TIMEOUT", code=FAILED)
        if result.code != 0:
            raise Failure(f"PRE_SWITCH_CMD failed in {colour} (exit {result.code}); "
                          "nothing live changed",
                          "its output is above; fix it and release again", code=FAILED)
        ph.detail = (f"PRE_SWITCH_CMD ran in {colour}" if s.pre_switch_cmd
                     else f"the Procfile's release ran in {colour}")


def switch_nginx(session, colour, nginx_version=None, canary=None, text=None, maintenance=None,
                 attempt=None):
    """Step 7: render, put in place keeping the old file, test, reload.

    ``canary=(colour, percent)`` keeps ``colour`` live but for that share of
    clients. ``text``: the file to put in place instead of a rendered one
    (switching back puts back the very file that was there). ``maintenance``:
    None keeps what state.json records (a page that is on stays on); `fab
    maintenance` passes its new record, or {} for off. ``attempt``: the task's,
    marked switched once nginx serves the new file.
    """
    s = session.settings
    if maintenance is None:
        maintenance = maintenance_of(session.view.state)
    with phase(session, attempt, "switch") as ph:
        text = text or render_nginx(s, colour, nginx_version=nginx_version, canary=canary,
                                    maintenance=maintenance or None)
        result = session.run(switching.switch(s, text))
        note_workers(session, result)
        output = last_line(result.blocks.get("output") or result.stderr)
        if result.code == NGINX_WRITE_FAILED:
            # Not nginx's verdict: the file never got there (permissions, sudo).
            sudo = "true" if s.use_sudo else "false"
            raise Failure(
                f"{result.values.get('error')} on {session.name} (USE_SUDO={sudo}): "
                f"{output}; the old nginx file is untouched, nothing live changed",
                "let the deploy user write NGINX_CONF_DIR, or set USE_SUDO=true and allow "
                "it `sudo -n` tee, mv and rm of that file (docs/security.md)",
                code=FAILED)
        if result.code == NGINX_TEST_FAILED and "keepalive_min_timeout" in output:
            raise Failure(
                f"the new nginx file failed `{s.nginx_test_cmd}`; the old one is back in "
                f"place: {output}",
                "keepalive_min_timeout needs nginx 1.27.4 or later: set "
                "KEEPALIVE_MIN_TIMEOUT=auto (it is written only where nginx supports it) "
                "or upgrade nginx; nothing live changed", code=FAILED)
        if result.code == NGINX_TEST_FAILED:
            raise Failure(
                f"the new nginx file failed `{s.nginx_test_cmd}`; the old one is back in "
                f"place: {output}",
                "nothing live changed; fix the setting nginx names above "
                "(an SSL file path?) and release again", code=FAILED)
        if result.code != 0:
            raise Failure(
                f"`{s.nginx_reload_cmd}` failed; the old nginx file is back in place: "
                f"{output}",
                "check that nginx runs and NGINX_RELOAD_CMD is right (`fab check`)",
                code=FAILED)
        ph.detail = (f"nginx -> {colour}, {canary[1]}% to {canary[0]} (tested, reloaded)"
                     if canary else f"nginx -> {colour} (tested, reloaded)")
    if attempt is not None:
        attempt.switched = True


def verify(session, colour, attempt=None):
    """Step 8: nginx answers from the new colour, and its old workers
    stopped accepting (handover.py)."""
    with phase(session, attempt, "verify") as ph:
        answered = verify_public(session.host, session.settings, colour, session.reporter,
                                 headers=bypass_headers(session.view.state))
        ph.detail = f"{answered}; {settle(session)}"


def built_fields(attempt):
    """What a summary says of an image made on this machine (BUILD_ON=local,
    --image): how it was built and shipped; nothing when the host built it."""
    return {k: attempt.fields[k] for k in ("build", "ship") if k in attempt.fields}


def stop_colour(session, colour):
    """--stop-old: stop the old colour once nginx's old workers are done with it."""
    with session.reporter.phase("stop") as ph:
        result = session.run(containers.stop(session.settings, colour))
        ph.detail = (f"stopped {colour}" if "stopped" in result.values
                     else f"could not stop {colour} (exit {result.code})")


def stop_old_colour(session, old, stop_old, watched):
    """--stop-old after the switch: stop ``old`` unless a watch could not call
    the new colour clean (``watched``: its figures, None without --watch).
    Returns whether it was stopped."""
    if not (stop_old and old):
        return False
    if not stops_old(watched):
        session.reporter.line(f"--stop-old: {old} keeps running: the watch did not end "
                              f"clean ({watched.get('verdict')}); stop it by hand once "
                              "you trust the new colour")
        return False
    stop_colour(session, old)
    return True


def restore_idle(session, colour, before, show_logs):
    """Put the idle colour back as it was before a failed release.

    It ran the release recorded in state.json: start that kept image again
    (no git, no build) and wait for its health, so `rollback` works at once.
    A colour that was not running before is stopped again.
    """
    s, rep, name = session.settings, session.reporter, session.name
    if show_logs:
        logs = session.run(logs_tail(s, colour)).blocks.get("logs", "").rstrip()
        if logs:
            rep.line(f"last log lines of {colour}:")
            for text in logs.splitlines():
                rep.progress(text)
    record = session.view.record(colour)
    if not (before and before.running and record.get("commit")):
        session.run(containers.stop(s, colour))
        rep.line(f"stopped {colour}, as it was before this release; its logs stay "
                 f"readable with `fab -H {name} logs --colour {colour}`")
        return
    with rep.phase("restore") as ph:
        commit = record["commit"]
        result = session.run(building.restore(s, colour, commit), timeout=step_bound(s))
        if result.code != 0:
            ph.detail = "FAILED"
            raise Failure(f"could not start {colour}'s previous release "
                          f"{commit[:12]} again: {result.values.get('error') or last_line(result.stdout)}",
                          f"`fab -H {name} status` shows both colours")
        ph.detail = gate(session.host, s, colour, rep)
        rep.line(f"{colour} runs its previous release {commit[:12]} again: "
                 f"`fab -H {name} rollback` still works")


# --- helpers -------------------------------------------------------------------------


def step_bound(settings):
    """The laptop's own bound on a step that the host bounds with BUILD_TIMEOUT."""
    return build_timeout(settings) + 30


def switch_everyone(session, attempt, state, to, nginx_version=None, fleet=SOLO):
    """Switch, verify and record `promoted` (with ``fleet`` as go_live); returns the new state."""
    fleet.switch_now()
    switch_nginx(session, to, nginx_version=nginx_version, attempt=attempt)
    verify(session, to, attempt=attempt)
    fleet.verified()
    new = with_workers(with_promoted(state, to), to)
    with attempt.step("record") as ph:
        session.record(format_state(new), session.history_line("promoted", **attempt.fields))
        ph.detail = "state.json, history"
    return new
