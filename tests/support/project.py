"""A Project: a place `fab` runs in, with .env and hosts.yml pointing at a
loopback host (scripts/loophost/); and the base image the Python sample
apps need."""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import loophost as lh


REPO_ROOT = Path(__file__).resolve().parents[2]

# Every compose project the e2e tests create starts with this, so a run can
# find and remove what an earlier, interrupted run left behind.
PREFIX = lh.TEST_PREFIX
PROJECT_LABEL = lh.PROJECT_LABEL
docker = lh.docker


def require_base_image():
    """The Python sample apps' base image name; fails (never skips) when Docker lacks it."""
    image = lh.base_image()
    if not lh.base_image_present(image):
        pytest.fail(f"the Python sample apps' base image {image} is missing: run "
                    f"scripts/setup-host.sh as root (it builds it with debootstrap and "
                    f"docker import, about a minute, once per machine)", pytrace=False)
    return image


class Project:
    """A place `fab` runs in: .env and hosts.yml pointing at the loophost.

    name (APP_NAME, bgt-xxxxxx), dir (cwd of fab), env_file, hosts_file,
    deploy_dir, nginx_file (NGINX_CONF_DIR/<name>.conf), public_port,
    blue_port, green_port, host (the LoopHost), app (the SampleApp)
    network                  DOCKER_NETWORK: "bridge" (default) or "host"
    settings                 the .env as a dict
    set(KEY=value, ...)      rewrite .env entries (None removes a key)
    fab(*args, env=None, timeout=300, check=None) -> CompletedProcess
    get(path="/", port=None, host=None, timeout=5) -> (status, headers, body)
    wait_for(predicate, timeout=20, **get_kwargs) -> the last get() answer
    containers()             this app's containers: [{name, service, state, ...}]
    """

    HOST_NAME = "testhost"

    def __init__(self, base, host, app, name=None, network="bridge"):
        if network not in ("bridge", "host"):
            raise ValueError(f"network {network!r}: bridge or host")
        self.host = host
        self.app = app
        self.name = name or f"{PREFIX}{secrets.token_hex(3)}"
        lh.claim_project(self.name)
        self.base = Path(base)
        self.dir = self.base / "project"
        self.deploy_dir = self.base / "srv" / self.name
        self.env_file = self.dir / ".env"
        self.hosts_file = self.dir / "hosts.yml"
        self.nginx_file = Path(host.conf_dir) / f"{self.name}.conf"
        self.public_port, self.blue_port, self.green_port = lh.free_ports(3)
        self.dir.mkdir(parents=True)
        self.deploy_dir.parent.mkdir(parents=True, exist_ok=True)
        self._settings = {
            "APP_NAME": self.name,
            "GIT_REPO": str(app.repo),
            "DEPLOY_DIR": str(self.deploy_dir),
            **host.env_settings(),
            # The product's default, spelled out so a test reads what runs.
            "DOCKER_NETWORK": network,
            "PUBLIC_PORT": str(self.public_port),
            "BLUE_PORT": str(self.blue_port),
            "GREEN_PORT": str(self.green_port),
            "HEALTH_PATH": "/health",
            "HEALTH_TIMEOUT": "20",
            "HEALTH_INTERVAL": "0.2",
            "STOP_TIMEOUT": "2",
        }
        self._write_env()
        self.hosts_file.write_text(yaml.safe_dump(
            {"hosts": host.hosts_entry(self.HOST_NAME), "default_hosts": [self.HOST_NAME]},
            sort_keys=False))

    # -- .env

    @property
    def network(self):
        return self._settings.get("DOCKER_NETWORK", "bridge")

    @property
    def settings(self):
        return dict(self._settings)

    def set(self, **values):
        """Rewrite .env entries; a value of None removes the key."""
        for key, value in values.items():
            if value is None:
                self._settings.pop(key, None)
            else:
                self._settings[key] = str(value)
        self._write_env()

    def _write_env(self):
        lines = [f"{key}={_env_quote(value)}" for key, value in self._settings.items()]
        self.env_file.write_text("\n".join(lines) + "\n")

    # -- running fab

    def fab(self, *args, env=None, timeout=300, check=None):
        """Run the real `fab` of this Python environment in the project dir.

        BLUEGREEN_* variables of the test process are not passed on; `env`
        adds (or, with None, removes) variables. With check=N, assert the
        exit code is N and show the output otherwise.
        """
        cmd = [str(Path(sys.executable).parent / "fab"), "-r", str(REPO_ROOT), *map(str, args)]
        child_env = self.child_env(env)
        try:
            result = subprocess.run(cmd, cwd=self.dir, env=child_env, capture_output=True,
                                    text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
            raise AssertionError(f"fab {' '.join(map(str, args))} still running after {timeout}s"
                                 f"\n--- stdout\n{out}\n--- stderr\n{err}") from None
        if check is not None:
            assert result.returncode == check, (
                f"fab {' '.join(map(str, args))} exited {result.returncode}, expected {check}"
                f"\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
        return result

    @staticmethod
    def child_env(extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value)
        return env

    # -- what clients see

    def get(self, path="/", port=None, host=None, timeout=5):
        """GET http://127.0.0.1:<port or PUBLIC_PORT><path> -> (status, headers, body).

        headers has lower-case names. Never raises for HTTP errors or a
        refused/hung connection: then status is None and body names the error.
        """
        return lh.http_get(port or self.public_port, path, host=host, timeout=timeout)

    def wait_for(self, predicate, timeout=20, interval=0.2, **get_kwargs):
        """Poll get() until predicate(status, headers, body); return the last answer."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.get(**get_kwargs)
            if predicate(*answer) or time.monotonic() > deadline:
                return answer
            time.sleep(interval)

    def containers(self):
        """This app's containers: dicts with name, service, state, status, image."""
        r = docker("ps", "-a", "--filter", f"label={PROJECT_LABEL}={self.name}",
                   "--format", "{{json .}}")
        found = []
        for line in lh.nonblank_lines(r):
            c = json.loads(line)
            labels = dict(kv.split("=", 1) for kv in c.get("Labels", "").split(",") if "=" in kv)
            found.append({"name": c["Names"], "service": labels.get("com.docker.compose.service"),
                          "state": c["State"], "status": c["Status"], "image": c["Image"]})
        return found

    # -- teardown

    def remove(self, keep_dirs=False):
        """Remove the app's containers, images, nginx file and (unless kept) directories."""
        subprocess.run(["docker", "compose", "-p", self.name, "down", "--rmi", "local",
                        "--volumes", "--timeout", "1"], cwd=self.base, capture_output=True,
                       timeout=120, env=self.child_env({"COMPOSE_FILE": None}))
        lh.remove_compose_projects(name=self.name)
        conf_dir = Path(self.host.conf_dir)
        removed = [p for p in conf_dir.iterdir()
                   if p.name.lstrip(".").startswith(f"{self.name}.conf")]
        for p in removed:
            p.unlink()
        if removed:
            subprocess.run(f"{self.host.nginx_test_cmd} && {self.host.nginx_reload_cmd}",
                           shell=True, capture_output=True)
        if not keep_dirs:
            shutil.rmtree(self.base / "srv", ignore_errors=True)
            shutil.rmtree(self.dir, ignore_errors=True)
        lh.release_project(self.name)


def _env_quote(value):
    """A .env value that dotenv_values reads back unchanged (short of a
    value with both a single quote and a ${VAR}, which dotenv expands)."""
    if re.fullmatch(r"[A-Za-z0-9_./:@,+=%-]*", value):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"  # single quotes: no escapes, no ${VAR} expansion
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
