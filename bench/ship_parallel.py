"""One build shipped to N hosts at once: `fab release --parallel` with BUILD_ON=local.

N loopback hosts (default 10), each with a Docker daemon of its own and no
access to the app's repository (scripts/ownhost.py), all set up with the
busybox sample app. Then, for each login shell of the hosts' user
(--login-shell; `both`, the default, measures the stock one, which the
target is judged on, then this machine's root: bench/README.md), a new
commit is released:

1. to one host alone (`fab -H h0 release --json`): its build, and its
   time from the start of the ship to the end (save, ship, place, start,
   health, switch, verify, record);
2. to all N at once (`fab release --parallel --json`, default_hosts).

Target: the parallel release takes at most the build plus 3x one host's
ship-and-switch. All N hosts share this machine's cores with `fab`, so the
CPU of each side is printed too: fab's, the hosts' sshd with everything
their sessions ran, their dockerd with containerd, their nginx.

    .venv/bin/python bench/ship_parallel.py [--hosts 10] [--login-shell both]

Prints the figures and writes bench/out/ship_parallel.json.
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
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

import loophost as lh  # noqa: E402
import ownhost as oh  # noqa: E402
from benchhost import (FAB, add_login_shell_option, describe_machine, loadavg,  # noqa: E402
                       login_shell_sshd_options, login_shells, machine, need_venv, precompile,
                       tree_cpu)

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


class CpuMeter:
    """CPU seconds of each side of a run of `fab` against the hosts."""

    def __init__(self, hosts, daemons):
        self.sides = {"sshd": [h.sshd_pid for h in hosts],
                      "dockerd": [d.pid for d in daemons],
                      "nginx": [h.nginx_pid for h in hosts]}

    def now(self):
        t = os.times()
        return {"fab": t.children_user + t.children_system,
                **{side: tree_cpu(pids) for side, pids in self.sides.items()}}

    def around(self, run):
        """(what run() returned, {side: CPU seconds it cost})."""
        before = self.now()
        result = run()
        time.sleep(0.5)  # the hosts' sessions end and are reaped
        after = self.now()
        return result, {k: round(after[k] - before[k], 2) for k in after}


def measure(p, app, hosts, daemons, version):
    """One host's release, then every host's with --parallel -> figures."""
    meter = CpuMeter(hosts, daemons)
    app.commit(f"v{version}")
    ((one,), one_wall), one_cpu = meter.around(lambda: fab(p, "-H", "h0", "release", "--json"))
    one_after = sum(one["phases"].get(k, 0) for k in AFTER_BUILD)
    app.commit(f"v{version + 1}")
    (every, wall), par_cpu = meter.around(lambda: fab(p, "release", "--parallel", "--json"))
    build = max(o["phases"].get("build", 0) for o in every)
    return {
        "one_host": {"wall": round(one_wall, 2), "build": one["phases"].get("build"),
                     "ship_and_switch": round(one_after, 2), "cpu": one_cpu},
        "parallel": {"wall": round(wall, 2), "build": build,
                     "slowest_host": round(max(o["seconds"] for o in every), 2),
                     "bytes_per_host": [o["ship"]["bytes"] for o in every], "cpu": par_cpu},
        "target_seconds": round(build + 3 * one_after, 2),
        "loadavg": loadavg()}


def report(n, shell, f):
    o, par = f["one_host"], f["parallel"]
    met = "met" if par["wall"] <= f["target_seconds"] else "MISSED"
    extra = par["cpu"]["fab"] - o["cpu"]["fab"]
    judged = "judged" if shell == "stock" else "not judged: see bench/README.md"

    def cpu(c):
        return ", ".join(f"{k} {v:.2f}s" for k, v in c.items())

    return "\n".join([
        f"login shell: {shell} ({judged}); load average after {' '.join(f['loadavg'])}",
        f"  one host: build {o['build']}s, ship-and-switch {o['ship_and_switch']}s "
        f"(fab's wall time {o['wall']}s); CPU: {cpu(o['cpu'])}",
        f"  {n} hosts with --parallel: {par['wall']}s wall (build {par['build']}s, once; "
        f"slowest host {par['slowest_host']}s); CPU: {cpu(par['cpu'])}",
        f"  target build + 3 x ship-and-switch = {f['target_seconds']}s: {met}",
        # On separate hosts each one's sshd, docker and nginx run on its own
        # cores; what does not split is fab's extra CPU (its threads share a GIL).
        f"  on {n} separate hosts (estimate): one host's fab wall + fab's extra CPU = "
        f"{o['wall']}s + {extra:.2f}s = {o['wall'] + extra:.2f}s"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=10)
    add_login_shell_option(parser, default="both", both=True)
    args = parser.parse_args()
    n, shells = args.hosts, login_shells(args.login_shell)
    need_venv()
    precompile()
    oh.SecondDaemon.stop_abandoned()
    work = Path(tempfile.mkdtemp(prefix="bench-par-"))
    name = "bgt-bench-par"
    lh.claim_project(name)
    daemons, hosts, figures = [], [], {"machine": machine(), "hosts": n, "runs": {}}
    started = time.monotonic()
    try:
        app = lh.SampleApp(work / "app")
        app.commit("v1")
        for i in range(n):
            daemons.append(oh.SecondDaemon().start())
            hosts.append(oh.OwnHost(work / f"h{i}", daemons[-1], hide=[app.dir],
                                    sshd_options=login_shell_sshd_options(shells[0], work))
                         .start())
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
        for k, shell in enumerate(shells):
            if k:
                for h in hosts:
                    h.restart_sshd(login_shell_sshd_options(shell, work))
            figures["runs"][shell] = measure(p, app, hosts, daemons, 2 + 2 * k)
            print(report(n, shell, figures["runs"][shell]), flush=True)
    finally:
        subprocess.run(["docker", "rmi", "-f", *lh.app_image_ids(name)], capture_output=True)
        for h in hosts:
            h.stop()
        for d in daemons:
            d.stop()
        subprocess.run(["rm", "-rf", str(work)])
        lh.release_project(name)
    print(describe_machine(figures["machine"]))
    for shell, f in figures["runs"].items():
        print(report(n, shell, f))
    print(f"whole run {time.monotonic() - started:.0f}s; load average at the end "
          f"{' '.join(loadavg())}")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "ship_parallel.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
