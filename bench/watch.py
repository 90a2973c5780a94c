"""How fast `--watch` reverts a bad release, what a canary costs, and what the watch costs the host.

Three runs of the real `fab` against a loopback host, under a steady load
of 100 requests/s (scripts/loadgen.py; every request a different client, so
nginx's split_clients spreads them over a canary's share):

1. `release --watch 30` of a version whose pages all answer 500 (its health
   path is fine, so the gate passes): seconds from the first 5xx the load
   saw to the last one (the revert), and as the watch measured it.
2. `release --canary 10 --watch 30` of such a version: the share of the
   load's requests that failed between the canary's first and last answer.
3. `release --watch 30` of a good version: the CPU time the task's remote
   shell used on the host during the watch (from /proc/<pid>/stat of the
   shell, its children included), per minute of watching.

Run: .venv/bin/python bench/watch.py   (about 2 minutes)
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
import loadgen  # noqa: E402

RATE = 100.0


def log(text):
    print(text, flush=True)


def under_load(bh, *args):
    """Run `fab ARGS --json` under RATE requests/s -> (JSON object, records, CompletedProcess)."""
    load = loadgen.Load(bh.public_port, rate_fresh=RATE, rate_keepalive=0, threads_fresh=6,
                        timeout=3.0, max_seconds=120, max_requests=20000,
                        distinct_clients=True)
    load.start()
    try:
        time.sleep(1.0)
        result, _, r = bh.fab_json(*args, "--json", timeout=240)
        time.sleep(1.0)
    finally:
        records = load.stop()
    return result, records, r


def failed_window(records):
    """(failed, requests) between the first and the last failed request."""
    failures = [r for r in records if not r.ok]
    if not failures:
        return 0, 0, None, None
    first, last = failures[0].t, failures[-1].t
    window = [r for r in records if first <= r.t <= last]
    return len(failures), len(window), first, last + failures[-1].latency


def full_release_revert(bh):
    bh.app.commit("v2", kind="pages500")
    result, records, r = under_load(bh, "release", "--watch", "30")
    if r.returncode != 1 or not result or result.get("result") != "reverted":
        raise RuntimeError(f"expected a revert:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    failed, _, first, last = failed_window(records)
    watch = result["watch"]
    return {"failed": failed, "requests": len(records),
            "revert_after_first_5xx_load": round(last - first, 2),
            "revert_after_first_5xx_watch": watch.get("reverted_after_first_5xx"),
            "watch": watch}


def canary_revert(bh, percent=10):
    bh.app.commit("v3", kind="pages500")
    result, records, r = under_load(bh, "release", "--canary", str(percent), "--watch", "30")
    if r.returncode != 1 or not result or result.get("result") != "reverted":
        raise RuntimeError(f"expected a revert:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    canary = [rec for rec in records if rec.colour == "green"]
    window = [rec for rec in records if canary and canary[0].t <= rec.t <= canary[-1].t]
    failed = [rec for rec in window if not rec.ok]
    return {"percent": percent, "window_requests": len(window), "window_failed": len(failed),
            "failed_share": round(len(failed) / len(window), 4) if window else None,
            "watch": result["watch"]}


def watch_cost(bh, seconds=30):
    bh.app.commit("v4")
    result, records, r = under_load(bh, "release", "--watch", str(seconds))
    bh.check(r, "release --watch")
    watch = result["watch"]
    cpu = watch["host_cpu_seconds"]
    return {"seconds": watch["seconds"], "host_cpu_seconds": cpu,
            "host_cpu_per_minute": round(cpu * 60 / watch["seconds"], 3),
            "requests_read": sum(c["requests"] for c in watch["colours"].values()),
            "failed": sum(1 for rec in records if not rec.ok)}


def main(argv=None):
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    benchhost.need_venv()
    m = benchhost.machine()
    log(f"machine: {benchhost.describe_machine(m)}")
    benchhost.precompile()
    out = {"machine": m, "rate": RATE}
    with benchhost.BenchHost() as bh:
        bh.check(bh.fab("setup")[0], "setup")
        out["full"] = full = full_release_revert(bh)
        log(f"release --watch, every page 500: reverted {full['revert_after_first_5xx_load']}s "
            f"after the first 5xx the load saw ({full['revert_after_first_5xx_watch']}s by the "
            f"watch's own figure: host clock to the verified switch back); {full['failed']} of {full['requests']} requests failed")
        out["canary"] = canary = canary_revert(bh)
        log(f"release --canary 10 --watch, every page 500: {canary['window_failed']} of "
            f"{canary['window_requests']} requests in the canary's window failed "
            f"({canary['failed_share']:.1%}); reverted after {canary['watch']['seconds']}s")
        out["cost"] = cost = watch_cost(bh)
        log(f"release --watch 30 of a good version: the host's shell used "
            f"{cost['host_cpu_seconds']}s CPU in {cost['seconds']}s of watching "
            f"({cost['host_cpu_per_minute']}s per minute) reading {cost['requests_read']} "
            f"requests; {cost['failed']} failed")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "watch.json").write_text(json.dumps(out, indent=2, default=str))
    ok = (full["revert_after_first_5xx_load"] <= 3.0 and canary["failed_share"] is not None
          and canary["failed_share"] <= 0.12)
    log("targets (revert within 3 s; canary 10 %: at most 12 % failed): "
        + ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
