"""The JVM app: how long a Clojure colour takes to answer, and what clients see.

Against a loopback host (bench/benchhost.py) with a current nginx, the
Clojure sample of scripts/jvmapp.py (no Dockerfile: the rendered
Dockerfile.clojure.j2 FROM the Debian-made JVM image, APP_CMD, migrations in
PRE_SWITCH_CMD) on a PostgreSQL cluster of its own, DOCKER_NETWORK=bridge:

- start to healthy: for each release, from the new container's start
  (`docker inspect` State.StartedAt) to the first 200 from its /health
  (which queries the database), polled every 20 ms on the colour's port;
- failed requests: `/` (a database query) at --rate requests/s through
  nginx, half on fresh connections and half on keep-alive ones, across
  --switches releases (each a new commit, its migration run before the
  switch). Goal: 0.

    .venv/bin/python bench/jvm.py [--switches 10] [--rate 100]

Prints the figures and writes bench/out/jvm.json.
"""

import argparse
import json
import secrets
import statistics
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchhost  # noqa: E402
from benchhost import BenchHost, lh  # noqa: E402

import jvmapp  # noqa: E402  (scripts/ is on sys.path through benchhost)
import loadgen  # noqa: E402


def started_at(name, colour):
    """The colour's container start, as seconds since the epoch."""
    text = lh.docker("inspect", "--format", "{{.State.StartedAt}}",
                     f"{name}-{colour}-1").stdout.strip()
    whole, _, frac = text.rstrip("Z").partition(".")
    return (datetime.fromisoformat(whole + "+00:00").timestamp()
            + float("0." + (frac or "0")[:6]))


class HealthWatch:
    """Polls http://127.0.0.1:PORT/health every 20 ms: (wall time, status, version)."""

    def __init__(self, port):
        self.port, self.samples = port, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            status, headers, _ = lh.http_get(self.port, "/health", timeout=1.0)
            self.samples.append((time.time(), status, headers.get("x-app-version", "")))
            self._stop.wait(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)

    def first_healthy(self, version, after):
        return next((t for t, status, v in self.samples
                     if t >= after and status == 200 and v == version), None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=10)
    parser.add_argument("--rate", type=float, default=100.0, help="requests/s, both kinds")
    args = parser.parse_args(argv)
    benchhost.need_venv()
    image = jvmapp.jvm_image()
    if not lh.base_image_present(image):
        sys.exit(f"{image} is missing: run ./scripts/setup-host.sh as root")
    m = benchhost.machine()
    print(benchhost.describe_machine(m), flush=True)
    with jvmapp.PgCluster(f"bgt_bench_{secrets.token_hex(3)}") as pg, \
            BenchHost(nginx="current") as bench:
        app = jvmapp.ClojureApp(bench.work / "clojure-app")
        app.commit("v1")
        url = pg.create_database("bench", "bench", secrets.token_hex(12))
        env_file = bench.work / "app.env"
        env_file.write_text(f"DATABASE_URL={url}\n")
        with (bench.dir / ".env").open("a") as env:  # dotenv: the last value wins
            for key, value in {"GIT_REPO": app.repo, "CLOJURE_BASE_IMAGE": image,
                               "APP_CMD": jvmapp.APP_CMD, "PRE_SWITCH_CMD": jvmapp.MIGRATE_CMD,
                               "APP_ENV_FILE": env_file, "HEALTH_TIMEOUT": 120,
                               "HEALTH_INTERVAL": 0.5, "STOP_TIMEOUT": 10}.items():
                env.write(f"{key}='{value}'\n")
        r, wall = bench.fab("setup")
        bench.check(r, "setup")
        print(f"setup (first build and release of the JVM app): {wall:.1f}s", flush=True)
        ports = {"blue": bench.blue_port, "green": bench.green_port}
        live, rows = "blue", []
        load = loadgen.Load(bench.public_port, path="/", rate_fresh=args.rate / 2,
                            rate_keepalive=args.rate / 2, threads_fresh=8,
                            keepalive_connections=8, timeout=5.0, max_seconds=3600,
                            accept=lambda status, headers, body: " items " in body,
                            name="jvm")
        with load:
            load.wait_for(int(args.rate))
            for n in range(2, args.switches + 2):
                target = "green" if live == "blue" else "blue"
                version = f"v{n}"
                app.commit(version, query="v2",
                           migrations=("001-create-items.sql", "002-add-note.sql"))
                with HealthWatch(ports[target]) as watch:
                    summary, wall, r = bench.fab_json("release", "--json")
                    bench.check(r, "release")
                start = started_at(bench.name, target)
                healthy = watch.first_healthy(version, start)
                phases = (summary or {}).get("phases", {})
                rows.append({"version": version, "colour": target, "release_s": round(wall, 2),
                             "start_to_healthy_s": round(healthy - start, 2) if healthy else None,
                             "health_phase_s": phases.get("health"),
                             "pre_switch_s": phases.get("pre-switch")})
                print(f"{version} -> {target}: release {wall:.1f}s, container start to first "
                      f"healthy answer {rows[-1]['start_to_healthy_s']}s, health phase "
                      f"{phases.get('health')}s, migration {phases.get('pre-switch')}s",
                      flush=True)
                live = target
            time.sleep(2)
        summary = load.summary()
        print(summary.text())
        healthy = [row["start_to_healthy_s"] for row in rows if row["start_to_healthy_s"]]
        print(f"start to first healthy answer over {len(healthy)} releases: median "
              f"{statistics.median(healthy):.2f}s, min {min(healthy):.2f}s, "
              f"max {max(healthy):.2f}s")
        out = HERE / "out"
        out.mkdir(exist_ok=True)
        (out / "jvm.json").write_text(json.dumps({
            "machine": m, "rate": args.rate, "switches": args.switches, "releases": rows,
            "requests": summary.total.sent, "failed": summary.total.failed,
            "failed_by_reason": dict(summary.total.reasons)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
