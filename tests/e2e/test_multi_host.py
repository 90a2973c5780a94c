"""Several hosts switch together or not at all (issue 33, SPEC "Several hosts
in one run").

Three hosts stand in for web1, web2 and web3, sharing nothing but this
machine (scripts/ownhost.py): each has its own Docker daemon (SecondDaemon),
and its own sshd and nginx master in a mount namespace of its own, where
the host's own directories are mounted over the paths every host names
alike. So the three share one .env, as real machines would: the same
APP_NAME, DEPLOY_DIR, NGINX_CONF_DIR and nginx commands; only their ports
differ (one network: hosts.yml gives web2 and web3 theirs). A fourth nginx
is the load balancer: an upstream over the three public ports, under a
steady client load through the whole module.

Own daemons cost little: the three start in parallel in the module's
setup (11-15 s with `fab setup`; 8-15 s with aliases of one host), and the
busybox sample builds in about a second on a daemon with no cache.
`FleetSteps` at the end drives the fleet operations in sequences (a
Hypothesis state machine) over the same hosts.
"""

import itertools
import json
import os
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from hypothesis import HealthCheck, Phase, Verbosity, settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, invariant, precondition, rule,
                                 run_state_machine_as_test)

import loadgen
import loophost as lh
import ownhost as oh
from released import fab, output
from support.project import Project
from traffic import settled

pytestmark = pytest.mark.e2e

HOSTS = ("web1", "web2", "web3")
COLOURS = ("blue", "green")
# The fleet sequences (FleetSteps): how many, and each fab step printed.
LONG = int(os.environ.get("BLUEGREEN_SEQUENCES") or 0)
VERBOSE = bool(os.environ.get("BLUEGREEN_SEQUENCES_VERBOSE"))
HOW = ((), ("--parallel",), ("--batch", "1"))
FAULTS = {"health": {"HEALTH_PATH": "/nothing-here", "HEALTH_TIMEOUT": "2"},
          "verify": {"NGINX_RELOAD_CMD": "true"}}  # nginx never reloaded

BALANCER = """\
upstream fleet_{name} {{
{servers}
}}
server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://fleet_{name}; }}
}}
"""


def start_hosts(root):
    """{name: OwnHost} for HOSTS, each on a daemon of its own, and the paths
    they name alike ({"srv": ..., "nginx": ...}); every started thing is in
    the returned list, for `stop_hosts`, even when a start fails."""
    alike = {"srv": root / "srv", "nginx": root / "nginx"}
    for path in alike.values():
        path.mkdir()
    daemons = {name: oh.SecondDaemon() for name in HOSTS}
    hosts = {}
    for name in HOSTS:
        own = root / name
        for sub in ("srv", "nginx"):
            (own / sub).mkdir(parents=True)
        hosts[name] = oh.OwnHost(own, daemons[name], binds=[
            (own / "srv", alike["srv"]), (own / "nginx", alike["nginx"])])
    with ThreadPoolExecutor(len(HOSTS)) as pool:
        errors = [e for e in pool.map(_start, HOSTS, daemons.values(), hosts.values()) if e]
    return hosts, alike, errors


def _start(name, daemon, host):
    try:
        daemon.start()
        host.start()
    except RuntimeError as e:
        return f"{name}: {e}"
    return None


def stop_hosts(hosts):
    def stop(host):
        host.stop()
        host.daemon.stop()
    with ThreadPoolExecutor(len(hosts)) as pool:
        list(pool.map(stop, hosts.values()))


@pytest.fixture(scope="module")
def fleet_hosts(tmp_path_factory):
    """web1..web3 (OwnHosts, see the module's docstring) and the balancer's nginx."""
    oh.SecondDaemon.stop_abandoned()
    root = tmp_path_factory.mktemp("fleet")
    hosts, alike, errors = start_hosts(root)
    balancer = lh.LoopHost(root / "balancer")
    try:
        if errors:
            pytest.fail(f"could not start the fleet's hosts: {errors}", pytrace=False)
        balancer.start()
        yield hosts, alike, balancer
    finally:
        balancer.stop()
        stop_hosts(hosts)


@pytest.fixture(scope="module")
def proj(tmp_path_factory, fleet_hosts):
    hosts, alike, _ = fleet_hosts
    base = tmp_path_factory.mktemp("multi_host")
    app = lh.SampleApp(base / "sample-app")
    app.commit("v1")
    project = Project(base / "p", hosts["web1"], app)
    nginx = [hosts["web1"].nginx.path, "-p", str(alike["nginx"]),
             "-c", str(alike["nginx"] / "nginx.conf")]
    project.set(DEPLOY_DIR=alike["srv"] / project.name,
                NGINX_CONF_DIR=alike["nginx"] / "conf.d",
                NGINX_TEST_CMD=shlex.join([*nginx, "-t"]),
                NGINX_RELOAD_CMD=shlex.join([*nginx, "-s", "reload"]))
    try:
        yield project
    finally:
        project.remove()


class Fleet:
    """The project's app on web1..web3, named in one hosts.yml (default_hosts: all).

    One .env for all: the same APP_NAME, DEPLOY_DIR and nginx settings on
    every host; hosts.yml gives web2 and web3 their ports.
    """

    def __init__(self, project, hosts, balancer):
        self.project = project
        self.app_name = project.name
        self.hosts = hosts
        # Where each host's DEPLOY_DIR is, seen from here.
        self.deploy_dirs = {n: h.workdir / "srv" / project.name for n, h in hosts.items()}
        self.env = {"web1": {}}
        for name in HOSTS[1:]:
            public, blue, green = lh.free_ports(3)
            self.env[name] = {"PUBLIC_PORT": public, "BLUE_PORT": blue, "GREEN_PORT": green}
        self.write()
        self.balancer_port = lh.free_port()
        servers = "\n".join(f"    server 127.0.0.1:{self.public_port(n)};" for n in HOSTS)
        (balancer.conf_dir / f"{project.name}-lb.conf").write_text(BALANCER.format(
            name=project.name.replace("-", "_"), servers=servers, port=self.balancer_port))
        subprocess.run(balancer.nginx_reload_cmd, shell=True, check=True)

    def write(self, **overrides):
        """Rewrite hosts.yml; overrides: {host: {KEY: value}} added to its env."""
        hosts = {}
        for name in HOSTS:
            entry = self.hosts[name].hosts_entry(name)[name]
            env = {**self.env[name], **overrides.get(name, {})}
            if env:
                entry["env"] = env
            hosts[name] = entry
        self.project.hosts_file.write_text(yaml.safe_dump(
            {"hosts": hosts, "default_hosts": list(HOSTS)}, sort_keys=False))

    def public_port(self, name):
        return int(self.env[name].get("PUBLIC_PORT", self.project.public_port))

    def version(self, name, colour=None):
        """(status, colour, version) on the host's public port; with colour,
        once nginx's old workers have stopped answering (traffic.settled)."""
        status, headers, body = settled(
            lambda: lh.http_get(self.public_port(name), "/version"),
            lambda s, h, b: colour is None or h.get("x-deploy-colour") == colour)
        return status, headers.get("x-deploy-colour"), body.strip()

    def versions(self):
        return [self.version(name)[1:] for name in HOSTS]

    def history(self, name):
        path = self.deploy_dirs[name] / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def state(self, name):
        return json.loads((self.deploy_dirs[name] / "state.json").read_text())

    def docker(self, name, *args):
        """`docker ARGS` against ``name``'s own daemon."""
        return self.hosts[name].daemon.docker(*args)


@pytest.fixture(scope="module")
def fleet(proj, fleet_hosts):
    hosts, _, balancer = fleet_hosts
    fleet = Fleet(proj, hosts, balancer)
    fab(proj, "setup")  # default_hosts: all three
    load = loadgen.Load(fleet.balancer_port, rate_fresh=40, rate_keepalive=20, threads_fresh=2,
                        keepalive_connections=2, timeout=5.0, max_seconds=1500,
                        max_requests=1_000_000).start()
    fleet.load = load
    fleet.bad_windows = []  # (from, to): a release of pages that answer 500 was live
    yield fleet
    records = load.stop()
    failed = [r for r in records if not r.ok and not (
        r.error.startswith("http 5") and any(a <= r.t <= b for a, b in fleet.bad_windows))]
    assert len(records) > 50 and not failed, (
        f"{len(failed)} of {len(records)} requests through the balancer failed: "
        f"{[(round(r.t, 2), r.error) for r in failed[:8]]}")


def table(result):
    """{host: (colour, commit, result)} from the fleet table."""
    rows = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in HOSTS and len(parts) >= 4 and len(parts[1]) <= 6:
            rows[parts[0]] = (parts[1], parts[2], " ".join(parts[3:]))
    return rows


def test_a_good_release_switches_every_host_together(fleet):
    p, app = fleet.project, fleet.project.app
    fleet.write(**{n: {"PRE_SWITCH_CMD": "echo migrated"} for n in HOSTS})
    app.commit("v2")
    t0 = fleet.load.now()
    r = fab(p, "release", "--parallel")
    out = output(r)
    spread = float(out.split("switch spread ")[1].split()[0])
    assert table(r) == {n: ("green", app.commits["v2"][:12], "ok") for n in HOSTS}, out
    assert [fleet.version(n, "green") for n in HOSTS] == [(200, "green", "v2")] * 3
    # PRE_SWITCH_ON=first: once, on web1; the others say it was skipped.
    assert out.count("PRE_SWITCH_CMD skipped here") == 2, out
    assert "web1  pre-switch" in out and "web2  pre-switch" not in out, out
    # Through the balancer, v1 and v2 interleave only within the spread
    # (plus nginx's hand-over and a request's time on each side).
    seen = [r for r in fleet.load.snapshot() if r.t >= t0 and r.ok]
    first_v2 = min(r.t for r in seen if r.version == "v2")
    last_v1 = max((r.t for r in seen if r.version == "v1"), default=first_v2)
    assert last_v1 - first_v2 <= spread + 0.5, (last_v1 - first_v2, spread)

    # --json: switch_spread_s on every host's object.
    fleet.write(**{n: {"PRE_SWITCH_CMD": "echo migrated", "PRE_SWITCH_ON": "every"}
                   for n in HOSTS})
    app.commit("v3")
    r = fab(p, "release", "--json")
    objs = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [o["host"] for o in objs] == list(HOSTS)
    assert all(o["result"] == "ok" and o["switch_spread_s"] >= 0 for o in objs), objs
    assert "PRE_SWITCH_CMD skipped" not in output(r)
    assert fleet.versions() == [("blue", "v3")] * 3
    fleet.write()


def test_a_host_failing_its_health_gate_switches_none(fleet):
    p, app = fleet.project, fleet.project.app
    before = fleet.versions()
    fleet.write(web2={"HEALTH_PATH": "/nothing-here", "HEALTH_TIMEOUT": "3"})
    app.commit("v4")
    web3_history = fleet.history("web3")
    # In order: web1 prepared, web2 fails, web3 never started; web1 put back.
    r = fab(p, "release", code=1)
    out = output(r)
    assert table(r)["web1"][2] == "put back" and table(r)["web2"][2] == "FAILED", out
    assert table(r)["web3"][2] == "not started", out
    assert "release failed on web2" in out and "put back: web1" in out, out
    assert fleet.versions() == before
    assert fleet.history("web3") == web3_history
    last = fleet.history("web1")[-1]
    assert last["result"] == "failed" and last.get("caused_by") == "web2", last

    # --parallel: every host prepared; web1 and web3 put back.
    r = fab(p, "release", "--parallel", code=1)
    assert {n: t[2] for n, t in table(r).items()} == {
        "web1": "put back", "web2": "FAILED", "web3": "put back"}, output(r)
    assert fleet.versions() == before
    fleet.write()


def test_a_verify_failing_after_the_others_switched_puts_all_back(fleet):
    p, app = fleet.project, fleet.project.app
    before = fleet.versions()
    # web3's nginx is never reloaded: its verify fails after web1 and web2 switched.
    fleet.write(web3={"NGINX_RELOAD_CMD": "true"})
    app.commit("v5")
    r = fab(p, "release", "--parallel", code=1)
    out = output(r)
    assert {n: t[2] for n, t in table(r).items()} == {
        "web1": "put back", "web2": "put back", "web3": "FAILED"}, out
    assert "switch spread" not in out
    fleet.write()
    assert fleet.versions() == before
    for name in ("web1", "web2"):
        assert fleet.history(name)[-1]["result"] == "failed"
        assert fleet.history(name)[-1].get("caused_by") == "web3"


def test_rollback_status_and_a_refused_rollback(fleet):
    p, app = fleet.project, fleet.project.app
    before = fleet.versions()
    live = before[0][0]
    other = "green" if live == "blue" else "blue"
    r = fab(p, "rollback")
    assert {n: t[:1] for n, t in table(r).items()} == {n: (other,) for n in HOSTS}, output(r)
    assert "switch spread" in r.stdout
    r = fab(p, "rollback")
    assert fleet.versions() == before

    # One host's other colour stopped: no host rolls back.
    fleet.docker("web2", "stop", f"{fleet.app_name}-{other}-1")
    r = fab(p, "rollback", code=1)
    assert "rollback failed on web2" in output(r), output(r)
    assert fleet.versions() == before

    # A mixed fleet: web1 alone on a new commit.
    app.commit("v6")
    fab(p, "-H", "web1", "release")
    r = fab(p, "status")
    mixed = [line for line in r.stdout.splitlines() if "mixed" in line]
    assert mixed and app.commits["v6"][:12] in mixed[0] and "web2" in mixed[0], r.stdout
    objs = [json.loads(line) for line in fab(p, "status", "--json").stdout.splitlines()]
    assert all(o.get("fleet") == "mixed" for o in objs), objs
    fab(p, "release", "--parallel")  # every host on v6 again
    assert {v for _, v in fleet.versions()} == {"v6"}


def test_batches_one_at_a_time_a_late_failure_puts_every_batch_back(fleet):
    p, app = fleet.project, fleet.project.app
    for bad in ("0", "x"):
        assert "--batch" in output(fab(p, "release", "--batch", bad, code=2))
    assert "--canary" in output(fab(p, "release", "--batch", "1", "--canary", "10", code=2))
    before = fleet.versions()
    fleet.write(web3={"NGINX_RELOAD_CMD": "true"})  # the last batch fails its verify
    app.commit("v7")
    r = fab(p, "release", "--batch", "1", code=1)
    out = output(r)
    assert {n: t[2] for n, t in table(r).items()} == {
        "web1": "put back", "web2": "put back", "web3": "FAILED"}, out
    # web1 and web2 had switched (one batch each) before web3 failed.
    assert "web1  switch" in out and "web2  switch" in out, out
    fleet.write()
    assert fleet.versions() == before
    r = fab(p, "release", "--batch", "2")
    assert {n: t[2] for n, t in table(r).items()} == {n: "ok" for n in HOSTS}, output(r)
    assert {v for _, v in fleet.versions()} == {"v7"}


CUT_AFTER_RELOAD = """#!/bin/sh
# The reload, then the SSH connection that ran it is cut (its sshd killed).
{reload} || exit 1
p=$$
while [ "$p" -gt 1 ]; do
  p=$(cut -d' ' -f4 /proc/$p/stat)
  [ "$(cat /proc/$p/comm)" = sshd ] && kill -9 "$p" && exit 0
done
"""


def test_a_connection_cut_during_the_switch_is_exit_3_and_the_next_run_sets_it_right(fleet):
    p, app = fleet.project, fleet.project.app
    cut = p.base / "cut-after-reload.sh"
    cut.write_text(CUT_AFTER_RELOAD.format(reload=fleet.hosts["web2"].nginx_reload_cmd))
    cut.chmod(0o755)
    fleet.write(web2={"NGINX_RELOAD_CMD": str(cut)})
    app.commit("v8")
    r = fab(p, "release", "--parallel", code=3)
    out = output(r)
    assert table(r)["web1"][2] == "put back" and table(r)["web3"][2] == "put back", out
    assert fleet.version("web1")[2] == "v7" and fleet.version("web3")[2] == "v7"
    fleet.write()
    r = fab(p, "release", "--parallel")  # takes web2's lock over, sets it right, releases
    assert {v for _, v in fleet.versions()} == {"v8"}, output(r)
    # web2 served v8 already: its state.json, which named the old colour, is rebuilt.
    states = [fleet.state(n) for n in HOSTS]
    assert {(one["live"], one["colours"][one["live"]]["commit"]) for one in states} == {
        (fleet.versions()[0][0], app.commits["v8"])}, (output(r), states)


def test_a_watch_revert_on_one_host_reverts_every_host(fleet):
    p, app = fleet.project, fleet.project.app
    before = fleet.versions()
    # Pages that answer 500; only web2 sees enough requests to judge.
    judge = {"WATCH_MIN_REQUESTS": "3"}
    never = {"WATCH_MIN_REQUESTS": "1000000"}
    fleet.write(web1=never, web2=judge, web3=never)
    app.commit("v9", kind="pages500")
    start = fleet.load.now()
    r = fab(p, "release", "--parallel", "--watch", "6", code=1)
    fleet.bad_windows.append((start, fleet.load.now()))
    out = output(r)
    assert {n: t[2] for n, t in table(r).items()} == {n: "reverted" for n in HOSTS}, out
    assert "reverted by the watch on every host" in out, out
    fleet.write()
    assert fleet.versions() == before
    for name in ("web1", "web3"):
        last = fleet.history(name)[-1]
        assert (last["result"], last.get("caused_by")) == ("reverted", "web2"), last


def test_a_lock_held_on_one_host_stops_the_run_before_any_host_changes(fleet):
    p, app = fleet.project, fleet.project.app
    lock = fleet.deploy_dirs["web3"] / ".lock"
    lock.mkdir()
    (lock / "owner.json").write_text(json.dumps({
        "machine": "another-laptop", "pid": 4242, "user": "ana", "command": "fab release",
        "started_at": int(time.time())}))
    try:
        before = {n: fleet.history(n) for n in HOSTS}
        served = fleet.versions()
        app.commit("v10")
        r = fab(p, "release", code=4)
        out = output(r)
        assert "release failed on web3" in out, out
        assert " git " not in out and " build " not in out, out  # nobody began
        assert {n: fleet.history(n) for n in HOSTS} == before
        assert fleet.versions() == served
    finally:
        (lock / "owner.json").unlink()
        lock.rmdir()


def test_batches_under_watch_a_bad_first_batch_stops_the_rest(fleet):
    p, app = fleet.project, fleet.project.app
    before = fleet.versions()
    fleet.write(web1={"WATCH_MIN_REQUESTS": "3"})
    app.commit("v11", kind="pages500")
    start = fleet.load.now()
    r = fab(p, "release", "--batch", "1", "--watch", "5", code=1)
    fleet.bad_windows.append((start, fleet.load.now()))
    out = output(r)
    assert {n: t[2] for n, t in table(r).items()} == {
        "web1": "FAILED", "web2": "not started", "web3": "not started"}, out
    assert "watch of web1's batch calls for a revert" in out, out
    fleet.write()
    assert fleet.versions() == before


class FleetSteps(RuleBasedStateMachine):
    """Random sequences of fleet tasks over web1..web3 (issue 33): releases
    (good; one host failing its health gate or its verify; --parallel or
    --batch 1), rollback, switch --to, release --no-switch then promote, a
    connection cut during the switch then the run that sets it right. After
    every step every host serves the same commit through its public port,
    every host's state.json names the same live colour and commits, and
    `status` over the fleet reports no mixed commits. ``FleetSteps.fleet``
    is the module's fleet, set by the test."""

    fleet = None
    labels = itertools.count()

    def __init__(self):
        super().__init__()
        f = self.fleet
        f.write()
        # Earlier tests (and sequences) end anywhere, each host's idle colour
        # on a build of its own (`-H web1 release`): two good builds, every host.
        self.commit = {}  # colour -> the commit every host's colour runs
        self.live = None
        self.label = {}  # commit -> version label
        self.release_good(["--parallel"])
        self.release_good(["--parallel"])

    def fab(self, *args, code=0):
        if VERBOSE:
            print("fab", *args, flush=True)
        return fab(self.fleet.project, *args, code=code)

    def new_commit(self, kind="ok"):
        label = f"m{next(self.labels)}"
        sha = self.fleet.project.app.commit(label, kind=kind)
        self.label[sha] = label
        return sha

    def release_good(self, how):
        sha = self.new_commit()
        self.fab("release", *how)
        self.live = self.fleet.state("web1")["live"] if self.live is None else other(self.live)
        self.commit[self.live] = sha

    # --- steps -----------------------------------------------------------------------

    @rule(how=st.sampled_from(HOW))
    def release(self, how):
        self.release_good(how)

    @rule(how=st.sampled_from(HOW), fault=st.sampled_from(("health", "verify")),
          bad=st.sampled_from(HOSTS))
    def release_failing_on_one_host(self, how, fault, bad):
        self.new_commit()
        self.fleet.write(**{bad: FAULTS[fault]})
        try:
            self.fab("release", *how, code=1)
        finally:
            self.fleet.write()

    @precondition(lambda self: self.commit.get(other(self.live)))
    @rule()
    def rollback(self):
        self.fab("rollback")
        self.live = other(self.live)

    @precondition(lambda self: self.commit.get(other(self.live)))
    @rule(idle=st.booleans())
    def switch_to(self, idle):
        if not idle:  # already live on every host: refused, nothing changes
            self.fab("switch", "--to", self.live, code=1)
            return
        self.fab("switch", "--to", other(self.live))
        self.live = other(self.live)

    @rule()
    def stage_then_promote(self):
        sha = self.new_commit()
        self.fab("release", "--no-switch")
        self.commit[other(self.live)] = sha
        self.check()  # staged everywhere, switched nowhere
        self.fab("promote")
        self.live = other(self.live)

    @rule()
    def connection_cut_then_the_next_run(self):
        f = self.fleet
        cut = f.project.base / "cut-after-reload.sh"
        cut.write_text(CUT_AFTER_RELOAD.format(reload=f.hosts["web2"].nginx_reload_cmd))
        cut.chmod(0o755)
        sha = self.new_commit()
        f.write(web2={"NGINX_RELOAD_CMD": str(cut)})
        try:
            self.fab("release", "--parallel", code=3)
        finally:
            f.write()
        self.fab("release", "--parallel")  # takes web2's lock over, sets it right
        state = f.state("web1")
        self.live = state["live"]
        self.commit = {c: state["colours"][c].get("commit") for c in COLOURS}
        assert self.commit[self.live] == sha, (self.label.get(self.commit[self.live]), state)

    # --- the promise -----------------------------------------------------------------

    @invariant()
    def every_host_serves_the_same_commit(self):
        self.check()

    def check(self):
        f = self.fleet
        want = self.label[self.commit[self.live]]
        served = {n: f.version(n, self.live)[1:] for n in HOSTS}
        assert set(served.values()) == {(self.live, want)}, served
        for name in HOSTS:
            state = f.state(name)
            assert state["live"] == self.live, (name, state)
            for colour in COLOURS:
                assert state["colours"][colour].get("commit") == self.commit[colour], (
                    name, colour, state, self.commit)
        rows = [json.loads(line) for line in self.fab("status", "--json").stdout.splitlines()]
        assert [r["host"] for r in rows] == list(HOSTS), rows
        for r in rows:
            assert "fleet" not in r and r["live"] == self.live, r
            assert r["colours"][self.live]["commit"] == self.commit[self.live], r


def other(colour):
    return "green" if colour == "blue" else "blue"


def test_fleet_sequences_serve_one_commit_after_every_step(fleet):
    """Every fleet operation once, in a fixed order, through FleetSteps (a
    derandomized Hypothesis run repeats its first rule); with
    BLUEGREEN_SEQUENCES=N, N random sequences instead (docs/sequences.md)."""
    FleetSteps.fleet = fleet
    if LONG:
        run_state_machine_as_test(FleetSteps, settings=settings(
            max_examples=LONG, stateful_step_count=10, deadline=None, database=None,
            print_blob=True, verbosity=Verbosity.verbose if VERBOSE else Verbosity.normal,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.explicit, Phase.generate, Phase.shrink]))
        return
    m = FleetSteps()
    steps = [
        ("release --batch 1", lambda: m.release(("--batch", "1"))),
        ("release, web2 failing its health gate", lambda: m.release_failing_on_one_host(
            (), "health", "web2")),
        ("release --parallel, web3 failing its verify", lambda: m.release_failing_on_one_host(
            ("--parallel",), "verify", "web3")),
        ("release --no-switch, promote", m.stage_then_promote),
        ("rollback", m.rollback),
        ("switch --to the live colour (refused), then the idle one",
         lambda: (m.switch_to(False), m.switch_to(True))),
        ("a connection cut during the switch, then the next run",
         m.connection_cut_then_the_next_run),
    ]
    for n, (name, step) in enumerate(steps, 1):
        try:
            step()
            m.check()
        except AssertionError as exc:
            done = "\n".join(f"  {i}. {s}" for i, (s, _) in enumerate(steps[:n], 1))
            raise AssertionError(f"step {n} ({name}) broke a promise:\n{done}\n{exc}") from None
