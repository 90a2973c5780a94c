#!/usr/bin/env python3
"""Zero downtime, proven under load: the real `fab` against the seed's restart.

One command (see bench/README.md):

    .venv/bin/python bench/zero_downtime.py

starts its own loopback host (a private sshd and nginx, the machine's
dockerd) and sample app, runs `fab setup`, then, while two kinds of client
send requests to the public port,

1. reload (bluegreen): the real `fab` does --switches switches, alternating
   `release` (a new version committed to the sample repo first) and
   `rollback`;
2. restart (seed): the same number of switches done the seed's way: the
   nginx file for the other colour is written and the nginx master stopped
   (`nginx -s quit`, or `stop`) and started again.

It prints requests sent and failed per client kind, latency percentiles
overall and within one second after each switch, which version answered
over time, both approaches side by side, and draws bench/zero_downtime.png.
Traffic goes to 127.0.0.1 only; the whole run is bounded (--max-seconds).
"""

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "scripts"))

import benchhost  # noqa: E402
import loadgen  # noqa: E402  (scripts/loadgen.py: the e2e tests' and the demo's too)

APPROACHES = ("reload", "restart")
TITLES = {"reload": "reload (bluegreen)", "restart": "restart (seed)"}
WINDOW = 1.0  # seconds after a switch that count as "around the switch"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=200.0,
                   help="requests/s on fresh connections (default 200)")
    p.add_argument("--keepalive-rate", type=float, default=100.0,
                   help="requests/s on keep-alive connections (default 100)")
    p.add_argument("--keepalive-connections", type=int, default=4,
                   help="keep-alive connections (default 4)")
    p.add_argument("--post-every", type=int, default=4,
                   help="every Nth keep-alive request is a POST (default 4; 0: none)")
    p.add_argument("--threads", type=int, default=8,
                   help="threads for the fresh-connection client (default 8)")
    p.add_argument("--switches", type=int, default=20,
                   help="switches per approach (default 20: 10 releases, 10 rollbacks)")
    p.add_argument("--seconds-between", type=float, default=1.0,
                   help="steady load before, between and after switches (default 1.0)")
    p.add_argument("--stop", choices=("quit", "stop"), default="quit",
                   help="how the seed baseline stops nginx: quit (graceful, the "
                        "default) or stop (fast)")
    p.add_argument("--timeout", type=float, default=2.0,
                   help="client timeout per request in seconds (default 2)")
    p.add_argument("--max-seconds", type=float, default=480.0,
                   help="hard bound on each approach's load (default 480)")
    p.add_argument("--png", default=str(HERE / "zero_downtime.png"),
                   help="where to draw the plot ('' for none)")
    p.add_argument("--json", default=str(HERE / "out" / "zero_downtime.json"),
                   help="where to write every figure as JSON ('' for none)")
    p.add_argument("--only", choices=APPROACHES, help="run one approach only")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    if not 0 < args.rate <= 2000 or not 0 <= args.keepalive_rate <= 2000:
        p.error("--rate and --keepalive-rate: up to 2000 requests/s")
    if args.post_every < 0:
        p.error("--post-every: 0 (no POSTs) or more")
    if not 1 <= args.switches <= 200:
        p.error("--switches: 1 to 200")
    return args


# --- the two approaches ------------------------------------------------------


def make_load(bh, args):
    """Both clients on the public port, as the command line asks."""
    return loadgen.Load(bh.public_port, rate_fresh=args.rate,
                        rate_keepalive=args.keepalive_rate,
                        threads_fresh=args.threads,
                        keepalive_connections=args.keepalive_connections,
                        post_path=loadgen.SAMPLE_POST_PATH if args.post_every else None,
                        post_every=args.post_every or 1,
                        timeout=args.timeout, max_seconds=args.max_seconds)


def run_reload(bh, args, log):
    """The tool: alternate `fab release` (new version) and `fab rollback`."""
    switches = []
    version_of = {"blue": "v1", "green": None}
    live, next_version = "blue", 2
    load = make_load(bh, args)
    load.start()
    try:
        time.sleep(args.seconds_between)
        for i in range(args.switches):
            task = "release" if i % 2 == 0 else "rollback"
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
    return records, switches, load.skipped


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
        import subprocess
        subprocess.run(bh.host.nginx_reload_cmd, shell=True, capture_output=True)
    return records, switches, load.skipped


def version_map(bh):
    """Which version each colour runs now, from the app itself (through no nginx)."""
    import loophost as lh

    out = {}
    for colour, port in (("blue", bh.blue_port), ("green", bh.green_port)):
        status, _, body = lh.http_get(port, "/version", timeout=5)
        out[colour] = body.strip() if status == 200 else "?"
    return out


# --- figures -----------------------------------------------------------------


def figures(records, switches, skipped):
    """Everything the table, the timeline and the plot need, as plain data."""
    out = {"clients": {}, "switches": switches, "skipped": skipped}
    for kind in loadgen.KINDS:
        out["clients"][kind] = loadgen.tally(records, (kind,))._asdict()
    out["clients"]["keepalive POST"] = loadgen.tally(records, ("keepalive",), ("POST",))._asdict()
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
    duration = records[-1].t if records else 0.0
    out["seconds"] = round(duration, 1)
    out["rate"] = round(len(records) / duration, 1) if duration else 0.0
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


def table(results):
    cols = [a for a in APPROACHES if a in results]
    rows = []

    def row(label, fn):
        rows.append([label] + [fn(results[a]) for a in cols])

    def errors_text(c):
        return ", ".join(f"{k} {v}" for k, v in sorted(c["reasons"].items())) or "-"

    row("switches", lambda r: f"{len(r['switches'])} ({describe_tasks(r['switches'])})")
    row("load seconds, achieved req/s", lambda r: f"{r['seconds']:.0f} s, {r['rate']:.0f}/s")
    for kind, label in (("fresh", "fresh connections"), ("keepalive", "keep-alive")):
        row(f"{label}: sent", lambda r, k=kind: f"{r['clients'][k]['sent']:,}")
        row(f"{label}: failed", lambda r, k=kind: (
            f"{r['clients'][k]['failed']:,} ({100.0 * r['clients'][k]['failed'] / max(1, r['clients'][k]['sent']):.2f}%)"))
        row(f"{label}: failures by kind", lambda r, k=kind: errors_text(r["clients"][k]))
    row("keep-alive: of those, POST sent / failed", lambda r: (
        f"{r['clients']['keepalive POST']['sent']:,} / {r['clients']['keepalive POST']['failed']:,}"))
    row("keep-alive: failed on a reused connection",
        lambda r: f"{r['clients']['keepalive']['failed_on_reused']:,}")
    row("keep-alive: of those, one retry succeeded (GET only)",
        lambda r: f"{r['clients']['keepalive']['retry_ok']:,}")
    row("latency p50 / p99 (ms), all", lambda r: (
        f"{fmt_ms(r['latency_ms']['p50'])} / {fmt_ms(r['latency_ms']['p99'])}"))
    row(f"latency p50 / p99 (ms), <= {WINDOW:g} s after a switch", lambda r: (
        f"{fmt_ms(r['latency_ms']['near_p50'])} / {fmt_ms(r['latency_ms']['near_p99'])}"))
    row(f"failed <= {WINDOW:g} s after a switch", lambda r: f"{r['failed_near_switch']:,}")
    row("requests not sent (client behind)",
        lambda r: f"{r['skipped']['fresh'] + r['skipped']['keepalive']:,}")
    headers = ["", *[TITLES[a] for a in cols]]
    widths = [max(len(str(x[i])) for x in rows + [headers]) for i in range(len(headers))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths)))
             for r in [headers] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
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

    cols = [a for a in APPROACHES if a in results]
    versions = sorted({r.version for a in cols for r in raw[a][0] if r.ok and r.version},
                      key=version_key)
    # Red is for failures: no red, salmon or orange-red for a version.
    palette = [c for c in plt.get_cmap("tab20").colors
               if not (c[0] > 0.75 and c[1] < 0.7 and c[2] < 0.7)]
    colour_of = {v: palette[i % len(palette)] for i, v in enumerate(versions)}
    fig, axes = plt.subplots(len(cols), 1, figsize=(13, 3.6 * len(cols)), squeeze=False)
    bin_s = 0.1
    for ax, a in zip(axes[:, 0], cols):
        records, switches = raw[a][0], results[a]["switches"]
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
        ax.set_title(f"{TITLES[a]}: {len(switches)} switches ({describe_tasks(switches)}); "
                     f"failed: fresh {f['failed']}/{f['sent']}, keep-alive "
                     f"{k['failed']}/{k['sent']}", fontsize=10, loc="left")
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


def main(argv=None):
    args = parse_args(argv)
    benchhost.need_venv()
    can_plot = benchhost.ensure_bench_extra() if args.png else False

    def log(text):
        print(text, flush=True)

    m = benchhost.machine()
    log(f"machine: {benchhost.describe_machine(m)}")
    benchhost.precompile()
    log(f"load: fresh connections {args.rate:g} req/s ({args.threads} threads), keep-alive "
        f"{args.keepalive_rate:g} req/s ({args.keepalive_connections} connections), "
        f"timeout {args.timeout:g}s; {args.switches} switches per approach, "
        f"{args.seconds_between:g}s apart")
    started = time.monotonic()
    results, raw = {}, {}
    with benchhost.BenchHost(keep=args.keep) as bh:
        log(f"loopback host: sshd on 127.0.0.1:{bh.host.ssh_port}, nginx public port "
            f"{bh.public_port}; app {bh.name}")
        r, wall = bh.fab("setup")
        bh.check(r, "setup")
        log(f"fab setup: {wall:.1f}s (v1 live in blue)")
        live = "blue"
        if args.only in (None, "reload"):
            log(f"{TITLES['reload']}: fab release / fab rollback under load")
            raw["reload"] = run_reload(bh, args, log)
            live = raw["reload"][1][-1]["to"] if raw["reload"][1] else live
        if args.only in (None, "restart"):
            if args.only == "restart":  # two colours to switch between
                bh.app.commit("v2")
                r, _ = bh.fab("release")
                bh.check(r, "release")
                live = "green"
            log(f"{TITLES['restart']}: nginx file for the other colour, nginx -s "
                f"{args.stop}, start nginx, under load")
            raw["restart"] = run_restart(bh, args, log, live)
    for a, (records, switches, skipped) in raw.items():
        results[a] = figures(records, switches, skipped)

    log("")
    log(table(results))
    for a in results:
        log("")
        log(f"{TITLES[a]}: which version answered")
        for line in timeline(raw[a][0], results[a]["switches"]):
            log(line)
        for line in switch_lines(results[a]["switches"]):
            log(line)
    if can_plot and args.png:
        plot(results, raw, args.png)
        log(f"\nplot: {args.png}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(
            {"machine": m, "args": vars(args), "results": results,
             "loadavg_end": open("/proc/loadavg").read().split()[:3]}, indent=1) + "\n")
        log(f"figures: {args.json}")
    log(f"whole run: {time.monotonic() - started:.0f}s; load average at the end "
        f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    fresh_failed = results.get("reload", {}).get("clients", {}).get("fresh", {}).get("failed", 0)
    return 1 if fresh_failed else 0


if __name__ == "__main__":
    sys.exit(main())
