"""Fixtures for a host with a Docker daemon of its own (scripts/ownhost.py).

`own_daemon` (module): a SecondDaemon, stopped and removed after the module.
`own_host` (module): a LoopHost whose sshd sees only that daemon as
/run/docker.sock (its repository stays readable: it can build as usual).
`start_own_host(tmp_path_factory, daemon, hide)`: an OwnHost on ``daemon``,
unable to read the directories `hide`.
`own_project(base, host, app)`: a conftest Project whose containers() asks
that host's daemon.

For BUILD_ON=local (tests/e2e/test_build_local.py, test_ship_edges.py), all
three module-scoped, named as the tests use them:
`app` (local_app): a SampleApp of kind ``APP_KIND`` (a module attribute,
default "pyweb"), "v1" committed; `host` (isolated_host): an OwnHost on
`own_daemon` that cannot read the app's repository (what BUILD_ON=local is
tested against) (a module may define its
own `own_daemon`: test_ship_edges puts its data root on a small disk);
`proj` (local_proj): a project on that host with BUILD_ON=local.
`summary(result)`, `host_images(project)`: the --json summary, the app's
image tags on the host.

Test modules import the fixtures they use: `from ownhostkit import own_host`.
"""

import json

import pytest

import loophost as lh
import ownhost as oh
from support.project import Project, require_base_image


@pytest.fixture(scope="module")
def own_daemon(tmp_path_factory):
    oh.SecondDaemon.stop_abandoned()
    try:
        daemon = oh.SecondDaemon().start()
    except RuntimeError as e:
        pytest.fail(f"could not start a Docker daemon of the test's own: {e}", pytrace=False)
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


@pytest.fixture(scope="module", name="app")
def local_app(request, tmp_path_factory):
    kind = getattr(request.module, "APP_KIND", "pyweb")
    if kind in lh.PYTHON_KINDS:
        require_base_image()
    a = lh.SampleApp(tmp_path_factory.mktemp("local-app") / "app")
    a.commit("v1", kind=kind)
    return a


@pytest.fixture(scope="module", name="host")
def isolated_host(tmp_path_factory, own_daemon, app):
    h = start_own_host(tmp_path_factory, own_daemon, hide=[app.dir], name="isolated")
    yield h
    h.stop()


@pytest.fixture(scope="module", name="proj")
def local_proj(request, tmp_path_factory, host, app):
    base = tmp_path_factory.mktemp("local-proj")
    p = own_project(request, base / "p", host, app)
    p.set(BUILD_ON="local", LOCAL_BUILD_DIR=str(base / "builds"), HEALTH_TIMEOUT=40)
    try:
        yield p
    finally:
        p.remove()
