"""Random sequences of the real tasks against the real loopback host (issue 26, part 8).

A Hypothesis RuleBasedStateMachine drives `fab release` (plain, --branch,
--ref, --no-switch, --canary P, --watch S with a good or a 5xx build, with
or without --stop-old and traffic), `promote`, `rollback`, `rollback --to`,
`switch --to`, a `fab release`, `rollback` or `promote` killed (SIGKILL)
right after a random one of its phase lines under a light load, a build
that crashes at start, `release --ref` of the live commit (with and without
--force), `repair`, `remove --yes` followed by `setup`, and `exec`. After
every step the host must match a model of what the docs promise:

- a killed task: the public port served every request and serves one of the
  two legal outcomes (what was live, or the task's colour with its build;
  the nginx file decides which); the next task takes the dead holder's lock
  over, and from then on every promise below holds again;
- exec: the live colour's build answers, with the command's exit code, no
  one-off container is left, and history records it;

- the public port serves the build the model says (a canary: each client
  gets one of the two colours' builds);
- a build its watch reverted is never live again unless released anew;
- the idle colour runs its recorded build, healthy, unless a --stop-old
  (with no watch, or after a clean one) stopped it;
- each colour's recorded branch is that of its last release that went live;
- history names exactly what each step deployed;
- `status` shows each colour's role, and the commit its container runs;
  `releases` lists what the colours run, never a crashed or reverted build;
- workers (a queue worker and a stop-first `clock`, from the sample's
  Procfile) run in exactly one colour, the one serving everyone; no job of a
  steady stream is done twice, the clock never runs twice at once, and at
  the end of a sequence every job was done exactly once (a job ledger);
- hooks: every run of a task with hooks ran its `pre-` hook, then (unless
  killed) its `post-` hook with the run's exit code, then `failed` exactly
  when the run failed (exit 1 or 3; never after exec); a `post-` hook of a
  run that succeeded names the colour serving everyone as BLUEGREEN_COLOUR.

CI runs the sequences that broke before (fixed) and one seeded random walk of
six steps over the same rules. A long run:

    BLUEGREEN_SEQUENCES=50 .venv/bin/python -m pytest tests/e2e/test_sequence_machine.py -m e2e -s

(random sequences; a failure prints the steps, shrunk, and a
@reproduce_failure blob). docs/sequences.md says more.
"""

import functools
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess

from hypothesis import HealthCheck, Phase, Verbosity, settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition, rule,
                                 run_state_machine_as_test)

import loadgen
import loophost as lh
from hostile import Background
from released import FAB_TIMEOUT, no_traceback, wait_until
from support.project import Project
from workerkit import FILES, PROCFILE, JobStream, assert_one_clock, assert_promise

LONG = int(os.environ.get("BLUEGREEN_SEQUENCES") or 0)
# The seed of CI's random sequence (a walk over the rules below, see `walked`).
SEED = int(os.environ.get("BLUEGREEN_SEQUENCE_SEED") or 23)
VERBOSE = bool(os.environ.get("BLUEGREEN_SEQUENCES_VERBOSE"))
COLOURS = ("blue", "green")
WATCH_SECONDS = 3
FAST = {"WATCH_MIN_REQUESTS": "5", "HEALTH_INTERVAL": "0.1", "HEALTH_PASSES": "1",
        "KEEP_RELEASES": "3"}
LABEL_500 = re.compile(r"internal error \((\S+)\)")
# Tasks with hooks (SPEC, "Hooks"); the sequences' hooks log each call (check_hooks).
HOOKED = ("setup", "release", "promote", "rollback", "switch", "maintenance", "exec")
HOOK_SCRIPT = """#!/bin/sh
printf '{"hook":"%s","task":"%s","code":"%s","colour":"%s","commit":"%s"}\\n' \\
  "$(basename "$0")" "$BLUEGREEN_TASK" "$BLUEGREEN_EXIT_CODE" "$BLUEGREEN_COLOUR" \\
  "$BLUEGREEN_COMMIT" >> "$HOOKS_LOG"
"""
# The phase line after which a task's `fab` is killed (SIGKILL): the blow lands
# in the step that follows it. release: "lock" during git and the build's start,
# "git" during the build, "start" in the health gate, "health" where PRE_SWITCH_CMD
# would end (in the switch step), "switch" during verify, "verify" during the
# record, "record" during the workers' hand-over, "workers" after it.
KILL_AFTER = {
    "release": ("lock", "git", "start", "health", "switch", "verify", "record", "workers"),
    "rollback": ("lock", "health", "switch", "verify", "record"),
    "promote": ("lock", "health", "switch", "verify", "record"),
}


# Each rule's argument choices and precondition, for the seeded walk CI runs:
# Hypothesis's first example, all that a run of one example gets, is its
# simplest (the same first rule at every step).
STEPS = {}
BOOL = (False, True)


def step(when=None, **choices):
    """@rule drawing each argument from its tuple of ``choices``, with ``when``
    (self -> bool) as its precondition; listed in STEPS for the walk too."""
    def register(method):
        STEPS[method.__name__] = (choices, when)
        made = rule(**{name: st.sampled_from(values) for name, values in choices.items()})(method)
        return precondition(when)(made) if when else made
    return register


class KilledAt(Background):
    """`fab` in the background, SIGKILLed by the thread that reads its output
    the moment it prints the line of phase ``after`` (no hand-over first)."""

    def __init__(self, project, *args, after):
        self.pattern = re.compile(rf"^\S+\s+{re.escape(after)}\s+\d+\.\d\ds")
        self.killed_at = None
        super().__init__(project, *args)

    def _read(self, stream):
        for line in stream:
            if self.killed_at is None and self.pattern.match(line):
                try:
                    os.kill(self.pid, signal.SIGKILL)
                    self.killed_at = line.rstrip("\n")
                except ProcessLookupError:
                    pass
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()


def other(colour):
    return "green" if colour == "blue" else "blue"


class Colour:
    """The model of one colour."""

    def __init__(self):
        self.label = None  # the build it runs (its version label), None: nothing yet
        self.commit = None
        self.deployed = None  # the branch that build was checked out from
        self.follows = None  # the recorded branch (what a plain release deploys)
        self.records = None  # what promote records as its branch (a pending build)
        self.pending = None  # staged, canary, reverted
        self.running = False

    def __repr__(self):
        return (f"<{self.label} {(self.commit or '-')[:8]} deployed={self.deployed} "
                f"follows={self.follows} pending={self.pending} running={self.running}>")


class Deploys(RuleBasedStateMachine):
    """One fresh project per sequence; ``Deploys.world`` gives the fixtures."""

    world = None  # (request, tmp_path_factory, loophost), set by the test

    def __init__(self):
        super().__init__()
        _, factory, host = self.world
        base = factory.mktemp("seq")
        self.app = lh.SampleApp(base / "app")
        self.n = 0
        first = self.app.commit("b0", procfile=PROCFILE, files=FILES)
        self.project = Project(base / "p", host, self.app)
        self.jobs = base / "jobs"
        self.hooks_log, self.hooks_seen, self.runs = base / "hooks.jsonl", 0, []
        hooks = base / "hooks"
        hooks.mkdir()
        (hooks / "failed").write_text(HOOK_SCRIPT.replace("$HOOKS_LOG", str(self.hooks_log)))
        (hooks / "failed").chmod(0o755)
        for name in [f"{when}-{task}" for task in HOOKED for when in ("pre", "post")]:
            (hooks / name).symlink_to(hooks / "failed")
        self.project.set(**FAST, VOLUMES=f"{self.jobs}:/jobs", WORKER_READY_SECONDS="1",
                         WORKER_STOP_TIMEOUT="3", HOOKS_DIR=str(hooks))
        self.stream = JobStream(self.jobs, rate=5)
        self.base = base
        self.killed = self.unrecovered = False  # a fab killed; not yet put right
        self.history_seen = 0
        self.c = {colour: Colour() for colour in COLOURS}
        self.live = None
        self.canary = None  # (colour, percent)
        self.reverted = set()  # labels a watch reverted, not released anew
        self.failed = set()  # colours whose last release failed (status: role failed)
        self.crashed = set()  # commits of builds that exited at start: never kept
        self.commits = {}  # commit -> (label, bad, deployed branch)
        self.expected = []  # history entries the step must add: (task, result, to, branch, commit)
        self.fab_ok("setup")
        blue = self.c["blue"]
        blue.label, blue.commit, blue.deployed, blue.follows = "b0", first, "main", "main"
        blue.running = True
        self.commits[blue.commit] = ("b0", False, "main")
        self.live = "blue"
        self.history_seen = len(self.history())
        self.stream.__enter__()

    def teardown(self):
        self.stream.__exit__(None, None, None)
        try:
            if not getattr(self, "broken", False):
                self.stream.assert_exactly_once()
        finally:
            self.project.remove()
        shutil.rmtree(self.base, ignore_errors=True)

    # --- running fab -------------------------------------------------------------------

    def fab(self, *args, traffic=False):
        load = None
        if traffic:
            load = loadgen.Load(self.project.public_port, distinct_clients=True,
                                rate_fresh=40, rate_keepalive=0, threads_fresh=2, timeout=3.0,
                                max_seconds=120, max_requests=20000).start()
        try:
            r = self.project.fab(*args, timeout=FAB_TIMEOUT)
        finally:
            if load:
                load.stop()
        no_traceback(r)
        self.last = r
        if args[0] in HOOKED:
            self.runs.append((args[0], r.returncode))
        if VERBOSE and args[0] != "status":
            print(f"  fab {' '.join(args)}{' (traffic)' if traffic else ''}: exit "
                  f"{r.returncode}", flush=True)
        return r

    def fab_ok(self, *args, code=0, **kwargs):
        r = self.fab(*args, **kwargs)
        assert r.returncode == code, (f"fab {' '.join(args)}: exit {r.returncode}, "
                                      f"wanted {code}\n{r.stdout}\n{r.stderr}")
        return r

    def build(self, branch, bad, slow=None, kind=None):
        self.n += 1
        label = f"b{self.n}"
        commit = self.app.commit(label, kind=kind or ("pages500" if bad else "ok"),
                                 branch=branch, slow=slow, procfile=PROCFILE, files=FILES)
        return label, commit

    # --- the model's moves ------------------------------------------------------------

    def go_live(self, colour):
        c = self.c[colour]
        if c.pending:
            c.follows = c.records
        c.pending, c.records = None, None
        self.live = colour
        self.reverted.discard(c.label)
        self.failed.discard(colour)

    def put_build(self, colour, label, commit, deployed, records, pending):
        c = self.c[colour]
        c.label, c.commit, c.deployed, c.running = label, commit, deployed, True
        if pending:
            c.pending, c.records = pending, records
        else:
            c.pending, c.records, c.follows = None, None, records
        self.reverted.discard(label)
        self.failed.discard(colour)

    def revert(self, new, old, before):
        """The watch sent everyone back to ``old``; ``before``: new's record before."""
        c = self.c[new]
        if not c.pending:  # recorded live: its recorded branch goes back
            c.records, c.follows = c.follows, before
        c.pending = "reverted"
        self.live, self.canary = old, None
        self.reverted.add(c.label)

    def stop(self, colour):
        self.c[colour].running = False

    # --- rules ---------------------------------------------------------------------------

    @step(mode=("plain", "plain", "no-switch", "canary"),
          source=("followed", "branch main", "branch side", "ref"),
          bad=BOOL, watch=BOOL, stop_old=BOOL, traffic=BOOL)
    def release(self, mode, source, bad, watch, stop_old, traffic):
        if mode == "no-switch":
            watch = stop_old = False
        if mode == "canary" and stop_old:
            watch = True
        args = ["release"]
        target, old = other(self.live), self.live
        t = self.c[target]
        followed = t.follows or "main"
        if source.startswith("branch"):
            deployed = records = source.split()[1]
            args += ["--branch", deployed]
        elif source == "ref":
            deployed, records = followed, followed
        else:
            deployed = records = followed
        label, commit = self.build("scratch" if source == "ref" else deployed, bad)
        if source == "ref":
            args += ["--ref", commit]
        self.commits[commit] = (label, bad, deployed)
        if mode == "no-switch":
            args.append("--no-switch")
        if mode == "canary":
            args += ["--canary", "50"]
        if watch:
            args += ["--watch", str(WATCH_SECONDS)]
        if stop_old:
            args.append("--stop-old")
        if self.canary:
            self.fab_ok(*args, code=1)
            assert "canary" in self.last.stderr
            self.expected = [("release", "failed", None, None, None)]
            return
        judged = watch and traffic
        r = self.fab(*args, traffic=traffic)
        before = t.follows
        if mode == "no-switch":
            assert r.returncode == 0, r.stderr
            self.put_build(target, label, commit, deployed, records, "staged")
            self.expected = [("release", "staged", target, deployed, commit)]
            return
        if mode == "canary":
            self.put_build(target, label, commit, deployed, records, "canary")
            self.canary = (target, 50)
            self.expected = [("release", "canary", target, deployed, commit)]
            if judged and bad:
                assert r.returncode == 1, r.stderr
                self.revert(target, old, before)
                self.expected.append(("release", "reverted", old, deployed, commit))
            elif judged:
                assert r.returncode == 0, r.stderr
                self.canary = None
                self.go_live(target)
                self.expected.append(("release", "promoted", target, deployed, commit))
                if stop_old:
                    self.stop(old)
            else:
                assert r.returncode == 0, r.stderr
            return
        self.put_build(target, label, commit, deployed, records, None)
        self.live = target
        self.expected = [("release", "ok", target, deployed, commit)]
        if judged and bad:
            assert r.returncode == 1, r.stderr
            self.revert(target, old, before)
            self.expected.append(("release", "reverted", old, deployed, commit))
            return
        assert r.returncode == 0, r.stderr
        if stop_old and (not watch or judged):
            self.stop(old)

    @step(watch=BOOL, stop_old=BOOL, traffic=BOOL)
    def promote(self, watch, stop_old, traffic):
        args = ["promote"] + (["--watch", str(WATCH_SECONDS)] if watch else []) + (
            ["--stop-old"] if stop_old else [])
        to = self.canary[0] if self.canary else other(self.live)
        c = self.c[to]
        if not self.canary and c.pending != "staged":
            self.fab_ok(*args, code=1)
            self.expected = [("promote", "failed", None, None, None)]
            return
        old, before = self.live, c.follows
        r = self.fab(*args, traffic=traffic)
        self.expected = [("promote", "promoted", to, c.deployed, c.commit)]
        self.canary = None
        self.go_live(to)
        bad = self.commits[c.commit][1]
        judged = watch and traffic
        if judged and bad:
            assert r.returncode == 1, r.stderr
            self.revert(to, old, before)
            self.expected.append(("promote", "reverted", old, c.deployed, c.commit))
            return
        assert r.returncode == 0, r.stderr
        if stop_old and (not watch or judged):
            self.stop(old)

    @step(to=(None, "blue", "green"))
    def rollback_or_switch(self, to):
        args = ["rollback"] if to is None else ["switch", "--to", to]
        task = args[0]
        if self.canary and to in (None, self.live):
            canary = self.canary[0]
            self.fab_ok(*args)
            self.c[canary].pending = "staged"
            self.canary = None
            live = self.c[self.live]
            self.expected = [(task, "ok", self.live, live.deployed, live.commit)]
            return
        dest = other(self.live) if to is None else to
        c = self.c[dest]
        if dest == self.live or not c.running or c.pending or not c.commit:
            self.fab_ok(*args, code=1)
            self.expected = [(task, "failed", None, None, None)]
            return
        self.fab_ok(*args)
        self.live = dest
        self.failed.discard(dest)
        self.expected = [(task, "ok", dest, c.deployed, c.commit)]

    @step(when=lambda self: self.c[other(self.live)].commit)
    def rollback_to_idle_build(self):
        """rollback --to the commit the idle colour was built with: kept unless
        its watch reverted it."""
        idle = other(self.live)
        c = self.c[idle]
        if self.canary:
            self.fab_ok("rollback", "--to", c.commit[:12], code=1)
            assert "canary" in self.last.stderr
            self.expected = []  # refused before anything was tried
            return
        if c.commit == self.c[self.live].commit:
            self.fab_ok("rollback", "--to", c.commit[:12], code=1)
            self.expected = []
            return
        label, _, deployed = self.commits[c.commit]
        if label in self.reverted:
            # A build its watch reverted is no kept release (SPEC, "What the tool
            # reports is what runs"): refused before anything changes, and the
            # colour never follows its branch.
            self.fab_ok("rollback", "--to", c.commit[:12], code=1)
            said = self.last.stdout + self.last.stderr
            assert f"release --ref {c.commit}" in said, said
            self.expected = []
            return
        self.fab_ok("rollback", "--to", c.commit[:12])
        c.running, c.pending, c.records, c.follows = True, None, None, deployed
        self.live = idle
        self.failed.discard(idle)
        self.expected = [("rollback", "ok", idle, deployed, c.commit)]

    @step()
    def crash_release(self):
        """A plain release of a build that exits at start: exit 1, nothing live
        changes, the idle colour runs its previous release again (or stays
        stopped); its failed build is no kept release."""
        target = other(self.live)
        label, commit = self.build(self.c[target].follows or "main", False, kind="crash")
        self.commits[commit] = (label, False, self.c[target].follows or "main")
        self.crashed.add(commit)
        self.fab_ok("release", code=1)
        if self.canary:
            assert "canary" in self.last.stderr
            self.expected = [("release", "failed", None, None, None)]
            return
        self.failed.add(target)
        self.expected = [("release", "failed", target, None, commit)]

    @step(force=BOOL)
    def release_the_live_commit(self, force):
        """`release --ref` of what is live: nothing to release (the other colour
        stays the rollback target), or with --force a release into the idle colour."""
        live = self.c[self.live]
        args = ["release", "--ref", live.commit] + (["--force"] if force else [])
        if self.canary:
            self.fab_ok(*args, code=1)
            assert "canary" in self.last.stderr
            self.expected = [("release", "failed", None, None, None)]
            return
        self.fab_ok(*args)
        if not force:
            said = self.last.stdout + self.last.stderr
            assert f"nothing to release: {self.live} already runs {live.commit[:12]}" in \
                said, said
            self.expected = []
            return
        target = other(self.live)
        followed = self.c[target].follows or "main"
        self.put_build(target, live.label, live.commit, followed, followed, None)
        self.live = target
        self.expected = [("release", "ok", target, followed, live.commit)]

    @step(when=lambda self: not self.canary and not any(c.pending for c in self.c.values()))
    def repair(self):
        """repair rebuilds state.json from the containers: the same records."""
        self.fab_ok("repair")
        self.expected = [("repair", "ok", self.live, None, None)]

    @step(when=lambda self: not self.canary)
    def remove_and_setup(self):
        """remove --yes takes the app off; setup brings it back as new, main's
        newest commit in blue."""
        self.fab_ok("remove", code=2)  # without --yes: only says what it would remove
        self.fab_ok("remove", "--yes")
        assert not self.project.deploy_dir.exists()
        label, commit = self.build("main", False)  # what setup deploys: main's newest
        self.commits[commit] = (label, False, "main")
        self.fab_ok("setup")
        self.history_seen = 0
        self.c = {colour: Colour() for colour in COLOURS}
        blue = self.c["blue"]
        blue.label, blue.commit, blue.deployed, blue.follows = label, commit, "main", "main"
        blue.running, self.live = True, "blue"
        self.reverted, self.failed = set(), set()
        self.expected = [("setup", "ok", "blue", "main", commit)]

    @step(when=lambda self: not self.unrecovered, code=(0, 3))  # exec takes no lock: no takeover
    def exec_one_off(self, code):
        """exec: a one-off container from the live colour's image, the command's own
        exit code, no container left behind, history records it."""
        live = self.c[self.live]
        r = self.fab_ok("exec", f"cat /app/VERSION; echo $BLUEGREEN_COLOUR; exit {code}",
                        code=code)
        assert r.stdout.split()[-2:] == [live.label, self.live], (r.stdout, live)
        left = subprocess.run(["docker", "ps", "-aq", "--filter",
                               f"label=bluegreen.app={self.project.name}", "--filter",
                               "label=bluegreen.process=oneoff"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert not left, f"one-off containers left behind: {left}"
        entry = [e for e in self.history() if e.get("task") == "exec"][-1]
        assert entry["exit_code"] == code, entry
        self.expected = [("exec", "exec", None, None, None)]

    @step(when=lambda self: not self.canary, task=tuple(sorted(KILL_AFTER)), at=tuple(range(8)))
    def killed_task(self, task, at):
        """A release, rollback or promote whose `fab` is SIGKILLed right after one
        of its phase lines, under a light load. The public port serves one of the
        two legal outcomes (what was live, or the task's colour with its build)
        and never fails a request; state.json may lag behind until the next task
        takes the dead holder's lock over and puts the host right."""
        idle = other(self.live)
        c = self.c[idle]
        if task == "promote" and c.pending != "staged":
            task = "release"
        if task == "rollback" and (not c.running or c.pending or not c.commit):
            task = "release"
        after = KILL_AFTER[task][at % len(KILL_AFTER[task])]
        if task == "release":
            followed = c.follows or "main"
            label, commit = self.build(followed, False)
            self.commits[commit] = (label, False, followed)
            new = (label, commit, followed)
        else:
            new = (c.label, c.commit, c.deployed)
        old_live = self.live
        load = loadgen.Load(self.project.public_port, distinct_clients=True, rate_fresh=20,
                            rate_keepalive=0, threads_fresh=2, timeout=5.0, max_seconds=300,
                            max_requests=20000).start()
        try:
            run = KilledAt(self.project, task, after=after)
            code = run.wait()
        finally:
            records = load.stop()
        if VERBOSE:
            print(f"  fab {task}: killed after its {after!r} line (exit {code})", flush=True)
        # A 500 of a colour whose build answers 500 (a `bad` one) is its answer.
        bad = {colour for colour, c in self.c.items()
               if c.commit and self.commits.get(c.commit, (None, False))[1]}
        failed = [r for r in records if not r.ok and r.error != "timeout"
                  and not (r.status == 500 and r.colour in bad)]
        assert not failed, (f"{task} killed after {after!r}: {len(failed)} failed requests, "
                            f"{failed[:5]}\n{run.text()}")
        if run.killed_at is None:  # it ended first: a task that ran to its end
            assert code == 0, f"fab {task}: exit {code}\n{run.text()}"
        else:
            assert code == -signal.SIGKILL, f"fab {task}: exit {code}\n{run.text()}"
        # What the host reports live (its nginx file) decides the model, once nginx's
        # old workers are gone; only one of the two outcomes is legal.
        header = re.search(r"^# bluegreen app=\S+ live=(\S+)",
                           self.project.nginx_file.read_text(), re.M)
        wait_until(lambda: all(self.answer(self.project.public_port)[0] == header.group(1)
                               for _ in range(3)), timeout=15)
        colour, label = self.answer(self.project.public_port)
        assert colour == header.group(1), (colour, header.group(0))
        assert (colour, label) in ((old_live, self.c[old_live].label), (idle, new[0])), (
            f"{task} killed after {after!r}: the public port serves {colour} {label}; "
            f"legal: {old_live} {self.c[old_live].label} or {idle} {new[0]}\n{run.text()}")
        if colour == idle:
            if task == "release":
                self.put_build(idle, *new, new[2], None)
            elif task == "promote":
                self.go_live(idle)
            self.live = idle
            self.failed.discard(idle)
        elif task == "release":
            c.running = self.runs_after_takeover(idle)
        self.killed = run.killed_at is not None
        self.runs.append((task, None if self.killed else code))
        self.unrecovered = self.unrecovered or self.killed
        self.expected = None  # killed part-way: history has what the task got to record

    # --- what must hold after every step ---------------------------------------------------

    def history(self):
        path = self.project.deploy_dir / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def answer(self, port, client="model"):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/version", headers={"User-Agent": client})
            resp = conn.getresponse()
            body = resp.read().decode(errors="replace").strip()
            colour = resp.getheader("X-Deploy-Colour")
        finally:
            conn.close()
        m = LABEL_500.search(body)
        return colour, (m.group(1) if resp.status == 500 and m else body)

    @invariant()
    def host_matches_the_model(self):
        killed, self.killed = self.killed, False
        if self.unrecovered and not killed:
            # A task ran since the kill: it took the dead holder's lock over and
            # put the host right; every promise holds again from here.
            self.unrecovered = False
        self.check_public()
        if not self.unrecovered:
            self.check_colours()
            self.check_state()
        self.check_history()
        self.check_hooks()
        self.check_status()
        self.check_workers()

    def runs_after_takeover(self, colour):
        """Whether the idle ``colour`` runs once the next task took a killed
        release's lock over: that task starts its recorded release again where
        the container is not that release's (another build, or none), stops
        what runs in a colour never released, and leaves the rest as it is."""
        record = json.loads((self.project.deploy_dir / "state.json").read_text())[
            "colours"][colour]
        found = [c["name"] for c in self.project.containers() if c["service"] == colour]
        image, status = "", "missing"
        if found:
            image, status = lh.docker("container", "inspect", "--format",
                                      "{{.Image}} {{.State.Status}}", found[0]).stdout.split()
        if not record.get("commit"):
            return False
        if record.get("image") and (status == "missing" or image != record["image"]):
            return True
        return status == "running"

    def check_workers(self):
        try:
            if not self.unrecovered:  # a kill in the hand-over: both, until the next task
                assert_promise(self.project)
            assert_one_clock(self.jobs)
            twice = {n: lines for n, lines in self.stream.ledger(timeout=0).items()
                     if len(lines) > 1}
            assert not twice, f"jobs done twice: {twice}"
        except AssertionError:
            self.broken = True
            raise

    def check_public(self):
        live = self.c[self.live]
        assert live.label not in self.reverted, f"reverted build {live.label} is live"
        serving = {self.live: live.label}
        if self.canary:
            serving[self.canary[0]] = self.c[self.canary[0]].label
        seen = set()
        for n in range(8 if self.canary else 2):
            colour, label = self.answer(self.project.public_port, f"client-{n}")
            assert serving.get(colour) == label, (
                f"public port: {colour} {label}; model: {serving}")
            seen.add(colour)
        assert self.live in seen or self.canary, seen

    def check_colours(self):
        ports = {"blue": self.project.blue_port, "green": self.project.green_port}
        states = {c["service"]: c["state"] for c in self.project.containers()}
        for colour, c in self.c.items():
            if not c.running:
                assert states.get(colour) != "running" or colour == self.live, (colour, states)
                continue
            assert states.get(colour) == "running", (colour, states, c)
            _, label = self.answer(ports[colour])
            assert label == c.label, f"{colour} runs {label}; model: {c}"

    def check_state(self):
        state = json.loads((self.project.deploy_dir / "state.json").read_text())
        assert state["live"] == self.live, state
        for colour, c in self.c.items():
            record = state["colours"][colour]
            if c.commit is None:
                continue
            assert record.get("commit") == c.commit, (colour, record, c)
            assert (record.get("branch") or "main") == (c.follows or "main"), (colour, record, c)
            assert record.get("pending") == c.pending, (colour, record, c)

    def check_history(self):
        entries = [e for e in self.history()[self.history_seen:] if e.get("task") != "lock"]
        self.history_seen += len(self.history()[self.history_seen:])
        if self.expected is None:
            return
        got = [(e["task"], e["result"], e.get("to"), e.get("branch"), e.get("commit"))
               for e in entries]
        want = self.expected
        assert len(got) == len(want), (got, want)
        for g, w in zip(got, want):
            assert g[:2] == w[:2] and all(x is None or x == y for x, y in zip(w[2:], g[2:])), \
                (got, want)
        self.expected = []

    def check_hooks(self):
        """The hooks of the step's runs, in order: pre-, post- with the run's exit
        code (none after a kill), `failed` exactly after exit 1 or 3 (not exec);
        the last run's post- hook, when it succeeded, names the serving colour."""
        lines = [json.loads(line) for line in self.hooks_log.read_text().splitlines()]
        got = [(h["hook"], h["task"], h["code"]) for h in lines[self.hooks_seen:]]
        want = []
        for task, code in self.runs:
            want.append((f"pre-{task}", task, ""))
            if code is None:  # SIGKILLed: nothing ran after it
                continue
            want.append((f"post-{task}", task, str(code)))
            if code in (1, 3) and task != "exec":
                want.append(("failed", task, str(code)))
        assert got == want, (got, want)
        last = lines[self.hooks_seen:][-1:] if self.runs and self.runs[-1][1] == 0 else []
        for hook in last:
            if hook["task"] != "exec":
                assert hook["colour"] == self.live, (hook, self.live)
        self.hooks_seen, self.runs = len(lines), []

    def check_status(self):
        r = self.fab_ok("status", "--json")
        status = json.loads(r.stdout.strip().splitlines()[-1])
        for colour, c in self.c.items():
            want = ("live" if colour == self.live else
                    "canary" if self.canary and colour == self.canary[0] else
                    c.pending or "idle")
            if c.commit is None:
                continue
            shown = status["colours"][colour]
            if colour in self.failed and not c.pending and colour != self.live and not (
                    self.canary and colour == self.canary[0]):
                want = "failed"
            if not self.unrecovered or colour == self.live:
                assert shown["role"] == want, (colour, status["colours"], c)
            # What the colour's container serves is what status names.
            if c.running and not self.unrecovered:
                assert shown["commit"] == c.commit, (colour, shown, c)
        if self.unrecovered:
            # status names what nginx serves, and says when state.json says otherwise.
            state = json.loads((self.project.deploy_dir / "state.json").read_text())
            assert state["live"] == self.live or status["drift"], status
        else:
            assert status["drift"] is None, status
        self.check_releases(status)

    def check_releases(self, status):
        """`releases` lists what the colours run (reverted builds aside), never a
        crashed or reverted build."""
        r = self.fab_ok("releases", "--json")
        rows = {row["commit"]: row for row in map(json.loads, r.stdout.splitlines())}
        for commit in self.crashed:
            assert commit not in rows, (commit, rows)
        for colour, c in self.c.items():
            if not c.commit:
                continue
            if c.label in self.reverted and c.pending == "reverted":
                assert c.commit not in rows, (colour, c, rows)
            elif c.running and not self.unrecovered:
                assert colour in rows[c.commit]["colours"], (colour, c, rows[c.commit])


def test_the_sequences_that_broke_promises_keep_them_now(request, tmp_path_factory, loophost):
    """The combinations of issue 26 through the same model, in a fixed order, so
    every run covers them whatever the random sequences pick."""
    Deploys.world = (request, tmp_path_factory, loophost)
    m = Deploys()
    steps = [
        # Right after setup, with workers: the compose file a release wrote (the
        # Procfile's order) differed from the one state.json renders (its sorted
        # keys), so a release of the live commit released it again (a long run).
        ("release --ref LIVE after setup (nothing to release)",
         lambda: m.release_the_live_commit(False)),
        # A crash at start in a colour never released before leaves its container
        # stopped on the failed build (for its logs); repair recorded that build as
        # the colour's release, and `releases` listed it (a long run).
        ("release of a build that crashes at start into the never-released green",
         m.crash_release),
        ("repair", m.repair),
        # A --branch canary reverted by its watch, then a plain release: main.
        ("release --branch side --canary 50 --watch (5xx, traffic)",
         lambda: m.release("canary", "branch side", True, True, False, True)),
        ("release", lambda: m.release("plain", "followed", False, False, False, False)),
        # A --ref reverted by its watch (and its --stop-old ignored), then promote: refused.
        ("release --ref --watch --stop-old (5xx, traffic)",
         lambda: m.release("plain", "ref", True, True, True, True)),
        ("promote", lambda: m.promote(False, False, False)),
        ("rollback", lambda: m.rollback_or_switch(None)),
        # A staged --branch promoted under a watch too quiet to judge, with --stop-old.
        ("release --no-switch --branch side",
         lambda: m.release("no-switch", "branch side", False, False, False, False)),
        ("promote --watch --stop-old (no traffic)", lambda: m.promote(True, True, False)),
        # A fab killed mid-release, then rollback to the idle colour it left behind.
        ("release killed in its health gate", lambda: m.killed_task("release", 2)),
        ("rollback", lambda: m.rollback_or_switch(None)),
        ("rollback --to the idle colour's build", m.rollback_to_idle_build),
        # A canary promoted: verify took an old worker's answer (the canary's file,
        # this client in its share) for the new file's, and returned before the
        # hand-over; the next fresh clients met the split (found by a long run).
        ("release --canary 50", lambda: m.release(bad=False, mode="canary", source="followed",
                                                  stop_old=False, traffic=False, watch=False)),
        ("promote", lambda: m.promote(stop_old=False, traffic=False, watch=False)),
        # exec: the live build's one-off container, its own exit code, none left over.
        ("exec 'cat /app/VERSION; exit 3'", lambda: m.exec_one_off(3)),
        # fab killed right after its switch line (nginx serves the new build, state.json
        # does not say so yet), then a rollback killed in the workers' hand-over: each
        # next task takes the lock over and records what serves.
        ("release killed right after its switch line", lambda: m.killed_task("release", 4)),
        ("rollback killed in the workers' hand-over", lambda: m.killed_task("rollback", 4)),
        # Issue 34: a build that exits at start is no release, repair records what
        # runs, a release of the live commit keeps the rollback target (unless
        # --force), and remove + setup start the app anew.
        ("release of a build that crashes at start", m.crash_release),
        ("repair", m.repair),
        ("release --ref LIVE (nothing to release)", lambda: m.release_the_live_commit(False)),
        ("release --ref LIVE --force", lambda: m.release_the_live_commit(True)),
        ("remove, remove --yes, setup", m.remove_and_setup),
    ]
    run_steps(m, steps)


def run_steps(m, steps, what="step"):
    """Each (name, step) of ``steps`` (an iterable: a walk draws the next one
    after the last ran), the promises checked after each; the teardown's ledger
    check at the end."""
    done = []
    try:
        for n, (name, run) in enumerate(steps, 1):
            done.append(name)
            try:
                run()
                m.host_matches_the_model()
            except AssertionError as exc:
                listed = "\n".join(f"  {i}. {s}" for i, s in enumerate(done, 1))
                raise AssertionError(f"{what} {n} ({name}) broke a promise:\n{listed}\n"
                                     f"{exc}") from None
    finally:
        m.teardown()


def walked(m, seed, count):
    """``count`` steps of a seeded random walk over the rules (STEPS): each a
    rule whose precondition holds now, with arguments drawn from its choices."""
    rng = random.Random(seed)
    for _ in range(count):
        name = rng.choice(sorted(r for r, (_, when) in STEPS.items() if when is None or when(m)))
        args = {k: rng.choice(v) for k, v in sorted(STEPS[name][0].items())}
        yield (f"{name}({', '.join(f'{k}={v!r}' for k, v in args.items())})",
               functools.partial(getattr(m, name), **args))


def test_random_sequences_of_tasks_keep_the_promises(request, tmp_path_factory, loophost):
    """CI: one seeded random walk of six steps (BLUEGREEN_SEQUENCE_SEED picks
    another). A long run (BLUEGREEN_SEQUENCES=N): N Hypothesis sequences of ten
    steps, shrunk when one fails."""
    Deploys.world = (request, tmp_path_factory, loophost)
    if not LONG:
        m = Deploys()
        run_steps(m, walked(m, SEED, 6), what=f"seed {SEED}, step")
        return
    run_state_machine_as_test(Deploys, settings=settings(
        max_examples=LONG, stateful_step_count=10, deadline=None,
        derandomize=False, database=None, print_blob=True,
        # Each sequence and fab step as it runs (pytest -s shows them).
        verbosity=Verbosity.verbose if VERBOSE else Verbosity.normal,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink]))
