"""`fab status` of many hosts against one host's: the hosts are asked at once.

    .venv/bin/python bench/status_hosts.py [--hosts 20] [--repeat 7] [--login-shell both]

Runs the real `fab` against a loopback host (bench/benchhost.py) with the
busybox sample app set up once. hosts.yml then names `--hosts` hosts that
all point at that loopback host (each its own SSH connection, handshake and
remote shell, as that many machines would get), and `fab status` over all
of them is timed against `fab -H web0 status`, alternated, `--repeat`
times. Target (issue 23): status of 20 hosts at most 2x one host's, judged
on a host whose user has a stock login shell (bench/README.md); `both`
(the default) measures that and this machine's root in turn.

On this machine every one of those connections is served by the same two
cores that run `fab`: both ends of 20 SSH handshakes and 20 login shells
share them, which real hosts would not. So the CPU each side used is
printed too (medians per run): fab's own (its rusage), the host's sshd and
everything it ran (the login shells, the docker CLI) and the machine's
dockerd with containerd (benchhost.tree_cpu).
"""

import argparse
import os
import re
import statistics
import time
from pathlib import Path

import yaml

from benchhost import (HOST_NAME, BenchHost, add_login_shell_option, describe_machine,
                       loadavg, login_shells, machine, need_venv, precompile, tree_cpu)

TARGET = 2.0
DOCKERD_PIDFILE = "/run/bluegreen-dockerd.pid"  # the machine's daemon (scripts/setup-host.sh)
SIDES = ("fab", "sshd", "dockerd")


def cpu_of_children():
    """CPU seconds (user + system) of this process's waited-for children so far:
    each `fab` once it has exited."""
    t = os.times()
    return t.children_user + t.children_system


def dockerd_pid():
    try:
        return int(Path(DOCKERD_PIDFILE).read_text().strip())
    except (OSError, ValueError):
        return None


def measure(login_shell, hosts, repeat):
    """{'one': [walls], 'many': [walls], 'cpu_one': s, 'cpu_many': s} for one login shell."""
    names = [f"web{n}" for n in range(hosts)]
    with BenchHost({"HEALTH_INTERVAL": "0.2"}, login_shell=login_shell) as bench:
        r, _ = bench.fab("setup")
        bench.check(r, "setup")
        entry = yaml.safe_load(bench.host.hosts_yaml(HOST_NAME))["hosts"][HOST_NAME]
        (bench.dir / "hosts.yml").write_text(yaml.safe_dump(
            {"hosts": {name: dict(entry) for name in names}, "default_hosts": names},
            sort_keys=False))
        bench.check(bench.fab("status")[0], "status")  # warm: the first run pays imports
        out = {key: [] for key in ("one", "many")}
        out.update({f"{side}_{key}": [] for side in SIDES for key in ("one", "many")})
        sshd, docker = bench.host.sshd_pid, dockerd_pid()

        def cpu():
            return {"fab": cpu_of_children(), "sshd": tree_cpu([sshd]),
                    "dockerd": tree_cpu([docker])}

        for _ in range(repeat):
            for key, args in (("one", ("-H", names[0], "status")), ("many", ("status",))):
                before = cpu()
                r, wall = bench.fab(*args)
                bench.check(r, " ".join(args))
                out[key].append(wall)
                time.sleep(0.3)  # sshd reaps the connections fab just closed
                after = cpu()
                for side in SIDES:
                    out[f"{side}_{key}"].append(after[side] - before[side])
                if key == "many":
                    rows = [line for line in r.stdout.splitlines() if re.match(r"web\d+\s", line)]
                    if {row.split()[0] for row in rows} != set(names):
                        raise RuntimeError(f"status did not answer for every host:\n{r.stdout}")
    return out


def main(argv=None):
    need_venv()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=7)
    add_login_shell_option(ap, default="both", both=True)
    args = ap.parse_args(argv)
    precompile()
    print(describe_machine(machine()), flush=True)
    started = time.monotonic()
    verdicts = []
    for shell in login_shells(args.login_shell):
        out = measure(shell, args.hosts, args.repeat)
        m1, mn = statistics.median(out["one"]), statistics.median(out["many"])
        ratio = mn / m1
        verdict = "met" if ratio <= TARGET else "MISSED"
        judged = "judged" if shell == "stock" else "not judged: see bench/README.md"
        print(f"\nlogin shell: {shell} ({judged}); load average now {' '.join(loadavg())}")
        for key, label in (("one", "1 host"), ("many", f"{args.hosts} hosts")):
            cpu = ", ".join(f"{side} {statistics.median(out[f'{side}_{key}']):.2f}s"
                            for side in SIDES)
            print(f"  status of {label}: median {statistics.median(out[key]):.2f}s wall "
                  f"(runs {', '.join(f'{w:.2f}' for w in out[key])}); CPU: {cpu}")
        print(f"  ratio {ratio:.2f}x (target <= {TARGET}x): {verdict}")
        # On separate hosts each one's sshd, shell and docker run on its own
        # cores; what does not split is fab's extra CPU (its threads share a GIL).
        extra = statistics.median(out["fab_many"]) - statistics.median(out["fab_one"])
        print(f"  on {args.hosts} separate hosts (estimate): 1 host's wall + fab's extra CPU "
              f"= {m1:.2f}s + {extra:.2f}s = {m1 + extra:.2f}s, {(m1 + extra) / m1:.2f}x")
        verdicts.append((shell, ratio, verdict))
    print()
    for shell, ratio, verdict in verdicts:
        print(f"{shell} login shell: status of {args.hosts} hosts / 1 host = {ratio:.2f}x "
              f"(target <= {TARGET}x): {verdict}")
    print(f"whole run {time.monotonic() - started:.0f}s; load average at the end "
          f"{' '.join(loadavg())}")


if __name__ == "__main__":
    main()
