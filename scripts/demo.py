#!/usr/bin/env python3
"""The local demo: the real tasks against a production host on loopback.

`scripts/demo.sh` sets the machine up (scripts/setup-host.sh), then calls
`python3 scripts/demo.py up`. That starts a LoopHost (sshd + nginx) in the
demo directory (`.demo/` in the repository, or DEMO_DIR), makes the app's
git repository (a SampleApp, "v1" then "v2"), writes the demo's `.env` and
`hosts.yml` there (host `demo`), and runs `fab -H demo setup`, `release`,
`status`, a `release` under a light load, `rollback` and `status` with their
output as an operator sees it. `down` stops and removes all of it.

What `down` needs is recorded in DEMO_DIR/demo.json as soon as there is
something to stop. A second `up` stops an earlier demo in the same
directory first, so the story always starts from an empty host.

Settings (environment):
  DEMO_DIR       where everything lives (default: <repo>/.demo)
  DEMO_APP_NAME  APP_NAME and compose project (default: bluegreen-demo)
  DEMO_PORTS     preferred public, blue, green ports (default "8080 8081 8082");
                 a port that is taken, or 0, becomes a free one
  DEMO_RATE      requests per second of the load during the second release (50),
                 sent by scripts/loadgen.py

Standard library only, like scripts/loophost/: `down` works without the .venv.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402
import loophost as lh  # noqa: E402
from demokit import (DemoError, env_quote, heading, parse_ports, pick_ports,  # noqa: E402
                     pid_is, say, shown)

REPO = Path(__file__).resolve().parents[1]
HOST_NAME = "demo"
RECORD = "demo.json"
DEFAULT_APP_NAME = "bluegreen-demo"
DEFAULT_PORTS = (8080, 8081, 8082)
APP_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
LOAD_MAX_SECONDS = 300  # the load stops by itself after this, whatever happens
LOAD_QUIET_SECONDS = 1.0  # load before and after the release, to compare with
DOCKERD_PIDFILE = os.environ.get("DOCKERD_PIDFILE", "/run/bluegreen-dockerd.pid")


class Demo:
    def __init__(self, directory, app_name=DEFAULT_APP_NAME):
        self.dir = Path(directory).resolve()
        self.app_name = app_name
        self.record_file = self.dir / RECORD
        self.host_dir = self.dir / "host"
        self.app_dir = self.dir / "app"
        self.deploy_dir = self.dir / "srv" / app_name
        self.env_file = self.dir / ".env"
        self.hosts_file = self.dir / "hosts.yml"
        self.record = {}

    # -- the record of what runs

    def load_record(self):
        try:
            self.record = json.loads(self.record_file.read_text())
        except (OSError, ValueError):
            self.record = {}
        return self.record

    def save_record(self, **values):
        self.record.update(values)
        tmp = self.record_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record, indent=2) + "\n")
        tmp.replace(self.record_file)

    # -- running the tool

    def fab_hint(self, task="status"):
        """How to run a task by hand against the demo host, from the current directory."""
        if self.dir == REPO / ".demo" and Path.cwd() == REPO:
            return f"cd .demo && ../.venv/bin/fab -r .. -H {HOST_NAME} {task}"
        return (f"cd {shlex.quote(str(self.dir))} && "
                f"{shlex.quote(str(REPO / '.venv' / 'bin' / 'fab'))} -r "
                f"{shlex.quote(str(REPO))} -H {HOST_NAME} {task}")

    def fab(self, *args):
        """Run the real fab in the demo directory, its output straight to ours."""
        cmd = [str(REPO / ".venv" / "bin" / "fab"), "-r", str(REPO), "-H", HOST_NAME, *args]
        # The operator's BLUEGREEN_* variables would outrank the demo's .env.
        env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
        rc = subprocess.run(cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL).returncode
        if rc != 0:
            raise DemoError(f"`fab -H {HOST_NAME} {' '.join(args)}` failed with exit {rc} "
                            f"(its output is above)")

    def version_now(self):
        status, headers, body = lh.http_get(self.record["ports"][0], "/version")
        if status is None:
            return f"no answer ({body})"
        return f"HTTP {status} {body.strip()!r} from {headers.get('x-deploy-colour', '?')}"

    # -- up

    def up(self, rate=50, ports=DEFAULT_PORTS, docker_before=True, dockerd_pid_before=None):
        total = 8
        kept_dockerd = self._clear_earlier()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.save_record(app_name=self.app_name, dir=str(self.dir),
                         dockerd_pid=kept_dockerd or self._dockerd_we_started(
                             docker_before, dockerd_pid_before))
        if self.record["dockerd_pid"]:
            say(f"demo: dockerd pid {self.record['dockerd_pid']} was started for the demo; "
                f"`down` stops it")

        heading(1, total, "The demo host: sshd and nginx of its own on 127.0.0.1",
                "scripts/loophost/; Docker and git are this machine's own.")
        host = lh.LoopHost(self.host_dir)
        try:
            host.start()
        except RuntimeError as e:
            raise DemoError(f"could not start the demo host: {e}") from None
        self.save_record(loophost=str(host.record))
        public, blue, green = pick_ports(ports, taken={host.ssh_port})
        self.save_record(ports=[public, blue, green])
        say(f"    sshd   127.0.0.1:{host.ssh_port} (pid {host.sshd_pid}), host key in "
            f"{shown(host.known_hosts)}")
        say(f"    nginx  pid {host.nginx_pid}, prefix {shown(host.prefix)}")
        say(f"    ports  public {public}, blue {blue}, green {green}"
            + ("" if [public, blue, green] == list(ports) else
               f"  (wanted {' '.join(map(str, ports))}; taken ones were replaced)"))

        heading(2, total, "The app's git repository, with v1 on main",
                "A tiny busybox web app: GET /version answers its version. It runs on "
                "Docker's bridge network, each colour published on 127.0.0.1.")
        app = lh.SampleApp(self.app_dir)
        sha = app.commit("v1", message="v1")
        say(f"    GIT_REPO {shown(app.repo)}  (work in {shown(app.work)})")
        say(f"    main @ {sha[:12]} \"v1\"")
        self._write_settings(host, app, public, blue, green)
        say(f"    wrote {shown(self.env_file)} and {shown(self.hosts_file)} (host \"{HOST_NAME}\")")

        heading(3, total, f"fab -H {HOST_NAME} setup",
                "Checks the host, creates DEPLOY_DIR, releases v1 into blue, installs "
                "the nginx file.")
        self.fab("setup")
        say(f"    GET /version -> {self.version_now()}")

        heading(4, total, f"v2 committed; fab -H {HOST_NAME} release",
                "Builds v2 into the idle colour (green) while blue serves, checks its "
                "health, switches nginx with a graceful reload.")
        sha = app.commit("v2", message="v2")
        say(f"    main @ {sha[:12]} \"v2\"")
        self.fab("release")
        say(f"    GET /version -> {self.version_now()}")

        heading(5, total, f"fab -H {HOST_NAME} status")
        self.fab("status")

        heading(6, total, f"fab -H {HOST_NAME} release, under load",
                f"{rate} requests/s to :{public}, each on a fresh connection, while the "
                f"release rebuilds blue and switches to it (--force: green runs this very "
                f"commit already, which alone is nothing to release).")
        load = loadgen.Load(public, rate_fresh=rate, threads_fresh=4, rate_keepalive=0,
                            timeout=5.0, max_seconds=LOAD_MAX_SECONDS, name="load").start()
        try:
            time.sleep(LOAD_QUIET_SECONDS)  # some traffic before the release
            self.fab("release", "--force")
            time.sleep(LOAD_QUIET_SECONDS)  # and after: the old workers' last requests
        finally:
            load.stop()
        summary = load.summary()
        say(summary.text())
        try:
            # The quiet seconds alone send this many: fewer, and "0 failed" says nothing.
            summary.require(min_requests=int(2 * LOAD_QUIET_SECONDS * rate))
        except AssertionError as e:
            problem = str(e).splitlines()[0].rstrip(":")
            raise DemoError(f"the release under load: {problem}; the demo failed") from None
        say(f"    GET /version -> {self.version_now()}")

        heading(7, total, f"fab -H {HOST_NAME} rollback",
                "Back to the previous colour (green): a health check, then a config "
                "switch; nothing is rebuilt.")
        self.fab("rollback")
        say(f"    GET /version -> {self.version_now()}")

        heading(8, total, f"fab -H {HOST_NAME} status")
        self.fab("status")

        self._where_to_look(host, app, public)

    def _write_settings(self, host, app, public, blue, green):
        settings = {
            "APP_NAME": self.app_name,
            "GIT_REPO": str(app.repo),
            "DEPLOY_DIR": str(self.deploy_dir),
            **host.env_settings(),
            # The product's default, spelled out: each colour's container is on
            # Docker's bridge, its port published on 127.0.0.1 only.
            "DOCKER_NETWORK": "bridge",
            "PUBLIC_PORT": str(public),
            "BLUE_PORT": str(blue),
            "GREEN_PORT": str(green),
            "HEALTH_PATH": "/health",
            "HEALTH_INTERVAL": "0.5",
            "STOP_TIMEOUT": "2",
        }
        lines = ["# The demo's settings, written by scripts/demo.py: the demo host is",
                 "# this machine on loopback, with its own sshd and nginx.",
                 "# See .env.example for every key."]
        lines += [f"{key}={env_quote(value)}" for key, value in settings.items()]
        self.env_file.write_text("\n".join(lines) + "\n")
        self.hosts_file.write_text(
            "# The demo host, written by scripts/demo.py.\n" + host.hosts_yaml(HOST_NAME))

    def down_hint(self):
        """The command that stops this demo, from the current directory."""
        down = "./scripts/demo.sh down"
        if self.dir != REPO / ".demo":
            down = f"DEMO_DIR={shlex.quote(str(self.dir))} {down}"
            if self.app_name != DEFAULT_APP_NAME:
                down = f"DEMO_APP_NAME={self.app_name} {down}"
        if Path.cwd() != REPO:
            down = f"cd {shlex.quote(str(REPO))} && {down}"
        return down

    def _where_to_look(self, host, app, public):
        nginx_file = Path(host.conf_dir) / f"{self.app_name}.conf"
        down = self.down_hint()
        say()
        say("The demo host is still up. Where to look:")
        say(f"  the app        curl -i http://127.0.0.1:{public}/version")
        say(f"  DEPLOY_DIR     {shown(self.deploy_dir)}  (state.json, history.jsonl, "
            f"compose.yml, blue/, green/)")
        say(f"  nginx file     {shown(nginx_file)}")
        say(f"  settings       {shown(self.env_file)}, {shown(self.hosts_file)}")
        say(f"  app repository {shown(app.work)}  (commit, `git push`, then release)")
        say(f"  by hand        {self.fab_hint('status')}")
        say("                 (also: release, rollback, history, logs, switch --to blue)")
        say(f"  stop it all    {down}")

    def _clear_earlier(self):
        """Stop an earlier demo in this directory; return a dockerd pid it started."""
        if not self.dir.exists():
            return None
        if not self.record_file.exists():
            if any(self.dir.iterdir()):
                raise DemoError(f"{self.dir} exists and is not a demo directory (no {RECORD}); "
                                f"set DEMO_DIR to an empty or new directory", code=2)
            return None
        earlier = self.load_record()
        say(f"demo: an earlier demo is in {shown(self.dir)}/: stopping it to start afresh")
        self._stop_all(earlier, stop_dockerd=False)
        shutil.rmtree(self.dir)
        self.record = {}
        pid = earlier.get("dockerd_pid")
        return pid if pid_is(pid, "dockerd") else None

    @staticmethod
    def _dockerd_we_started(docker_before, pid_before):
        """The pid of the dockerd setup-host.sh started for this run, if it did."""
        if docker_before:
            return None
        try:
            pid = int(Path(DOCKERD_PIDFILE).read_text().strip())
        except (OSError, ValueError):
            return None
        if str(pid) != str(pid_before or "") and pid_is(pid, "dockerd"):
            return pid
        return None

    # -- down

    def down(self):
        if not self.record_file.exists():
            if self.dir.exists() and any(self.dir.iterdir()):
                raise DemoError(f"{self.dir} is not a demo directory (no {RECORD}): "
                                f"left alone", code=2)
            say(f"demo: nothing to stop: no demo in {shown(self.dir)}/")
            return
        record = self.load_record()
        self._stop_all(record, stop_dockerd=True)
        shutil.rmtree(self.dir)
        say(f"demo: removed {shown(self.dir)}/")

    def _stop_all(self, record, stop_dockerd):
        """Stop the app's containers, the demo host and (if asked) the demo's dockerd."""
        name = record.get("app_name") or self.app_name
        if lh.docker("info", "--format", "{{.ServerVersion}}", timeout=30).returncode == 0:
            before = lh.nonblank_lines(lh.docker(
                "ps", "-aq", "--filter", f"label={lh.PROJECT_LABEL}={name}"))
            lh.remove_compose_projects(name=name)
            say(f"demo: removed the containers ({len(before)}) and images of compose "
                f"project {name}")
        else:
            say(f"demo: no Docker daemon answers: could not remove compose project {name}")
        loophost = Path(record.get("loophost") or self.host_dir / "loophost.json")
        if loophost.exists():
            data = json.loads(loophost.read_text())
            host = lh.LoopHost.from_dict(data)
            running = [f"{what} pid {pid}" for what, pid in
                       (("sshd", host.sshd_pid), ("nginx", host.nginx_pid)) if pid]
            host.stop()
            say(f"demo: stopped the demo host ({', '.join(running) or 'nothing was running'})")
        pid = record.get("dockerd_pid")
        if stop_dockerd and pid and pid_is(pid, "dockerd"):
            say(f"demo: stopping the dockerd the demo started (pid {pid})")
            lh.end_pid(pid, timeout=30.0)
            try:
                if Path(DOCKERD_PIDFILE).read_text().strip() == str(pid):
                    Path(DOCKERD_PIDFILE).unlink()
            except OSError:
                pass


def main(argv=None):
    parser = argparse.ArgumentParser(prog="demo.py", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("up", "down"))
    args = parser.parse_args(argv)
    directory = os.environ.get("DEMO_DIR") or str(REPO / ".demo")
    app_name = os.environ.get("DEMO_APP_NAME") or DEFAULT_APP_NAME
    demo = None
    try:
        if not APP_NAME_RE.fullmatch(app_name):
            raise DemoError(f"DEMO_APP_NAME={app_name!r}: allowed: [a-z0-9][a-z0-9-]{{0,39}}",
                            code=2)
        demo = Demo(directory, app_name)
        if args.command == "down":
            demo.down()
            return 0
        rate = os.environ.get("DEMO_RATE", "50")
        if not (rate.isascii() and rate.isdigit() and len(rate) <= 3) or not 1 <= int(rate) <= 200:
            raise DemoError(f"DEMO_RATE={rate!r}: allowed: 1 to 200 requests per second",
                            code=2)
        demo.up(rate=int(rate),
                ports=parse_ports(os.environ.get("DEMO_PORTS", " ".join(map(str, DEFAULT_PORTS)))),
                docker_before=os.environ.get("DEMO_DOCKER_BEFORE", "yes") == "yes",
                dockerd_pid_before=os.environ.get("DEMO_DOCKERD_PID_BEFORE"))
        return 0
    except DemoError as e:
        print(f"\ndemo: error: {e}", file=sys.stderr, flush=True)
        if args.command == "up" and demo is not None and demo.record_file.exists():
            print(f"demo: what started is still up for a look; `{demo.down_hint()}` "
                  f"stops it", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(f"\ndemo: interrupted; `{demo.down_hint() if demo else './scripts/demo.sh down'}` "
              f"stops what started", file=sys.stderr)
        return 130


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
