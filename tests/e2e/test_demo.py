"""`./scripts/demo.sh` works as the README and docs/demo.md say: it runs the whole story with
no failed request under load, runs again over itself, and `down` leaves
nothing of it behind (and never the Docker daemon it did not start).

The run is the test's own: DEMO_DIR in tmp_path, a `bgt-` app name claimed
by this session, any free ports; a developer's own demo in .demo/ is not
touched.
"""

import json
import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest

import loophost as lh  # `loophost` is the fixture

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = REPO_ROOT / "scripts" / "demo.sh"
TIMEOUT = 600  # the demo takes well under a minute on a set-up machine
# scripts/loadgen.py's summary line. At DEMO_RATE 50 the quiet second before
# and after the release alone send 100: fewer, and "0 failed" says nothing.
ZERO_FAILED = re.compile(r"^load: (\d+) requests sent in .*, 0 failed$", re.M)
MIN_REQUESTS = 100


def assert_zero_failed(out):
    found = ZERO_FAILED.search(out)
    assert found, out
    assert int(found.group(1)) >= MIN_REQUESTS, out


@pytest.fixture
def demo_env(tmp_path):
    name = f"{lh.TEST_PREFIX}demo-{secrets.token_hex(3)}"
    lh.claim_project(name)
    demo_dir = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BLUEGREEN_")}
    env.update(DEMO_DIR=str(demo_dir), DEMO_APP_NAME=name, DEMO_PORTS="0 0 0")
    yield env
    if demo_dir.exists():  # the test failed before `down` did its job
        subprocess.run([str(DEMO), "down"], env=env, capture_output=True, timeout=TIMEOUT)
    lh.remove_compose_projects(name=name)
    lh.release_project(name)


def run_demo(env, *args):
    try:
        r = subprocess.run([str(DEMO), *args], env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"demo.sh {' '.join(args)} still running after {TIMEOUT}s:\n"
                             f"{e.stdout}") from None
    assert r.returncode == 0, f"demo.sh {' '.join(args)} exited {r.returncode}:\n{r.stdout}"
    return r.stdout


def recorded(env):
    """(the demo's record, its sshd and nginx as (pid, start time)) while it is up."""
    demo_dir = Path(env["DEMO_DIR"])
    record = json.loads((demo_dir / "demo.json").read_text())
    host = json.loads(Path(record["loophost"]).read_text())
    return record, [(pid, started(pid)) for pid in (host["sshd_pid"], host["nginx_pid"])]


def started(pid):
    """A process's start time (clock ticks since boot), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def running(processes):
    """Those of (pid, start time) that still run: a pid handed to a new
    process since (pids wrap at 32768 here, and the tests start many) is not."""
    return [(pid, t) for pid, t in processes if lh.pid_alive(pid) and started(pid) == t]


def containers(name):
    return lh.nonblank_lines(lh.docker(
        "ps", "-a", "--filter", f"label={lh.PROJECT_LABEL}={name}", "--format", "{{.Names}}"))


def images(name):
    return [line for line in lh.nonblank_lines(lh.docker(
        "images", "--format", "{{.Repository}}:{{.Tag}}"))
        if line.startswith(f"bluegreen-{name}:")]


def published(container):
    """(network mode, the host addresses its ports are published on) of a container."""
    r = lh.docker("inspect", "--format",
                  "{{.HostConfig.NetworkMode}} {{json .NetworkSettings.Ports}}", container)
    mode, ports = r.stdout.strip().split(" ", 1)
    return mode, {b["HostIp"] for bindings in json.loads(ports).values() for b in bindings or []}


def root_files():
    """The operator's own .env and hosts.yml in the repository, if any."""
    return {p: p.read_bytes() if p.exists() else None
            for p in (REPO_ROOT / ".env", REPO_ROOT / "hosts.yml")}


def test_demo_runs_twice_then_down_leaves_nothing(demo_env):
    name = demo_env["DEMO_APP_NAME"]
    assert lh.docker("info", timeout=30).returncode == 0, \
        "no Docker daemon answers: run scripts/setup-host.sh first"
    operator_files = root_files()

    out = run_demo(demo_env)
    assert_zero_failed(out)
    for step in ("fab -H demo setup", "fab -H demo release", "fab -H demo status",
                 "fab -H demo release, under load", "fab -H demo rollback"):
        assert step in out, f"no step {step!r} in:\n{out}"
    assert "curl -i http://127.0.0.1:" in out and "./scripts/demo.sh down" in out, out
    record, first_pids = recorded(demo_env)
    # The test session's dockerd was running before: never the demo's to stop.
    assert record["dockerd_pid"] is None, record
    assert running(first_pids) == first_pids, first_pids
    assert len(containers(name)) == 2, containers(name)
    # The product's default network: each colour on Docker's bridge, published
    # on loopback only (traffic never goes to a container's own address).
    assert "DOCKER_NETWORK=bridge" in (Path(demo_env["DEMO_DIR"]) / ".env").read_text()
    for container in containers(name):
        mode, addresses = published(container)
        assert mode != "host" and addresses == {"127.0.0.1"}, (container, mode, addresses)
    public = record["ports"][0]
    status, headers, body = lh.http_get(public, "/version")
    assert (status, headers.get("x-deploy-colour"), body.strip()) == (200, "green", "v2")

    # Again, over the running demo: it is replaced cleanly, still 0 failed.
    out = run_demo(demo_env)
    assert "an earlier demo is in" in out, out
    assert_zero_failed(out)
    record, pids = recorded(demo_env)
    assert not running(first_pids), first_pids
    assert running(pids) == pids, pids

    out = run_demo(demo_env, "down")
    assert f"removed the containers (2) and images of compose project {name}" in out, out
    assert "stopped the demo host" in out, out
    assert not running(pids), f"still running: {pids}\n{out}"
    assert containers(name) == [] and images(name) == [], out
    assert not Path(demo_env["DEMO_DIR"]).exists(), out
    assert not lh.port_accepts(public), f"something still listens on {public}"
    assert lh.docker("info", timeout=30).returncode == 0, "down stopped a dockerd it did not start"
    assert root_files() == operator_files, "the demo changed the repository's .env or hosts.yml"

    # down twice is fine: nothing to stop.
    assert "nothing to stop" in run_demo(demo_env, "down")
