"""Kept releases: how fast `rollback --to` a kept release is, and how many
images the app has on the host after many releases.

    .venv/bin/python bench/kept_releases.py [--releases 20] [--keep 3] [--rollbacks 5]

Runs the real `fab` against a loopback host (bench/benchhost.py) in bridge
mode with the busybox sample app: `releases` releases (a new commit each),
counting the app's distinct images after each; then `rollbacks` times
`rollback --to` an older kept release (alternating two of them), reporting
the whole command's wall time, its own `seconds`, and those minus the start
and health phases (the app's own start and health time). Targets:
rollback --to <= 1.5 s plus start and health; images <= KEEP_RELEASES + 2.
"""

import argparse
import statistics
import sys

from benchhost import BenchHost, describe_machine, lh, machine, need_venv


def main(argv=None):
    need_venv()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--releases", type=int, default=20)
    ap.add_argument("--keep", type=int, default=3)
    ap.add_argument("--rollbacks", type=int, default=5)
    args = ap.parse_args(argv)
    settings = {"DOCKER_NETWORK": "bridge", "KEEP_RELEASES": str(args.keep),
                "HEALTH_INTERVAL": "0.1", "HEALTH_PASSES": "1"}
    with BenchHost(settings) as bench:
        r, _ = bench.fab("setup")
        bench.check(r, "setup")
        counts = []
        for n in range(2, args.releases + 1):
            bench.app.commit(f"v{n}")
            r, _ = bench.fab("release")
            bench.check(r, "release")
            counts.append(len(lh.app_image_ids(bench.name)))
        commits = bench.app.commits
        # Two kept releases that no colour runs now or alternately.
        targets = [commits[f"v{args.releases - 2}"], commits[f"v{args.releases - 1}"]]
        walls, own, net = [], [], []
        for i in range(args.rollbacks):
            commit = targets[i % 2]
            summary, wall, r = bench.fab_json("rollback", "--to", commit[:8], "--json")
            bench.check(r, "rollback --to")
            phases = summary["phases"]
            assert "build" not in phases and "git" not in phases, phases
            walls.append(wall)
            own.append(summary["seconds"])
            net.append(summary["seconds"] - phases.get("start", 0) - phases.get("health", 0))
        final = len(lh.app_image_ids(bench.name))
    print(describe_machine(machine()))
    print(f"releases: {args.releases} (KEEP_RELEASES={args.keep}); app images after each: "
          f"{counts}; max {max(counts)}, at the end {final} (target <= {args.keep + 2})")
    print(f"rollback --to x{args.rollbacks}: wall median {statistics.median(walls):.2f}s "
          f"(max {max(walls):.2f}s); fab's own seconds median {statistics.median(own):.2f}s; "
          f"without start and health median {statistics.median(net):.2f}s "
          f"(max {max(net):.2f}s; target <= 1.5s)")
    ok = max(counts) <= args.keep + 2 and max(net) <= 1.5
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
