"""`fab status` of many hosts against one host's: the hosts are asked at once.

    .venv/bin/python bench/status_hosts.py [--hosts 20] [--repeat 7]

Runs the real `fab` against a loopback host (bench/benchhost.py) with the
busybox sample app set up once. hosts.yml then names `--hosts` hosts that
all point at that loopback host (each its own SSH connection, handshake and
remote shell, as that many machines would get), and `fab status` over all
of them is timed against `fab -H web0 status`, alternated, `--repeat`
times. Target (issue 23): status of 20 hosts at most 2x one host's.

On this machine every one of those connections is served by the same two
cores that run `fab`: both ends of 20 SSH handshakes and 20 login shells
share them, which real hosts would not.
"""

import argparse
import re
import statistics

import yaml

from benchhost import HOST_NAME, BenchHost, describe_machine, machine, need_venv

TARGET = 2.0


def main(argv=None):
    need_venv()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    names = [f"web{n}" for n in range(args.hosts)]
    with BenchHost({"HEALTH_INTERVAL": "0.2"}) as bench:
        r, _ = bench.fab("setup")
        bench.check(r, "setup")
        entry = yaml.safe_load(bench.host.hosts_yaml(HOST_NAME))["hosts"][HOST_NAME]
        (bench.dir / "hosts.yml").write_text(yaml.safe_dump(
            {"hosts": {name: dict(entry) for name in names}, "default_hosts": names},
            sort_keys=False))
        bench.check(bench.fab("status")[0], "status")  # warm: the first run pays imports
        one, many = [], []
        for _ in range(args.repeat):
            r, wall = bench.fab("-H", names[0], "status")
            bench.check(r, "-H web0 status")
            one.append(wall)
            r, wall = bench.fab("status")
            bench.check(r, f"status of {args.hosts} hosts")
            rows = [line for line in r.stdout.splitlines() if re.match(r"web\d+\s", line)]
            if {row.split()[0] for row in rows} != set(names):
                raise RuntimeError(f"status did not answer for every host:\n{r.stdout}")
            many.append(wall)
    m1, mn = statistics.median(one), statistics.median(many)
    ratio = mn / m1
    print(describe_machine(machine()))
    print(f"status of 1 host: median {m1:.2f}s (runs {', '.join(f'{w:.2f}' for w in one)})")
    print(f"status of {args.hosts} hosts: median {mn:.2f}s "
          f"(runs {', '.join(f'{w:.2f}' for w in many)})")
    print(f"ratio {ratio:.2f}x (target <= {TARGET}x): {'met' if ratio <= TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()
