"""Fixtures for a host with a Docker daemon of its own (scripts/ownhost.py).

`own_daemon` (module): a SecondDaemon, stopped and removed after the module.
`own_host` (module): a LoopHost whose sshd sees only that daemon as
/run/docker.sock (its repository stays readable: it can build as usual).
`start_own_host(tmp_path_factory, daemon, hide)`: an OwnHost on ``daemon``,
unable to read the directories `hide`.
`own_project(base, host, app)`: a conftest Project whose containers() asks
that host's daemon.

For BUILD_ON=local (tests/e2e/test_build_local.py, test_ship_edges.py), all
three module-scoped:
`local_app`: a SampleApp of kind ``APP_KIND`` (a module attribute, default
"pyweb"), "v1" committed; `isolated_host`: an OwnHost on `own_daemon` that
cannot read the app's repository (what BUILD_ON=local is tested against) (a
module may define its own `own_daemon`: test_ship_edges puts its data root on
a small disk); `local_project`: a project on that host with BUILD_ON=local.
`summary(result)`, `host_images(project)`: the --json summary, the app's
image tags on the host.

A plugin (tests/conftest.py's pytest_plugins): test modules take these fixtures
by name and import only the plain helpers (own_project, summary, ...).
"""

import json

import pytest

import loophost as lh
import ownhost as oh
from support.project import Project, require_base_image


def started_daemon(what, **kwargs):
    """A Docker daemon of the test's own (ownhost.SecondDaemon), started;
    ``what`` names it if it cannot start. The caller stops it."""
    try:
        return oh.SecondDaemon(**kwargs).start()
    except RuntimeError as e:
        pytest.fail(f"could not start {what}: {e}", pytrace=False)


@pytest.fixture(scope="module")
def own_daemon(tmp_path_factory):
    oh.SecondDaemon.stop_abandoned()
    daemon = started_daemon("a Docker daemon of the test's own")
    yield daemon
    daemon.stop()


def start_own_host(tmp_path_factory, daemon, hide=(), name="ownhost"):
    try:
        return oh.OwnHost(tmp_path_factory.mktemp(name), daemon, hide=hide).start()
    except RuntimeError as e:
        pytest.fail(f"could not start the host with its own daemon: {e}", pytrace=False)


@pytest.fixture(scope="module")
def own_host(tmp_path_factory, own_daemon):
    host = start_own_host(tmp_path_factory, own_daemon)
    yield host
    host.stop()


def own_project(request, base, host, app, **kwargs):
    """A conftest Project on ``host`` (an OwnHost): its containers are that daemon's."""
    class OwnProject(Project):
        def containers(self):
            r = self.host.daemon.docker(
                "ps", "-a", "--filter", f"label={lh.PROJECT_LABEL}={self.name}",
                "--format", "{{json .}}")
            found = []
            for line in lh.nonblank_lines(r):
                c = json.loads(line)
                labels = dict(kv.split("=", 1) for kv in c.get("Labels", "").split(",")
                              if "=" in kv)
                found.append({"name": c["Names"],
                              "service": labels.get("com.docker.compose.service"),
                              "state": c["State"], "status": c["Status"], "image": c["Image"]})
            return found

        def remove(self, keep_dirs=False):
            ids = lh.nonblank_lines(self.host.daemon.docker(
                "ps", "-aq", "--filter", f"label={lh.PROJECT_LABEL}={self.name}"))
            if ids:
                self.host.daemon.docker("rm", "-f", *ids)
            super().remove(keep_dirs=keep_dirs)

    return OwnProject(base, host, app, **kwargs)


def summary(result):
    """The --json summary: fab's last line of output."""
    return json.loads(result.stdout.strip().splitlines()[-1])


def host_images(project):
    """The app's image tags in the host's daemon."""
    r = project.host.daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}",
                                   f"bluegreen-{project.name}")
    return set(lh.nonblank_lines(r))


@pytest.fixture(scope="module")
def local_app(request, tmp_path_factory):
    kind = getattr(request.module, "APP_KIND", "pyweb")
    if kind in lh.PYTHON_KINDS:
        require_base_image()
    a = lh.SampleApp(tmp_path_factory.mktemp("local-app") / "app")
    a.commit("v1", kind=kind)
    return a


@pytest.fixture(scope="module")
def isolated_host(tmp_path_factory, own_daemon, local_app):
    h = start_own_host(tmp_path_factory, own_daemon, hide=[local_app.dir], name="isolated")
    yield h
    h.stop()


@pytest.fixture(scope="module")
def local_project(request, tmp_path_factory, isolated_host, local_app):
    base = tmp_path_factory.mktemp("local-proj")
    p = own_project(request, base / "p", isolated_host, local_app)
    p.set(BUILD_ON="local", LOCAL_BUILD_DIR=str(base / "builds"), HEALTH_TIMEOUT=40)
    try:
        yield p
    finally:
        p.remove()
