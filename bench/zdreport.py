"""The figures, the table, the timeline, the verdicts and the plot of
bench/zero_downtime.py, from the records its runs collected (no I/O but the
plot's file)."""

from pathlib import Path

import loadgen

# The columns, in the order they run and are shown.
COLUMNS = ("reload", "reload-current", "restart")
WINDOW = 1.0  # seconds after a switch that count as "around the switch"


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
