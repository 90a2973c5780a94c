"""BUILD_ON=local at its edges, end to end, on the isolated host of
test_build_local.py (tests/e2e/ownhostkit.py), here with the host daemon's
data root on a small disk of its own (scripts/ownhost.py SmallDisk: a
loop-mounted ext4 image file):

- the host's disk full in the middle of a ship: the load fails, nothing
  the host would trust is left, live and the idle colour are untouched,
  and once space is freed the next release simply works;
- DOCKER_HOST honoured on the machine running fab: the build happens in
  the daemon it names (and not the default one) and is shipped from
  there; `release --image` reads that daemon too.

The app is the busybox sample (a few MB), so the disk can be small and
filling it quick.
"""

import json
import os
import subprocess

import pytest

import loophost as lh
import ownhost as oh
from faultkit import history, owner
from ownhostkit import host_images, started_daemon, summary
from released import fab, serves

APP_KIND = "ok"  # local_app: the busybox sample, no base image
DISK_MB = 96


@pytest.fixture(scope="module")
def disk():
    oh.SecondDaemon.stop_abandoned()  # a daemon left on an abandoned disk goes first
    oh.SmallDisk.remove_abandoned()
    try:
        d = oh.SmallDisk(mb=DISK_MB).create()
    except RuntimeError as e:
        pytest.fail(f"could not make a small disk (loop device, ext4): {e}", pytrace=False)
    yield d
    d.remove()


@pytest.fixture(scope="module")
def own_daemon(disk):
    """The isolated host's daemon (ownhostkit's `isolated_host`), its data root on `disk`."""
    daemon = started_daemon("the host's own daemon", data_root=disk.mnt / "root")
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def builder():
    """Another daemon, for the machine running fab: what DOCKER_HOST points at."""
    daemon = started_daemon("a second daemon to build in")
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def p(local_project):
    """ownhostkit's project (BUILD_ON=local on the isolated host), `fab check`
    content with the small disk while it is not filled."""
    local_project.set(MIN_FREE_DISK="16m")
    return local_project


def every_image(daemon):
    """Every image of ``daemon``, dangling ones included: {id: (tags, layers)}."""
    ids = sorted(set(lh.nonblank_lines(daemon.docker("images", "-aq", "--no-trunc"))))
    if not ids:
        return {}
    r = daemon.docker("image", "inspect", "--format",
                      "{{.Id}} {{json .RepoTags}} {{json .RootFS.Layers}}", *ids)
    images = {}
    for line in lh.nonblank_lines(r):
        image_id, tags, layers = line.split(" ", 2)
        images[image_id] = (tuple(json.loads(tags) or ()), tuple(json.loads(layers) or ()))
    return images


def commit_big(local_app, label, megabytes):
    """Commit ``label`` with a file of ``megabytes`` of noise: a layer gzip cannot shrink."""
    local_app.commit(label, kind=APP_KIND)
    with open(local_app.work / "app" / "noise.bin", "wb") as f:
        f.write(subprocess.run(["head", "-c", str(megabytes << 20), "/dev/urandom"],
                               capture_output=True, check=True).stdout)
    local_app._git("add", "-A")
    local_app._git("commit", "-qm", f"{label} with {megabytes} MB of noise")
    local_app._git("push", "-q", "origin", "HEAD:refs/heads/main")
    return local_app._git("rev-parse", "HEAD")


def versions_served(p, n=10):
    return [lh.http_get(p.public_port, "/version")[:3:2] for _ in range(n)]


def test_a_full_disk_on_the_host_fails_the_ship_and_changes_nothing(p, local_app, disk):
    fab(p, "setup")  # v1 into blue
    local_app.commit("v2", kind=APP_KIND)
    fab(p, "release")  # v2 into green: blue (v1) is the idle colour, running
    serves(p, "v2", colour="green")

    state = json.loads((p.deploy_dir / "state.json").read_text())
    lines = len(history(p))
    containers = sorted((c["service"], c["state"], c["image"]) for c in p.containers())
    images = every_image(p.host.daemon)
    # 24 MB of noise cannot go into the 8 MB left on the host's Docker disk.
    big = commit_big(local_app, "v3-big", 24)
    disk.fill(leave=8 << 20)
    free_before = disk.free_bytes()

    r = fab(p, "release", code=1)  # fab() also asserts no traceback
    text = r.stderr + r.stdout
    assert f"the disk of {p.HOST_NAME} is full" in text, text
    assert "no space left on device" in text and "nothing live changed" in text, text
    assert "free space where the host's Docker keeps images" in text, text
    assert "release again" in text, text

    # Live serves the old version, the idle colour is as it was.
    assert versions_served(p) == [(200, "v2\n")] * 10
    assert sorted((c["service"], c["state"], c["image"])
                  for c in p.containers()) == containers
    # Nothing the next release would trust: no new image, tag or layer stack,
    # dangling or not, and the partial layer's space given back.
    assert every_image(p.host.daemon) == images
    assert f"bluegreen-{p.name}:{big}" not in host_images(p)
    assert disk.free_bytes() >= free_before - (1 << 20), (disk.free_bytes(), free_before)
    assert not list((disk.mnt / "root" / "tmp").glob("docker-import-*"))
    # The record: state.json as it was, one failed line in history, no lock left.
    assert json.loads((p.deploy_dir / "state.json").read_text()) == state
    entries = history(p)
    assert len(entries) == lines + 1, entries[lines:]
    assert (entries[-1]["result"], entries[-1]["phase"]) == ("failed", "ship"), entries[-1]
    assert "is full" in entries[-1]["error"], entries[-1]
    assert owner(p) is None
    # What the hint points at: `fab check` names the full disk.
    r = fab(p, "check", code=1)
    assert "docker disk   FAIL" in r.stdout and "prune or grow it" in r.stdout, r.stdout

    disk.free()  # what the operator does; then the same commit simply works
    out = summary(fab(p, "release", "--json"))
    assert (out["commit"], out["live"]) == (big, "blue"), out
    assert out["ship"]["layers_skipped"] >= 1, out  # busybox's layer was on the host
    serves(p, "v3-big", colour="blue")


def local_has(name, docker_host=None):
    """Whether the daemon at ``docker_host`` (default: the machine's own) has image ``name``."""
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    r = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", name],
                       capture_output=True, text=True, env=env, timeout=60)
    return r.returncode == 0


def test_docker_host_names_the_daemon_that_builds_and_ships(p, local_app, builder, disk):
    disk.free()
    env = {"DOCKER_HOST": builder.host}
    check = fab(p, "check", env=env)
    assert f"at {builder.host}" in check.stdout + check.stderr, check.stdout

    v4 = local_app.commit("v4", kind=APP_KIND)
    out = summary(fab(p, "release", "--json", env=env))
    assert (out["build"], out["commit"]) == ("local", v4), out
    tag = f"bluegreen-{p.name}:{v4}"
    assert local_has(tag, builder.host), "not built in DOCKER_HOST's daemon"
    assert not local_has(tag), "built in the machine's default daemon, not DOCKER_HOST's"
    serves(p, "v4")
    assert tag in host_images(p)

    # release --image: the image is looked up, and saved, in DOCKER_HOST's daemon.
    v5 = local_app.commit("v5", kind=APP_KIND)
    name = f"{p.name}-ci:5"
    builder.docker("build", "-q", "--label", f"org.opencontainers.image.revision={v5}",
                   "-t", name, str(local_app.work), timeout=300, check=True)
    r = fab(p, "release", "--image", name, code=2)  # the default daemon has no such image
    assert f"--image {name!r}" in r.stderr and "no such image on this machine" in r.stderr
    out = summary(fab(p, "release", "--image", name, "--json", env=env))
    assert (out["build"], out["commit"]) == ("image", v5), out
    assert history(p)[-1]["image"] == name
    assert out["ship"]["layers_skipped"] >= 1, out
    serves(p, "v5")
