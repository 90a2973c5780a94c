"""What one SSH connection of a task costs on loopback: connect, a step
(`run("true")`) and an HTTP probe over a direct-tcpip channel, medians.

Moved here from tests/e2e/test_host_module.py (timings are not asserted in
tests). Starts its own loopback host (scripts/loophost/) and a small HTTP
server on 127.0.0.1; removes both on exit.

    .venv/bin/python bench/host_timings.py [--connects 5 --runs 10 --probes 30]
"""

import argparse
import http.server
import statistics
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import loophost as lh  # noqa: E402  (scripts/ is not a package)
from tasks.configuration.inventory import HostEntry
from tasks.connection.ssh import Host


class Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")

    def log_message(self, *args):
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connects", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--probes", type=int, default=30)
    args = ap.parse_args(argv)
    settings = types.SimpleNamespace(known_hosts="/nonexistent/known_hosts", deploy_ssh_key="",
                                     deploy_known_hosts="", connect_timeout=5.0)
    with tempfile.TemporaryDirectory(prefix="bench-host-") as d:
        host = lh.LoopHost(d).start()
        web = http.server.ThreadingHTTPServer((lh.LOOPBACK, lh.free_port()), Quiet)
        threading.Thread(target=web.serve_forever, daemon=True).start()
        try:
            entry = HostEntry(name="bench", host=lh.LOOPBACK, user=host.user,
                              port=host.ssh_port, identity_file=str(host.client_key),
                              known_hosts=str(host.known_hosts))
            connects, runs, probes = [], [], []
            for _ in range(args.connects):
                h = Host(entry, settings)
                started = time.perf_counter()
                h.connect()
                connects.append(time.perf_counter() - started)
                h.close()
            with Host(entry, settings) as h:
                for _ in range(args.runs):
                    started = time.perf_counter()
                    h.run("true")
                    runs.append(time.perf_counter() - started)
                for _ in range(args.probes):
                    started = time.perf_counter()
                    h.http(web.server_address[1], "/")
                    probes.append(time.perf_counter() - started)
        finally:
            web.shutdown()
            host.stop()
    med = {k: statistics.median(v) * 1000 for k, v in
           (("connect", connects), ("run", runs), ("http", probes))}
    print(f"host timings on loopback (medians): connect {med['connect']:.1f} ms, "
          f"run('true') {med['run']:.1f} ms, http() {med['http']:.2f} ms")


if __name__ == "__main__":
    main()
