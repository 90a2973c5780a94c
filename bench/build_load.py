"""The live colour's latency during a release whose build keeps every core busy:
BUILD_ON=host against BUILD_ON=local, and against no release at all.

    .venv/bin/python bench/build_load.py [--build-seconds 20 --rate 100 --rounds 1]

Two machines out of one, with CPU sets (scripts/cpusets.py): the production
host on --host-cpus (its own Docker daemon, scripts/ownhost.py, with its
containers and build steps under the daemon's --cgroup-parent; its sshd and
sessions; its nginx) and the machine running `fab` on --fab-cpus (`fab` and
the Docker daemon that does a local build, DOCKER_HOST). The app is the
busybox sample (scripts/loophost/apps.py) in bridge networking; every
request is GET /cgi-bin/slow?0, a CGI script: httpd forks a shell, which
runs `sleep 0`, so a request costs the app a little CPU. The release's
commit adds a build step that runs `nproc` busy loops for --build-seconds.

Three columns, measured in one run: the same load with no release, during
`fab release` with BUILD_ON=host, during `fab release` with BUILD_ON=local.
The load (scripts/loadgen.py, a new connection per request, on the host's
public nginx port) runs in this process, pinned to --load-cpus (default:
the host's CPUs; the README says why). Reported per column: client p50/p99
of the requests sent while the release ran (and while its busy loops
ran), nginx's $upstream_response_time for the same span, failed requests,
and where every part ran (Cpus_allowed_list and the CPUs it was seen on).
Each part gets --cpu-weight times the default CPU weight, so that the other
processes of a shared machine take only what it leaves of its CPUs (they
would otherwise crowd onto whichever CPU the build leaves free); the CPU
time of each machine's parts and of the rest is printed per column.
Goal (issue 23): p99 with BUILD_ON=local within 1.5x of no release, 0 failed.
Writes bench/out/build_load.json; exits 1 when the goal is missed.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in (ROOT, ROOT / "scripts", ROOT / "bench"):
    sys.path.insert(0, str(extra))

import cpusets as cs  # noqa: E402
import loadgen  # noqa: E402
import loophost as lh  # noqa: E402
import ownhost as oh  # noqa: E402
from benchhost import FAB, describe_machine, loadavg, machine, need_venv, precompile  # noqa: E402
from ship import project  # noqa: E402
from tasks.model.access_log import parse_log

GOAL = 1.5  # p99 with BUILD_ON=local at most this many times the p99 with no release
COLUMNS = ("none", "host", "local")
PATH = "/cgi-bin/slow?0"
BUSY = "build step busy loops"


class PinnedDaemon(oh.SecondDaemon):
    """A SecondDaemon in `cpuset`, whose containers (build steps too) go under it."""

    def __init__(self, cpuset):
        super().__init__()
        self.cpuset = cpuset

    def _dockerd_command(self, cmd):
        return self.cpuset.wrap([*cmd, "--cgroup-parent", self.cpuset.parent])


class PinnedHost(oh.OwnHost):
    """An OwnHost whose sshd (and so every session) and nginx start in `cpuset`."""

    def __init__(self, workdir, daemon, cpuset):
        super().__init__(workdir, daemon)
        self.cpuset = cpuset
        self._nginx_cmd = cpuset.wrap(self._nginx_cmd)

    def _sshd_command(self, cmd):
        return self.cpuset.wrap(super()._sshd_command(cmd))


# --- where things ran ---------------------------------------------------------------------


def container_pids(daemon):
    """The main process of each running container of `daemon` (docker inspect)."""
    ids = lh.nonblank_lines(daemon.docker("ps", "-q", timeout=30))
    r = daemon.docker("inspect", "--format", "{{.State.Pid}}", *ids, timeout=30) if ids else None
    return [int(p) for p in (lh.nonblank_lines(r) if r else []) if p.strip() not in ("", "0")]


def parts_of(sets, host_daemon):
    """What the sampler watches, by name. The colours' processes are found by
    asking the host's daemon (once: a docker CLI every tick would load the
    host's CPU), the busy loops by their marker anywhere on the machine."""
    colours = container_pids(host_daemon)
    host, fab = sets["host"], sets["fab"]
    return {
        "host: dockerd, containerd, sshd+sessions, nginx": host.pids,
        "host: containers (colours, host builds)": lambda: host.pids("containers"),
        "host: the colours' processes (docker inspect)": lambda: cs.descendants(colours),
        "fab machine: fab, git, docker CLI, its dockerd": fab.pids,
        "fab machine: containers (local builds)": lambda: fab.pids("containers"),
        "load generator (this process)": lambda: [os.getpid()],
        BUSY: lambda: cs.pids_where(is_busy_loop),
    }


def is_busy_loop(argv):
    """A loop of the build step (busybox sh -c LOOP MARKER): not its `timeout` nor its parent."""
    return argv[-1:] == [lh.BUSY_BUILD_MARKER] and argv[1:2] == ["sh"]


def snapshot(sets):
    """Per-CPU ticks and each cpuset's CPU seconds, now."""
    ticks, tick = cs.cpu_ticks()
    return {"ticks": ticks, "tick": tick, "used": {k: s.cpu_seconds() for k, s in sets.items()}}


def cpu_use(cpus, before, after):
    """For the host's and fab's CPUs: seconds busy (of seconds), each cpuset's
    part of it, and the rest: other processes on this machine (or the kernel).
    `cpus` is {cpuset role: frozenset of CPUs}; before/after from snapshot()."""
    out = {}
    for machine in ("host", "fab"):
        mine = cpus[machine]
        t0, t1, tick = before["ticks"], after["ticks"], after["tick"]
        busy = sum(t1[c][0] - t0[c][0] for c in mine) * tick
        ours = {role: after["used"][role] - before["used"][role] for role in cpus
                if cpus[role] <= mine and None not in (before["used"][role], after["used"][role])}
        out[machine] = {"cpus": cs.format_cpu_list(mine), "busy": round(busy, 1),
                        "of": round(sum(t1[c][1] - t0[c][1] for c in mine) * tick, 1),
                        "ours": {k: round(v, 1) for k, v in ours.items()},
                        "others": round(busy - sum(ours.values()), 1)}
    return out


# --- figures ------------------------------------------------------------------------------


def latency_figures(latencies_s):
    """{"n", "p50", "p99"} in ms of a list of seconds (None when empty)."""
    ms = [x * 1000 for x in latencies_s]
    p = {q: loadgen.percentile(ms, q) for q in (50, 99)}
    return {"n": len(ms), "p50": p[50] and round(p[50], 1), "p99": p[99] and round(p[99], 1)}


def in_span(records, start, end):
    """Requests sent in [start, end) on the load's clock."""
    return [r for r in records if start <= r.t < end]


def p99_ratio(columns, kind):
    """The p99 during `kind`'s release over the p99 with no release (None: no figure)."""
    base, p99 = columns["none"]["release"]["p99"], columns[kind]["release"]["p99"]
    return round(p99 / base, 2) if base and p99 is not None else None


def judge(columns, goal=GOAL):
    """(local's p99 over no release's, met?): met when within `goal` and nothing failed."""
    ratio = p99_ratio(columns, "local")
    failed = sum(c["failed"] for c in columns.values())
    return ratio, ratio is not None and ratio <= goal and failed == 0


# --- one column ---------------------------------------------------------------------------


def run_fab(workdir, fab_set, fab_daemon, *args, build_on="host"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
    env.update(BLUEGREEN_BUILD_ON=build_on, DOCKER_HOST=fab_daemon.host)
    started = time.monotonic()
    r = subprocess.run(fab_set.wrap([FAB, "-r", ROOT, *args, "--json"]), cwd=workdir, env=env,
                       capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - started
    if r.returncode != 0:
        raise RuntimeError(f"fab {' '.join(args)} (BUILD_ON={build_on}) exited "
                           f"{r.returncode}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1]), wall


def column(kind, ctx, args):
    """The load alone (kind "none") or during one release built on the host or locally."""
    if kind != "none":
        ctx["version"] += 1
        ctx["app"].commit(f"v{ctx['version']}", busy_build=args.build_seconds)
    load = loadgen.Load(ctx["port"], PATH, rate_fresh=args.rate, rate_keepalive=0,
                        threads_fresh=8, timeout=2.0, max_seconds=900, name=kind)
    avg_before, sets = loadavg(), ctx["sets"]
    watch = cs.Watch(parts_of(sets, ctx["host_daemon"]), load.now)
    with load, watch:
        epoch0 = time.time() - load.now()
        time.sleep(args.lead)
        start, before, summary = load.now(), snapshot(sets), None
        if kind == "none":
            time.sleep(args.window)
        else:
            summary, _ = run_fab(ctx["dir"], sets["fab"], ctx["fab_daemon"], "release",
                                 build_on=kind)
        end, after = load.now(), snapshot(sets)
        time.sleep(args.lead)
    records = load.snapshot()
    loops = watch.seen[BUSY]
    busy = (loops["first"], loops["last"]) if loops["first"] is not None else (start, end)
    text = Path(ctx["access_log"]).read_text() if Path(ctx["access_log"]).exists() else ""
    served = parse_log(text, epoch0 + start, epoch0 + end)
    failed = [r for r in records if r.error]
    return {
        "kind": kind, "sent": len(records), "failed": len(failed),
        "failures": sorted({r.error for r in failed}),
        "rate": round(len(records) / load.summary().seconds, 1),
        "release_seconds": round(end - start, 1),
        "phases": (summary or {}).get("phases", {}),
        "busy_loops": len(loops["pids"]), "busy_seconds": round(busy[1] - busy[0], 1),
        "seconds": {"release": [r.latency for r in in_span(records, start, end) if r.ok],
                    "busy": [r.latency for r in in_span(records, *busy) if r.ok],
                    "upstream": [r.upstream for r in served if r.proxied]},
        "server_5xx": sum(1 for r in served if r.status >= 500),
        "where": watch.figures(),
        "cpu": cpu_use({k: s.cpus for k, s in sets.items()}, before, after),
        "loadavg": {"before": avg_before, "after": loadavg()},
    }


# --- the run ------------------------------------------------------------------------------


def start_machines(ctx, work, name):
    """The host (daemon, sshd, nginx on its CPUs), fab's daemon, the app and the project,
    into `ctx` as they start (so that a failure stops what started)."""
    sets = ctx["sets"]
    ctx["host_daemon"] = PinnedDaemon(sets["host"]).start()
    ctx["fab_daemon"] = PinnedDaemon(sets["fab"]).start()
    ctx["host"] = PinnedHost(work / "host", ctx["host_daemon"], sets["host"]).start()
    ctx["app"] = lh.SampleApp(work / "app")
    ctx["app"].commit("v1")
    ctx["dir"] = work / "p"
    env = project(ctx["dir"], ctx["host"], ctx["app"], name)
    ctx["port"] = int(env["PUBLIC_PORT"])
    ctx["access_log"] = f"{env['DEPLOY_DIR']}/logs/access.log"


def measure(args, work, name):
    sets = {role: cs.Cpuset(role, cpus, args.cpu_weight) for role, cpus in
            (("host", args.host_cpus), ("fab", args.fab_cpus), ("load", args.load_cpus))}
    ctx, results = {"sets": sets, "version": 1}, {k: [] for k in COLUMNS}
    try:
        for s in sets.values():
            s.create()
        start_machines(ctx, work, name)
        run_fab(ctx["dir"], sets["fab"], ctx["fab_daemon"], "setup")
        sets["load"].add(os.getpid())  # the load's threads, and this one (the sampler)
        with loadgen.Load(ctx["port"], PATH, rate_fresh=args.rate, rate_keepalive=0,
                          name="warm-up"):
            time.sleep(3)
        for n in range(args.rounds):
            for kind in COLUMNS:
                print(f"round {n + 1}: {kind} ... (load average {' '.join(loadavg())})",
                      flush=True)
                results[kind].append(column(kind, ctx, args))
    finally:
        cs.remove_tree(sets["load"].name)  # moves this process back to the root cpuset
        for part in ("host", "host_daemon", "fab_daemon"):
            if ctx.get(part):
                ctx[part].stop()
        for s in sets.values():
            s.remove()
    return results, {k: str(s) for k, s in sets.items()}


def merged(runs):
    """One column from its --rounds runs: counts summed, percentiles over every request.

    The first run's other figures (where things ran, release seconds) stand
    for all; each run's own are kept under "rounds" (without raw latencies).
    """
    out = dict(runs[0], sent=sum(r["sent"] for r in runs),
               failed=sum(r["failed"] for r in runs),
               server_5xx=sum(r["server_5xx"] for r in runs))
    for key in ("release", "busy", "upstream"):
        out[key] = latency_figures([x for r in runs for x in r["seconds"][key]])
    for r in runs:
        r.update({key: latency_figures(r["seconds"].pop(key))
                  for key in ("release", "busy", "upstream")})
    del out["seconds"]
    if len(runs) > 1:
        out["rounds"] = runs
    return out


def report(columns, sets, args):
    def row(label, f):
        print(f"| {label:<58} | " + " | ".join(f"{f(columns[k])!s:<22}" for k in COLUMNS) + " |")
    names = {"none": "no release", "host": "BUILD_ON=host", "local": "BUILD_ON=local"}
    print("\n" + "\n".join(f"cpuset {k}: {v}" for k, v in sets.items()))
    print(f"load: {args.rate:g} requests/s, GET {PATH} (busybox CGI), a new connection each, "
          f"on CPUs {args.load_cpus_text}\n")
    row("", lambda c: names[c["kind"]])
    row("requests sent / failed", lambda c: f"{c['sent']} / {c['failed']}")
    row("release: seconds (busy loops' seconds, loops)",
        lambda c: "-" if c["kind"] == "none"
        else f"{c['release_seconds']} ({c['busy_seconds']}, {c['busy_loops']})")
    row("client p50 / p99 during the release (ms)", lambda c: "{p50} / {p99}".format(**c["release"]))
    row("client p50 / p99 while the build's loops ran (ms)",
        lambda c: "-" if c["kind"] == "none" else "{p50} / {p99}".format(**c["busy"]))
    row("nginx $upstream_response_time p50 / p99 (ms)",
        lambda c: "{p50} / {p99}".format(**c["upstream"]))
    row("answered 5xx (nginx's log)", lambda c: c["server_5xx"])
    row("load average before / after", lambda c: f"{c['loadavg']['before'][0]} / "
                                                 f"{c['loadavg']['after'][0]}")
    for m in ("host", "fab"):
        row(f"{m}'s CPUs ({columns['none']['cpu'][m]['cpus']}): busy s of s, of which others",
            lambda c: "{busy} of {of}, {others}".format(**c["cpu"][m]))
        row("  ... of which each cpuset on them (s)", lambda c: ", ".join(
            f"{k} {v}" for k, v in c["cpu"][m]["ours"].items()) or "-")
    print("\nwhere each part ran (Cpus_allowed_list; CPUs it was seen on), per column:")
    for part in columns["none"]["where"]:
        row(part, lambda c: "{allowed}; {ran_on} ({pids} pids)".format(**c["where"][part])
            if c["where"][part]["pids"] else "-")
    for kind in ("host", "local"):
        print(f"busy loops' cgroup, BUILD_ON={kind}: "
              f"{columns[kind]['where'][BUSY]['cgroups']}")


def main(argv=None):
    need_venv()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-seconds", type=float, default=20)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--window", type=float, default=30, help="seconds of the no-release column")
    ap.add_argument("--lead", type=float, default=2, help="seconds of load before and after")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--host-cpus", default="0")
    ap.add_argument("--fab-cpus", default="1")
    ap.add_argument("--load-cpus", default=None, help="default: the host's CPUs")
    ap.add_argument("--cpu-weight", type=int, default=100,
                    help="x the default CPU weight of each part against this machine's "
                         "other processes (1: none)")
    args = ap.parse_args(argv)
    args.load_cpus_text = args.load_cpus or args.host_cpus
    args.host_cpus, args.fab_cpus, args.load_cpus = (
        cs.parse_cpu_list(x) for x in (args.host_cpus, args.fab_cpus, args.load_cpus_text))
    if os.geteuid() != 0:
        sys.exit("build_load.py needs root: it makes cgroups and starts Docker daemons")
    if args.host_cpus & args.fab_cpus:
        sys.exit("--host-cpus and --fab-cpus overlap: they stand for two machines")
    precompile()
    info = machine()
    cs.remove_abandoned()
    oh.SecondDaemon.stop_abandoned()
    work = Path(tempfile.mkdtemp(prefix="bench-buildload-"))
    name = f"{lh.TEST_PREFIX}bench-buildload"
    lh.claim_project(name)
    try:
        results, sets = measure(args, work, name)
    finally:
        subprocess.run(["rm", "-rf", str(work)])
        lh.release_project(name)
    columns = {k: merged(v) for k, v in results.items()}
    ratio, met = judge(columns)
    print(describe_machine(info))
    report(columns, sets, args)
    print(f"\np99 with BUILD_ON=local / no release: {ratio}x (goal <= {GOAL}x, 0 failed): "
          f"{'met' if met else 'MISSED'}; BUILD_ON=host / no release: "
          f"{p99_ratio(columns, 'host')}x; load average at the end {' '.join(loadavg())}")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "build_load.json").write_text(json.dumps(
        {"machine": info, "cpusets": sets, "columns": columns, "ratio": ratio, "met": met},
        indent=2, default=sorted) + "\n")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
