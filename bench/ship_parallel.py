"""One build shipped to N hosts at once: `fab release --parallel` with BUILD_ON=local.

N loopback hosts (default 10), each with a Docker daemon of its own and no
access to the app's repository (scripts/ownhost.py), all set up with the
busybox sample app. Then a new commit is released:

1. to one host alone (`fab -H h0 release --json`): its build, and its
   time from the start of the ship to the end (ship, place, start, health,
   switch, verify, record);
2. to all N at once (`fab release --parallel --json`, default_hosts).

Target: the parallel release takes at most the build plus 3x one host's
ship-and-switch.

    .venv/bin/python bench/ship_parallel.py [--hosts 10]

Prints the figures and writes bench/out/ship_parallel.json.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

import loophost as lh  # noqa: E402
import ownhost as oh  # noqa: E402
from benchhost import FAB, describe_machine, machine, need_venv  # noqa: E402

AFTER_BUILD = ("save", "ship", "place", "start", "health", "pre-switch", "switch", "verify",
               "record", "prune")


def fab(workdir, *args):
    started = time.monotonic()
    r = subprocess.run([str(FAB), "-r", str(ROOT), *args], cwd=workdir, capture_output=True,
                       text=True, timeout=1800)
    if r.returncode != 0:
        sys.exit(f"fab {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    return lines, time.monotonic() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=10)
    n = parser.parse_args().hosts
    need_venv()
    oh.SecondDaemon.stop_abandoned()
    work = Path(tempfile.mkdtemp(prefix="bench-par-"))
    name = "bgt-bench-par"
    lh.claim_project(name)
    daemons, hosts, figures = [], [], {"machine": machine(), "hosts": n}
    try:
        app = lh.SampleApp(work / "app")
        app.commit("v1")
        for i in range(n):
            daemons.append(oh.SecondDaemon().start())
            hosts.append(oh.OwnHost(work / f"h{i}", daemons[-1], hide=[app.dir]).start())
        inventory = {"hosts": {}, "default_hosts": []}
        for i, h in enumerate(hosts):
            entry = h.hosts_entry(f"h{i}")[f"h{i}"]
            public, blue, green = lh.free_ports(3)
            entry["env"] = {**h.env_settings(), "PUBLIC_PORT": str(public),
                            "BLUE_PORT": str(blue), "GREEN_PORT": str(green),
                            "DEPLOY_DIR": str(work / f"srv{i}")}
            inventory["hosts"][f"h{i}"] = entry
            inventory["default_hosts"].append(f"h{i}")
        p = work / "p"
        p.mkdir()
        (p / "hosts.yml").write_text(json.dumps(inventory))  # JSON is YAML
        (p / ".env").write_text(
            f"APP_NAME={name}\nGIT_REPO={app.repo}\nHEALTH_PATH=/health\n"
            f"HEALTH_INTERVAL=0.2\nSTOP_TIMEOUT=2\nBUILD_ON=local\n"
            # Host networking: ten compose networks would take ten of the
            # machine's address pools, which other test suites here need.
            f"DOCKER_NETWORK=host\n"
            f"LOCAL_BUILD_DIR={work / 'builds'}\n")
        fab(p, "setup")  # host by host: the first release of each

        app.commit("v2")
        (one,), one_wall = fab(p, "-H", "h0", "release", "--json")
        one_after = sum(one["phases"].get(k, 0) for k in AFTER_BUILD)
        app.commit("v3")
        every, wall = fab(p, "release", "--parallel", "--json")
        build = max(o["phases"].get("build", 0) for o in every)
        figures.update({
            "one_host": {"wall": round(one_wall, 2), "build": one["phases"].get("build"),
                         "ship_and_switch": round(one_after, 2)},
            "parallel": {"wall": round(wall, 2), "build": build,
                         "slowest_host": round(max(o["seconds"] for o in every), 2),
                         "bytes_per_host": [o["ship"]["bytes"] for o in every]},
            "target_seconds": round(build + 3 * one_after, 2)})
    finally:
        subprocess.run(["docker", "rmi", "-f", *lh.app_image_ids(name)], capture_output=True)
        for h in hosts:
            h.stop()
        for d in daemons:
            d.stop()
        subprocess.run(["rm", "-rf", str(work)])
        lh.release_project(name)
    o, par = figures["one_host"], figures["parallel"]
    print(describe_machine(figures["machine"]))
    print(f"one host: build {o['build']}s, ship-and-switch {o['ship_and_switch']}s "
          f"(fab's wall time {o['wall']}s)")
    print(f"{n} hosts with --parallel: {par['wall']}s wall (build {par['build']}s, once; "
          f"slowest host {par['slowest_host']}s); target build + 3 x ship-and-switch = "
          f"{figures['target_seconds']}s")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "ship_parallel.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
