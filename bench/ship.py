"""BUILD_ON=local: what shipping an image costs, against `docker save | ssh docker load`.

Two hosts on loopback, each with a Docker daemon of its own and unable to
read the app's repository (scripts/ownhost.py). The Python web-stack
sample app (Debian base, ~250 MB) is built here, on the machine's daemon.

1. First ship: `fab setup` with BUILD_ON=local into host A (every layer
   travels) vs `docker save IMAGE | gzip | ssh B docker load` into host B.
   Compared: fab's save + ship phases vs the pipeline's wall time.
2. A one-line change: the bytes `fab release` sent vs the whole image
   (`docker save | wc -c`, what `docker save | ssh docker load` sends).

    .venv/bin/python bench/ship.py

Prints the figures and writes bench/out/ship.json.
"""

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


def fab(workdir, *args):
    r = subprocess.run([str(FAB), "-r", str(ROOT), *args], cwd=workdir, capture_output=True,
                       text=True, timeout=1800)
    if r.returncode != 0:
        sys.exit(f"fab {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def project(workdir, host, app, name):
    """.env and hosts.yml for `fab` in workdir (BUILD_ON=local); returns the settings."""
    public, blue, green = lh.free_ports(3)
    env = {"APP_NAME": name, "GIT_REPO": str(app.repo), "DEPLOY_DIR": f"{workdir}/srv",
           **host.env_settings(), "PUBLIC_PORT": public, "BLUE_PORT": blue,
           "GREEN_PORT": green, "HEALTH_PATH": "/health", "HEALTH_TIMEOUT": 60,
           "HEALTH_INTERVAL": 0.2, "STOP_TIMEOUT": 2, "BUILD_ON": "local",
           "LOCAL_BUILD_DIR": f"{workdir}/builds"}
    Path(workdir).mkdir(parents=True, exist_ok=True)
    (Path(workdir) / ".env").write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
    (Path(workdir) / "hosts.yml").write_text(host.hosts_yaml("bench"))
    return env


def main():
    need_venv()
    if not lh.base_image_present():
        sys.exit("the Python base image is missing: run scripts/setup-host.sh")
    oh.SecondDaemon.stop_abandoned()
    work = Path(tempfile.mkdtemp(prefix="bench-ship-"))
    daemons, hosts, figures = [], [], {"machine": machine()}
    name = "bgt-bench-ship"
    lh.claim_project(name)  # parallel test sessions leave a claimed project alone
    try:
        app = lh.SampleApp(work / "app")
        app.commit("v1", kind="pyweb")
        daemons = [oh.SecondDaemon().start() for _ in range(2)]
        hosts = [oh.OwnHost(work / f"host{i}", d, hide=[app.dir]).start()
                 for i, d in enumerate(daemons)]
        project(work / "p", hosts[0], app, name)

        # 1. the first ship: every layer
        first = fab(work / "p", "setup", "--json")
        image = f"bluegreen-{name}:{first['commit']}"
        full = int(subprocess.run(f"docker save {image} | wc -c", shell=True,
                                  capture_output=True, text=True).stdout)
        phases = first["phases"]
        fab_seconds = phases.get("save", 0) + phases.get("ship", 0)
        b = hosts[1]
        ssh = (f"ssh -p {b.ssh_port} -i {b.client_key} -o UserKnownHostsFile={b.known_hosts} "
               f"-o BatchMode=yes root@127.0.0.1")
        started = time.monotonic()
        r = subprocess.run(f"docker save {image} | gzip | {ssh} docker load", shell=True,
                           capture_output=True, text=True)
        baseline = time.monotonic() - started
        if r.returncode != 0:
            sys.exit(f"the baseline failed: {r.stderr}")
        figures["first_ship"] = {
            "image_bytes": full, "fab_bytes": first["ship"]["bytes"],
            "fab_save_and_ship_seconds": round(fab_seconds, 2),
            "fab_ship_seconds": round(phases.get("ship", 0), 2),
            "baseline_seconds": round(baseline, 2),
            "ratio": round(fab_seconds / baseline, 2)}

        # 2. a one-line change
        app.commit("v2", kind="pyweb")
        second = fab(work / "p", "release", "--json")
        figures["one_line_change"] = {
            "image_bytes": full, "fab_bytes": second["ship"]["bytes"],
            "layers_sent": second["ship"]["layers_sent"],
            "layers_skipped": second["ship"]["layers_skipped"],
            "share_percent": round(100 * second["ship"]["bytes"] / full, 4)}
    finally:
        subprocess.run(["docker", "rmi", "-f", *lh.app_image_ids(name)], capture_output=True)
        for h in hosts:
            h.stop()
        for d in daemons:
            d.stop()
        subprocess.run(["rm", "-rf", str(work)])
        lh.release_project(name)
    f, o = figures["first_ship"], figures["one_line_change"]
    print(describe_machine(figures["machine"]))
    print(f"first ship of {f['image_bytes'] / 1e6:.0f} MB: fab save+ship "
          f"{f['fab_save_and_ship_seconds']}s ({f['fab_bytes'] / 1e6:.1f} MB on the wire) vs "
          f"docker save | gzip | ssh docker load {f['baseline_seconds']}s: "
          f"{f['ratio']}x (target <= 1.5x)")
    print(f"one-line change: {o['fab_bytes']} bytes sent ({o['layers_sent']} layers, "
          f"{o['layers_skipped']} skipped) = {o['share_percent']} % of the "
          f"{o['image_bytes'] / 1e6:.0f} MB image (target <= 1 %)")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "ship.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
