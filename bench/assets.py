"""Assets across switches: how many asset requests of pages loaded before a
switch fail, with ASSET_PATHS bridging and without.

    .venv/bin/python bench/assets.py [--switches 20] [--gap 0.3] [--nginx distro|current]

Runs the real `fab` against a loopback host (bench/benchhost.py) with the
busybox sample app, whose every version names its assets by a hash of the
version (/assets/app-<fp>.js, /static/css/main.<fp>.css, and
/media/logo-<fp>.txt, which is outside the default ASSET_PATHS). For each
mode (bridging on: the default ASSET_PATHS; off: ASSET_PATHS empty) it
releases `switches` new versions, and meanwhile:

- a browser-like client loops: load the page, wait `gap` seconds (parsing),
  then fetch the page's assets; every asset answer that is not 200 is a
  failure, counted apart for paths in and outside ASSET_PATHS;
- before each release, one page is loaded and its assets are fetched right
  after the switch (the case bridging is for: a page open in a tab).
"""

import argparse
import http.client
import re
import threading
import time

from benchhost import BenchHost, describe_machine, lh, loadavg, machine, need_venv

ASSET_RE = re.compile(r'(?:src|href)="(/[^"]+)"')
BRIDGED = ("/assets/", "/static/")  # of the sample app's paths, those in the default ASSET_PATHS


def get(port, path):
    """GET 127.0.0.1:port/path -> (status or None, body)."""
    conn = http.client.HTTPConnection(lh.LOOPBACK, port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return None, str(exc)
    finally:
        conn.close()


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}  # (kind, "ok"|"failed") -> n

    def add(self, kind, ok):
        with self.lock:
            key = (kind, "ok" if ok else "failed")
            self.counts[key] = self.counts.get(key, 0) + 1

    def line(self, kind):
        ok, failed = self.counts.get((kind, "ok"), 0), self.counts.get((kind, "failed"), 0)
        return f"{failed} failed of {ok + failed}"


def fetch_assets(port, assets, tally, prefix):
    for path in assets:
        status, _ = get(port, path)
        inside = path.startswith(BRIDGED)
        tally.add(f"{prefix} {'in ASSET_PATHS' if inside else 'outside'}", status == 200)


def page_assets(port):
    status, body = get(port, "/")
    return ASSET_RE.findall(body) if status == 200 else None


def browser(port, gap, tally, stop):
    while not stop.is_set():
        assets = page_assets(port)
        if assets is None:
            tally.add("page", False)
            continue
        tally.add("page", True)
        time.sleep(gap)
        fetch_assets(port, assets, tally, "looping client:")


def run(mode, switches, gap, nginx):
    settings = {"HEALTH_INTERVAL": "0.1", "HEALTH_PASSES": "1", "KEEP_RELEASES": "3"}
    if mode == "off":
        settings["ASSET_PATHS"] = ""
    tally, stop = Tally(), threading.Event()
    with BenchHost(settings, nginx=nginx) as bench:
        r, _ = bench.fab("setup")
        bench.check(r, "setup")
        client = threading.Thread(target=browser, args=(bench.public_port, gap, tally, stop),
                                  daemon=True)
        client.start()
        started = time.monotonic()
        for n in range(2, switches + 2):
            open_tab = page_assets(bench.public_port)
            bench.app.commit(f"v{n}")
            r, _ = bench.fab("release")
            bench.check(r, "release")
            fetch_assets(bench.public_port, open_tab, tally, "page loaded before the switch:")
        stop.set()
        client.join(10)
        seconds = time.monotonic() - started
    return tally, seconds


def main(argv=None):
    need_venv()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--switches", type=int, default=20)
    ap.add_argument("--gap", type=float, default=0.3)
    ap.add_argument("--nginx", choices=("distro", "current"), default="distro")
    args = ap.parse_args(argv)
    load_before = loadavg()
    results = {mode: run(mode, args.switches, args.gap, args.nginx) for mode in ("on", "off")}
    print(describe_machine(machine()))
    print(f"load average at start {load_before}, at end {loadavg()}")
    print(f"{args.switches} switches (a release each), nginx {args.nginx}, gap {args.gap:g}s "
          "between a page and its assets")
    kinds = ["page loaded before the switch: in ASSET_PATHS",
             "page loaded before the switch: outside",
             "looping client: in ASSET_PATHS", "looping client: outside", "page"]
    for mode, (tally, seconds) in results.items():
        print(f"bridging {mode} (ASSET_PATHS {'default' if mode == 'on' else 'empty'}), "
              f"{seconds:.0f}s:")
        for kind in kinds:
            print(f"  {kind + ':':50s} {tally.line(kind)}")


if __name__ == "__main__":
    main()
