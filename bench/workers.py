#!/usr/bin/env python3
"""Workers: what they add to a rollback, the hand-over, jobs across switches, exec.

    .venv/bin/python bench/workers.py [--repeat 5] [--switches 20] [--login-shell stock]

Two loopback hosts (bench/benchhost.py), the same busybox sample app on
both; one with a Procfile (a queue worker and a stop-first clock, the e2e
tests' tests/e2e/workerkit.py) and VOLUMES, one without. Figures are medians:

- rollback, paired: a rollback on the host without workers, then one on the
  host with them, each round. "web switched" is the rollback's wall time
  minus its `workers` phase: until web was switched, verified and recorded;
  the hand-over (the `workers` phase) is reported apart.
- jobs over --switches rollbacks at 10 jobs/s: lost, done twice, and the
  longest time between two jobs done (what "no worker running" costs, by
  the done files' mtimes), and whether the clock ever ran twice at once.
- `exec --reuse true` and `exec true` (a new container) against the SSH
  floors of bench/overhead.py: `ssh host true` (OpenSSH) and a fresh Python
  process that imports paramiko, connects and runs `true`; and against
  `ssh host docker exec WEB true`, --reuse's remote work without fab.
  `--exec-only`: only these (one host). `--login-shell stock`: judged on
  a stock login shell, as the other targets (bench/README.md).
"""

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))
sys.path.insert(0, str(HERE.parent / "tests"))

import benchhost  # noqa: E402
from overhead import floor_paramiko, floor_ssh  # noqa: E402
from workerkit import FILES, PROCFILE, JobStream, assert_one_clock  # noqa: E402


def med(values):
    return statistics.median(values) if values else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--switches", type=int, default=20)
    p.add_argument("--exec-only", action="store_true",
                   help="only the exec figures (one host, ~1 min)")
    benchhost.add_login_shell_option(p)
    args = p.parse_args(argv)
    jobs = Path(tempfile.mkdtemp(prefix="bluegreen-bench-jobs-"))
    plain = (contextlib.nullcontext() if args.exec_only
             else benchhost.BenchHost(login_shell=args.login_shell))
    with_workers = benchhost.BenchHost(settings={
        "VOLUMES": f"{jobs}:/jobs", "WORKER_READY_SECONDS": "1", "WORKER_STOP_TIMEOUT": "5"},
        login_shell=args.login_shell)
    with plain, with_workers:
        made = [(with_workers, PROCFILE)] + ([] if args.exec_only else [(plain, None)])
        for bh, procfile in made:
            bh.app.commit("v1", procfile=procfile, files=FILES)
            bh.check(bh.fab("setup")[0], "setup")
            bh.app.commit("v2", procfile=procfile, files=FILES)
            bh.check(bh.fab("release")[0], "release")
        if not args.exec_only:
            rollbacks(args, jobs, plain, with_workers)
        exec_figures(args, with_workers)


def rollbacks(args, jobs, plain, with_workers):
    without, web, handover = [], [], []
    for _ in range(args.repeat):
        s, wall, r = plain.fab_json("rollback", "--json")
        plain.check(r, "rollback")
        without.append(wall)
        s, wall, r = with_workers.fab_json("rollback", "--json")
        with_workers.check(r, "rollback")
        moved = s["phases"].get("workers", 0.0)
        web.append(wall - moved)
        handover.append(moved)
    print(f"rollback without workers {med(without):.2f}s; with workers: web switched "
          f"and verified {med(web):.2f}s ({med(web) / med(without):.2f}x), hand-over "
          f"{med(handover):.2f}s (medians of {args.repeat} paired rounds)")

    with JobStream(jobs, rate=10) as stream:
        for _ in range(args.switches):
            with_workers.check(with_workers.fab("rollback")[0], "rollback")
    done = stream.ledger(timeout=60)
    lost = [n for n in range(1, stream.sent + 1) if n not in done]
    twice = [n for n, lines in done.items() if len(lines) != 1]
    times = sorted((jobs / "done" / str(n)).stat().st_mtime for n in done)
    gap = max((b - a for a, b in zip(times, times[1:])), default=0.0)
    try:
        assert_one_clock(jobs)
        clock = "never two at once"
    except AssertionError:
        clock = "TWO AT ONCE"
    print(f"jobs over {args.switches} rollbacks at 10/s: {stream.sent} sent, {len(lost)} "
          f"lost, {len(twice)} done twice; longest time between two jobs done "
          f"{gap:.2f}s; clock: {clock}")


def exec_figures(args, with_workers):
    """exec against the floors. fab runs with its bytecode cached, as an
    installed tool does (a shell with PYTHONDONTWRITEBYTECODE=1 would
    otherwise compile the task modules on every run)."""
    bytecode = {"PYTHONDONTWRITEBYTECODE": None,
                "PYTHONPYCACHEPREFIX": tempfile.mkdtemp(prefix="bluegreen-bench-pyc-")}
    with_workers.check(with_workers.fab("exec", "--reuse", "true", env=bytecode)[0],
                       "exec --reuse true")  # fills the bytecode cache
    floors, py_floors, reuse, fresh, bare = [], [], [], [], []
    for _ in range(args.repeat):
        floors.append(floor_ssh(with_workers))
        bare.append(ssh_docker_exec(with_workers))
        py_floors.append(floor_paramiko(with_workers, extra_commands=0)["wall"])
        r, wall = with_workers.fab("exec", "--reuse", "true", env=bytecode)
        with_workers.check(r, "exec --reuse true")
        reuse.append(wall)
        r, wall = with_workers.fab("exec", "true", env=bytecode)
        with_workers.check(r, "exec true")
        fresh.append(wall)
    paired = med([r / f for r, f in zip(reuse, py_floors)])  # each round's own load
    print(f"exec --reuse true {med(reuse):.2f}s, exec true (new container) "
          f"{med(fresh):.2f}s; ssh host true {med(floors):.2f}s, python+paramiko "
          f"{med(py_floors):.2f}s: --reuse {med(reuse) / med(floors):.2f}x ssh's floor, "
          f"{med(reuse) / med(py_floors):.2f}x paramiko's (paired rounds: {paired:.2f}x; "
          f"target 1.3x); a new container is paramiko's floor + "
          f"{med(fresh) - med(py_floors):.2f}s (target 1.5 s); `ssh host docker exec WEB "
          f"true` {med(bare):.2f}s: --reuse {med(reuse) / med(bare):.2f}x it")


def ssh_docker_exec(bh):
    """What --reuse's remote work costs without fab: OpenSSH running `docker
    exec` in the live web container."""
    h = bh.host
    live = json.loads((bh.deploy_dir / "state.json").read_text())["live"]
    cmd = ["ssh", "-i", str(h.client_key), "-p", str(h.ssh_port),
           "-o", f"UserKnownHostsFile={h.known_hosts}", "-o", "StrictHostKeyChecking=yes",
           "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-F", "/dev/null",
           f"{h.user}@127.0.0.1", f"docker exec {bh.name}-{live}-1 true"]
    started = time.monotonic()
    subprocess.run(cmd, capture_output=True, timeout=60, check=True)
    return time.monotonic() - started


if __name__ == "__main__":
    main()
