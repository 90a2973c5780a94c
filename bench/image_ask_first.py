"""`release --image` of an image the host already has: does it `docker save` first?

A loopback host (its Docker is this machine's, so after one release the host
has the image), the Python web-stack sample (~250 MB) built here as
NAME:1, released once with --image (it ships), then released again RUNS
times with --image (the host has it: "already on the host, nothing sent").
Each run's save and ship phases and wall time, medians printed.

    .venv/bin/python bench/image_ask_first.py [--root CHECKOUT] [--runs 3]

--root runs the `fab` of another checkout (an older commit, for "before").
"""

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchhost  # noqa: E402
from benchhost import BenchHost, need_venv  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=str(benchhost.ROOT))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    need_venv()
    benchhost.ROOT = Path(args.root).resolve()
    with BenchHost(settings={"HEALTH_TIMEOUT": "60"}) as b:
        b.check(b.fab("setup")[0], "setup")
        b.app.commit("v2", kind="pyweb")
        image = f"{b.name}-ci:1"
        subprocess.run(["docker", "build", "-q", "-t", image, str(b.app.work)], check=True,
                       capture_output=True)
        try:
            summary, _, r = b.fab_json("release", "--image", image, "--json")
            b.check(r, "release --image (first)")
            help_text = b.fab("--help", "release")[0].stdout
            # An older fab has no --force (nor its guard): a plain release again.
            force = ["--force"] if re.search(r"--force(?![-\w])", help_text) else []
            saves, ships, walls = [], [], []
            for _ in range(args.runs):
                summary, wall, r = b.fab_json("release", "--image", image, *force, "--json")
                b.check(r, "release --image (again)")
                assert summary["ship"].get("already_on_host"), summary["ship"]
                saves.append(summary["phases"].get("save", 0.0))
                ships.append(summary["phases"].get("ship", 0.0))
                walls.append(wall)
        finally:
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
    print(f"fab of {benchhost.ROOT}: --image of an image already on the host, median of "
          f"{args.runs}: save {statistics.median(saves):.2f}s, ship "
          f"{statistics.median(ships):.2f}s, whole release {statistics.median(walls):.2f}s")


if __name__ == "__main__":
    main()
