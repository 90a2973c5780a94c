"""A fleet's switch spread, and what each extra host costs `fab` (issue 33).

    .venv/bin/python bench/fleet_switch.py [--hosts 10] [--repeat 5]

Starts --hosts loopback hosts (each its own sshd, nginx master, DEPLOY_DIR,
ports and APP_NAME, scripts/loophost), sets the busybox sample app up on
all of them, then --repeat rounds of: a release of a new commit over all
hosts (--parallel), a rollback over all hosts, `fab status` over all hosts,
and the same three on one host. Prints the median switch spread of the
fleet's releases and rollbacks (`switch_spread_s` of the --json summary),
wall times, and `fab`'s own CPU (user + system, its rusage) per run: the
CPU per extra host is (fleet - one host) / (hosts - 1), a figure that does
not depend on this machine's 2 cores also serving every host's sshd, nginx
and Docker.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

import loophost as lh  # noqa: E402
from support.project import Project  # noqa: E402


def cpu_of_children():
    t = os.times()
    return t.children_user + t.children_system


def timed(project, *args):
    """(wall s, fab's CPU s, CompletedProcess) of one `fab` run; exit 0 or stop."""
    cpu, wall = cpu_of_children(), time.monotonic()
    r = project.fab(*args, timeout=600)
    wall, cpu = time.monotonic() - wall, cpu_of_children() - cpu
    if r.returncode != 0:
        sys.exit(f"fab {' '.join(args)} exited {r.returncode}:\n{r.stdout[-3000:]}"
                 f"\n{r.stderr[-3000:]}")
    return wall, cpu, r


def spread_of(result):
    objs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return objs[0].get("switch_spread_s") if objs else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=10)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-fleet-{os.getpid()}"
    hosts, apps = [], []
    try:
        for n in range(args.hosts):
            hosts.append(lh.LoopHost(work / f"host{n}").start())
        app = lh.SampleApp(work / "app")
        app.commit("v1")
        project = Project(work / "p", hosts[0], app)
        names = [f"web{n}" for n in range(args.hosts)]
        entries = {}
        for n, (name, host) in enumerate(zip(names, hosts)):
            entry = host.hosts_entry(name)[name]
            if n:
                app_name = f"{project.name}-{n}"
                lh.claim_project(app_name)
                apps.append(app_name)
                public, blue, green = lh.free_ports(3)
                entry["env"] = {"APP_NAME": app_name, **host.env_settings(),
                                "DEPLOY_DIR": str(work / "srv" / app_name),
                                "PUBLIC_PORT": public, "BLUE_PORT": blue, "GREEN_PORT": green}
            entries[name] = entry
        project.hosts_file.write_text(yaml.safe_dump(
            {"hosts": entries, "default_hosts": names}, sort_keys=False))
        timed(project, "setup")
        rows = {k: [] for k in ("release", "rollback", "status")}
        spreads = {"release": [], "rollback": []}
        for round_ in range(args.repeat):
            app.commit(f"v{round_ + 2}")
            for task, extra in (("release", ("--parallel",)), ("rollback", ()),
                                ("status", ())):
                wall, cpu, r = timed(project, task, *extra, "--json")
                if task in spreads:
                    spreads[task].append(spread_of(r))
                one_wall, one_cpu, _ = timed(project, "-H", "web0", task, "--json")
                rows[task].append((wall, cpu, one_wall, one_cpu))
            print(f"round {round_ + 1}: " + ", ".join(
                f"{t} {rows[t][-1][0]:.2f}s" for t in rows)
                + f"; spreads {spreads['release'][-1]} / {spreads['rollback'][-1]}", flush=True)
        med = statistics.median
        print(f"\n{args.hosts} hosts, {args.repeat} rounds, medians "
              f"(load average now {os.getloadavg()[0]:.1f}):")
        for task in spreads:
            print(f"switch spread, {task}: {med(spreads[task]):.3f} s "
                  f"(all: {', '.join(f'{s:.3f}' for s in spreads[task])})")
        for task, r in rows.items():
            wall, cpu, one_wall, one_cpu = (med(x[i] for x in r) for i in range(4))
            per = (cpu - one_cpu) / (args.hosts - 1)
            print(f"{task}: {args.hosts} hosts {wall:.2f}s wall, fab CPU {cpu:.2f}s; one host "
                  f"{one_wall:.2f}s, CPU {one_cpu:.2f}s; fab CPU per extra host {per:.3f}s")
    finally:
        for name in apps:
            lh.remove_compose_projects(name=name)
            lh.release_project(name)
        if "project" in locals():
            project.remove()
        for host in hosts:
            host.stop()


if __name__ == "__main__":
    main()
