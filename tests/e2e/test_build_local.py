"""BUILD_ON=local and release --image against a host that shares nothing with
the machine running `fab` (scripts/ownhost.py): its own Docker daemon, seen
as /run/docker.sock by its sshd, and the app's repository hidden from it.
So a pass proves that the host built and fetched nothing: the image was
built here (the machine's daemon) and shipped, only the layers it lacked.
"""

import json
import os
import signal
import subprocess
import time

import pytest
import yaml

import loophost as lh
from faultkit import history, owner, sshd_session_of
from hostile import Background
from ownhostkit import host_images, own_project, start_own_host, summary
import ownhost as oh
from released import fab, serves


def image_size(name):
    r = lh.docker("image", "inspect", "--format", "{{.Size}}", name)
    return int(r.stdout.strip())


def test_the_host_cannot_read_the_repository_nor_reach_this_machines_docker(local_project,
                                                                           isolated_host,
                                                                           local_app):
    r = isolated_host.ssh(f"git ls-remote {local_app.repo}")
    assert r.returncode != 0, r.stdout
    r = isolated_host.ssh("docker info --format '{{.DockerRootDir}}'")
    assert r.stdout.strip() == str(isolated_host.daemon.dir / "root"), r.stdout + r.stderr


def test_check_looks_at_this_machines_docker_and_the_hosts_layer_store(local_project):
    r = fab(local_project, "check")
    text = r.stdout + r.stderr
    assert "local Docker" in text and "overlay2: only the layers it lacks" in text, text
    assert "reachable from this machine" in text, text


def test_setup_builds_here_and_ships_the_base_once(local_project, local_app):
    p = local_project
    r = fab(p, "setup", "--json")
    out = summary(r)
    assert out["build"] == "local", out
    assert out["ship"]["layers_sent"] >= 2 and out["ship"]["bytes"] > 10_000_000, out
    serves(p, "v1", colour="blue")
    v1 = local_app.head()
    assert f"bluegreen-{p.name}:{v1}" in host_images(p)
    # No checkout on the host: it ran no git.
    assert not (p.deploy_dir / "blue" / ".git").exists()
    entry = history(p)[-1]
    assert entry["build"] == "local" and entry["ship"]["bytes"] == out["ship"]["bytes"], entry
    assert build_cache_entries(p.host) == 0  # the host's Docker built nothing


def build_cache_entries(isolated_host):
    r = isolated_host.daemon.docker("system", "df", "--format", "{{json .}}")
    rows = [json.loads(line) for line in lh.nonblank_lines(r)]
    return int(next(row["TotalCount"] for row in rows if row["Type"] == "Build Cache"))


def test_a_one_line_change_ships_only_its_layer(local_project, local_app):
    p = local_project
    v2 = local_app.commit("v2", kind="pyweb")
    r = fab(p, "release", "--json")
    out = summary(r)
    assert out["commit"] == v2 and out["live"] == "green", out
    ship = out["ship"]
    full = image_size(f"bluegreen-{p.name}:{v2}")
    assert ship["layers_skipped"] >= 1, ship
    assert ship["bytes"] <= full // 100, (ship, full)  # at most 1 % of the image
    serves(p, "v2", colour="green")
    text = r.stderr + r.stdout
    assert "ship" in text and "skipped" in text, text


def test_rollback_and_rollback_to_a_kept_release(local_project, local_app):
    p = local_project
    fab(p, "rollback")
    serves(p, "v1", colour="blue")
    local_app.commit("v3", kind="pyweb")
    fab(p, "release")  # v3 into green
    serves(p, "v3", colour="green")
    fab(p, "rollback", "--to", local_app.commits["v2"][:10])  # v2 again, in blue: no git, no build
    serves(p, "v2", colour="blue")


def test_repair_finds_the_commits_with_no_checkout_on_the_host(local_project):
    p = local_project
    path = p.deploy_dir / "state.json"
    before = json.loads(path.read_text())
    path.unlink()
    fab(p, "repair")
    after = json.loads(path.read_text())
    assert after["live"] == before["live"]
    for colour in ("blue", "green"):
        assert after["colours"][colour]["commit"] == before["colours"][colour]["commit"], after


def test_stage_then_promote_a_local_build(local_project, local_app):
    p = local_project
    local_app.commit("v3-staged", kind="pyweb")
    out = summary(fab(p, "release", "--no-switch", "--json"))
    assert (out["result"], out["build"]) == ("staged", "local"), out
    assert out["ship"]["layers_skipped"] >= 1, out
    fab(p, "promote")
    serves(p, "v3-staged", colour=out["target"])


def docker_load_under(sshd_pid):
    """The pid of a `docker load` that sshd session ``sshd_pid`` runs, or None."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                if f.read() != b"docker\0load\0":
                    continue
        except OSError:
            continue
        pid = int(name)
        while pid > 1:
            if pid == sshd_pid:
                return int(name)
            pid = int(lh._run(["ps", "-o", "ppid=", "-p", str(pid)], check=False).stdout
                      .strip() or 1)
    return None


@pytest.mark.parametrize("fault", ["cut", "kill"])
def test_a_ship_cut_part_way_leaves_nothing_the_host_trusts(local_project, local_app, fault):
    """The SSH connection cut (its sshd session killed: exit 3), or fab
    killed, while `docker load` reads the stream."""
    p = local_project
    before = {c["service"]: (c["state"], c["image"]) for c in p.containers()}
    live = json.loads((p.deploy_dir / "state.json").read_text())["live"]
    tags = host_images(p)
    live_version = lh.http_get(p.public_port, "/version")[2].strip()
    # A layer big enough that the stream is still running when it is cut.
    big = local_app.work / "app" / "big.bin"
    label = f"v4-{fault}"
    local_app.commit(label, kind="pyweb")
    big.write_bytes(os.urandom(64 * 1024 * 1024))
    local_app._git("add", "-A")
    local_app._git("commit", "-qm", f"{label} with 64 MB of noise")
    local_app._git("push", "-q", "origin", "HEAD:refs/heads/main")
    bg = Background(p, "release")
    session = sshd_session_of(p, bg, timeout=120)
    deadline = time.monotonic() + 180
    while docker_load_under(session) is None:
        assert bg.proc.poll() is None, bg.text()
        assert time.monotonic() < deadline, bg.text()
        time.sleep(0.01)
    if fault == "cut":
        os.kill(session, signal.SIGKILL)
        code = bg.wait()
        text = bg.text()
        assert code == 3, text
        assert "Traceback" not in text and "lost the SSH connection" in text, text
    else:
        bg.kill(signal.SIGKILL)
    # Nothing the host trusts: no tag for the new commit, live untouched, idle as it was.
    assert host_images(p) == tags
    assert lh.http_get(p.public_port, "/version")[2].strip() == live_version
    after = {c["service"]: (c["state"], c["image"]) for c in p.containers()}
    assert after == before, (before, after)
    # The next release works (the lock of the cut task is taken over).
    r = fab(p, "release", "--json")
    assert summary(r)["commit"] == local_app.head()
    serves(p, label, colour="blue" if live == "green" else "green")
    assert owner(p) is None


def test_a_build_past_build_timeout_stops_here_and_changes_nothing(local_project, local_app):
    p = local_project
    live_version = lh.http_get(p.public_port, "/version")[2].strip()
    local_app.commit("v4-slow", kind="pyweb")
    dockerfile = local_app.work / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + 'RUN ["sleep", "60"]\n')
    local_app._git("commit", "-qam", "a slow build")
    local_app._git("push", "-q", "origin", "HEAD:refs/heads/main")
    tags = host_images(p)
    try:
        p.set(BUILD_TIMEOUT="3s")
        r = fab(p, "release", code=1)
    finally:
        p.set(BUILD_TIMEOUT=None)
    assert "did not finish within BUILD_TIMEOUT=3s here" in r.stderr + r.stdout, r.stderr
    assert host_images(p) == tags
    assert lh.http_get(p.public_port, "/version")[2].strip() == live_version
    assert history(p)[-1]["result"] == "failed"
    dockerfile.write_text(dockerfile.read_text().replace('RUN ["sleep", "60"]\n', ""))
    local_app._git("commit", "-qam", "not slow any more")
    local_app._git("push", "-q", "origin", "HEAD:refs/heads/main")


def test_release_an_image_built_by_someone_else(local_project, local_app):
    p = local_project
    local_app.commit("v5", kind="pyweb")
    name = f"{p.name}-ci:5"
    r = subprocess.run(["docker", "build", "-q", "--label",
                        f"org.opencontainers.image.revision={local_app.head()}", "-t", name,
                        str(local_app.work)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    try:
        p.set(GIT_REPO=None)  # not needed for --image
        out = summary(fab(p, "release", "--image", name, "--json"))
    finally:
        p.set(GIT_REPO=str(local_app.repo))
        lh.docker("rmi", name)
    assert out["build"] == "image" and out["commit"] == local_app.head(), out
    assert out["ship"]["layers_skipped"] >= 1, out
    serves(p, "v5")
    assert history(p)[-1]["image"] == name
    # What runs is the image, not the branch the colour follows (round four's loose end).
    assert history(p)[-1]["branch"] is None and history(p)[-1]["follows"] == "main"
    status = json.loads(fab(p, "status", "--json").stdout)
    colour = status["colours"][status["live"]]
    assert colour["source"] == f"image {name}" and colour["branch"] is None, colour
    assert colour["follows"] == "main", colour
    # Staged (and then promoted), an unlabelled image records as the plain path
    # does: the image, no branch (issue 34), not the colour's followed branch.
    bare = f"{p.name}-bare:1"
    r = subprocess.run(["docker", "build", "-q", "--label", "bare=1", "-t", bare,
                        str(local_app.work)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    try:
        staged = summary(fab(p, "release", "--image", bare, "--no-switch", "--json"))
        entry = history(p)[-1]
        fab(p, "promote")
    finally:
        lh.docker("rmi", bare)
    assert staged["branch"] is None and staged["commit"] == r.stdout.split(":")[-1].strip()
    assert (entry["result"], entry["branch"], entry["follows"], entry["image"]) == (
        "staged", None, "main", bare), entry
    status = json.loads(fab(p, "status", "--json").stdout)
    colour = status["colours"][status["live"]]
    assert colour["source"] == f"image {bare}" and colour["branch"] is None, colour
    assert colour["follows"] == "main" and colour["commit"] == staged["commit"], colour


def test_image_missing_here_is_bad_input(local_project):
    r = fab(local_project, "release", "--image", "no-such-image:7", code=2)
    assert "no-such-image:7" in r.stderr and "--image" in r.stderr, r.stderr


def test_two_hosts_from_one_build(request, tmp_path_factory, local_project, local_app, tmp_path):
    """Two hosts, each with its own daemon and nginx: one build, shipped to both at once."""
    daemons = [oh.SecondDaemon().start() for _ in range(2)]
    hosts, p = [], None
    try:
        hosts = [start_own_host(tmp_path_factory, d, hide=[local_app.dir], name=f"h{i}")
                 for i, d in enumerate(daemons)]
        p = own_project(request, tmp_path / "multi", hosts[0], local_app)
        entries, names = {}, []
        for i, h in enumerate(hosts):
            name = f"web{i + 1}"
            names.append(name)
            entry = h.hosts_entry(name)[name]
            public, blue, green = lh.free_ports(3)
            entry["env"] = {**h.env_settings(), "PUBLIC_PORT": str(public),
                            "BLUE_PORT": str(blue), "GREEN_PORT": str(green),
                            "DEPLOY_DIR": str(tmp_path / f"srv{i}" / p.name)}
            entries[name] = (entry, public)
        p.hosts_file.write_text(yaml.safe_dump(
            {"hosts": {n: e for n, (e, _) in entries.items()}, "default_hosts": names}))
        p.set(BUILD_ON="local", LOCAL_BUILD_DIR=str(tmp_path / "builds"), HEALTH_TIMEOUT=40)
        local_app.commit("v6", kind="pyweb")
        fab(p, "setup")
        # --force: setup released v6 already (alone that is nothing to release).
        r = fab(p, "release", "--parallel", "--json", "--force")
        lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        assert {o["host"] for o in lines} == set(names), r.stdout
        assert len({o["commit"] for o in lines}) == 1
        builds = [line for line in r.stderr.splitlines() if "build " in line and "here" in line]
        assert len(builds) == 1, r.stderr  # one build served both hosts
        for name, (_, public) in entries.items():
            status, _, body = lh.http_get(public, "/version")
            assert (status, body.strip()) == (200, "v6"), (name, status, body)
    finally:
        if p is not None:
            p.remove()
        for h in hosts:
            h.stop()
        for d in daemons:
            d.stop()
