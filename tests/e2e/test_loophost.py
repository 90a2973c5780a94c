"""The loopback host is real: SSH with strict host keys, a reloadable nginx,
and sample apps that behave as their kind says under Docker Compose."""

import contextlib
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest
import yaml
from dotenv import dotenv_values

import loophost as lh  # `loophost` is the fixture

PREFIX = lh.TEST_PREFIX
docker = lh.docker


def ssh_client(host, known_hosts):
    client = paramiko.SSHClient()
    if known_hosts:
        client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(host.host, port=host.ssh_port, username=host.user,
                   key_filename=str(host.client_key), look_for_keys=False,
                   allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
    return client


def test_ssh_accepts_the_client_key_with_strict_host_key_checking(loophost):
    client = ssh_client(loophost, loophost.known_hosts)
    try:
        _, stdout, _ = client.exec_command("echo ok")
        assert stdout.read().decode().strip() == "ok"
        assert stdout.channel.recv_exit_status() == 0
    finally:
        client.close()


def test_ssh_refuses_a_host_that_is_not_in_known_hosts(loophost):
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        ssh_client(loophost, known_hosts=None).close()


def test_nginx_reload_serves_a_dropped_in_file(loophost):
    port = lh.free_port()
    conf = loophost.conf_dir / f"{PREFIX}probe-{secrets.token_hex(3)}.conf"
    conf.write_text(
        f"server {{\n    listen 127.0.0.1:{port};\n"
        f"    location / {{ add_header X-Probe {conf.stem} always; return 200 \"hello\\n\"; }}\n}}\n")
    try:
        subprocess.run(loophost.nginx_test_cmd, shell=True, check=True, capture_output=True)
        subprocess.run(loophost.nginx_reload_cmd, shell=True, check=True, capture_output=True)
        # A reload returns before the new workers serve: poll.
        answer = wait_for_answer(port, timeout=10)
        assert answer[0] == 200, answer
        assert answer[1].get("x-probe") == conf.stem
        assert answer[2] == "hello\n"
    finally:
        conf.unlink()
        subprocess.run(loophost.nginx_reload_cmd, shell=True, check=True, capture_output=True)
    # The listener goes away with the file, and the master survives both reloads.
    deadline = time.monotonic() + 10
    while lh.port_accepts(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not lh.port_accepts(port)
    assert lh.pid_alive(loophost.nginx_pid)


def wait_for_answer(port, path="/", timeout=15, interval=0.2, http_timeout=2):
    """Poll until anything answers HTTP on port; return the last (status, headers, body)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = _http_get(port, path, timeout=http_timeout)
        if answer[0] is not None or time.monotonic() > deadline:
            return answer
        time.sleep(interval)


def _http_get(port, path="/", timeout=2):
    return lh.http_get(port, path, timeout=timeout)


# --- the sample app under Docker Compose --------------------------------------------


@contextlib.contextmanager
def compose_up(app, branch, tmp_path):
    """Clone app's branch like the deploy tool would, build and start it with
    host networking on a free port; remove everything afterwards."""
    project = f"{PREFIX}kind-{secrets.token_hex(3)}"
    lh.claim_project(project)
    src = tmp_path / "src"
    subprocess.run(["git", "clone", "-q", "--branch", branch, str(app.repo), str(src)], check=True)
    port = lh.free_port()
    compose_file = tmp_path / "compose.yml"
    compose_file.write_text(yaml.safe_dump({"services": {"app": {
        "build": {"context": str(src)},
        "init": True,
        "network_mode": "host",
        "stop_grace_period": "1s",
        "environment": {"PORT": str(port)},
    }}}))
    base = ["docker", "compose", "-p", project, "-f", str(compose_file)]
    try:
        up = subprocess.run([*base, "up", "-d", "--build"], capture_output=True, text=True,
                            timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        cid = subprocess.run([*base, "ps", "-a", "-q"], capture_output=True, text=True,
                             check=True).stdout.split()[0]
        yield port, cid
    finally:
        subprocess.run([*base, "down", "--rmi", "local", "--volumes", "--timeout", "1"],
                       capture_output=True, timeout=120)
        lh.remove_compose_projects(name=project)
        lh.release_project(project)
        assert docker("ps", "-a", "-q", "--filter",
                      f"label=com.docker.compose.project={project}").stdout.strip() == ""


def container_state(cid):
    out = docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid,
                 check=True).stdout.split()
    return out[0], int(out[1])


def test_sample_app_ok_serves_health_and_its_version(sample_app, loophost, tmp_path):
    sample_app.commit("v2")
    with compose_up(sample_app, "main", tmp_path) as (port, cid):
        status, _, body = wait_for_answer(port, "/health")
        assert status == 200, body
        assert _http_get(port, "/version")[2].strip() == "v2"
        status, _, body = _http_get(port, "/")
        assert status == 200 and "v2" in body
        assert container_state(cid)[0] == "running"


def test_sample_app_slow_start_answers_only_after_its_delay(sample_app, loophost, tmp_path):
    sample_app.commit("v3", slow=3)
    with compose_up(sample_app, "main", tmp_path) as (port, cid):
        started = time.monotonic()
        assert _http_get(port, "/health")[0] is None
        status, _, body = wait_for_answer(port, "/health", timeout=15)
        assert status == 200, body
        assert time.monotonic() - started > 1.5
        assert _http_get(port, "/version")[2].strip() == "v3"


def test_sample_app_crash_exits_non_zero(sample_app, loophost, tmp_path):
    sample_app.commit("v4", kind="crash", branch="crashing")
    with compose_up(sample_app, "crashing", tmp_path) as (port, cid):
        deadline = time.monotonic() + 15
        while container_state(cid)[0] != "exited" and time.monotonic() < deadline:
            time.sleep(0.2)
        state, code = container_state(cid)
        assert (state, code) == ("exited", 3)
        assert _http_get(port, "/health")[0] is None


def test_sample_app_http500_answers_500_everywhere(sample_app, loophost, tmp_path):
    sample_app.commit("v5", kind="http500")
    with compose_up(sample_app, "main", tmp_path) as (port, cid):
        status, _, body = wait_for_answer(port, "/health")
        assert status == 500, body
        assert "v5" in body
        assert _http_get(port, "/")[0] == 500
        assert _http_get(port, "/version")[0] == 500
        assert container_state(cid)[0] == "running"


def test_sample_app_hang_listens_and_never_answers(sample_app, loophost, tmp_path):
    sample_app.commit("v6", kind="hang")
    with compose_up(sample_app, "main", tmp_path) as (port, cid):
        deadline = time.monotonic() + 15
        while not lh.port_accepts(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lh.port_accepts(port), "the hang app should accept connections"
        started = time.monotonic()
        status, _, error = _http_get(port, "/health", timeout=2)
        assert status is None and "timed out" in error, error
        assert time.monotonic() - started >= 1.9
        assert container_state(cid)[0] == "running"


def test_sample_app_commits_land_on_their_branch(sample_app):
    main_v1 = sample_app.head("main")
    assert sample_app.commits["v1"] == main_v1
    sha = sample_app.commit("v2", branch="feature")
    assert sample_app.head("feature") == sha
    assert sample_app.head("main") == main_v1
    assert sample_app.commit("v3") == sample_app.head("main") != sha


# --- clean-up of what earlier runs left -------------------------------------------------


def test_cli_up_down_and_abandoned_hosts_are_stopped(tmp_path):
    script = Path(lh.__file__)
    workdir = tmp_path / "host"

    def up():
        r = subprocess.run([sys.executable, script, "up", workdir], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    data = up()
    assert lh.pid_alive(data["sshd_pid"]) and lh.pid_alive(data["nginx_pid"])
    assert lh.port_accepts(data["ssh_port"])
    assert up() == data  # already up: same host
    r = subprocess.run([sys.executable, script, "down", workdir], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not lh.pid_alive(data["sshd_pid"]) and not lh.pid_alive(data["nginx_pid"])

    # The process that recorded a host has exited (a killed test session):
    # the next session stops it, by the recorded pids.
    data = up()
    assert lh.LoopHost.stop_abandoned([workdir / "loophost.json"]) == 1
    assert not lh.pid_alive(data["sshd_pid"]) and not lh.pid_alive(data["nginx_pid"])
    assert not (workdir / "loophost.json").exists()


def test_leftover_projects_are_removed_unless_a_running_session_claims_them(
        sample_app, tmp_path):
    compose_file = tmp_path / "compose.yml"
    compose_file.write_text(yaml.safe_dump({"services": {"app": {
        "build": {"context": str(sample_app.work)}, "network_mode": "host"}}}))
    kept, gone = (f"{PREFIX}{what}-{secrets.token_hex(3)}" for what in ("claimed", "abandoned"))
    exited = subprocess.Popen(["true"])
    exited.wait()
    lh.claim_project(kept)
    lh.CLAIMS_DIR.joinpath(gone).write_text(f"{exited.pid}\n")

    def containers(project):
        return docker("ps", "-a", "-q", "--filter",
                      f"label=com.docker.compose.project={project}").stdout.split()

    try:
        for project in (kept, gone):
            r = subprocess.run(["docker", "compose", "-p", project, "-f", compose_file,
                                "create", "--build"], capture_output=True, text=True, timeout=180)
            assert r.returncode == 0, r.stdout + r.stderr
            assert containers(project)
        lh.remove_leftover_projects(PREFIX)
        assert containers(gone) == []
        assert docker("images", "-q", f"{gone}-app").stdout.strip() == ""
        assert not lh.CLAIMS_DIR.joinpath(gone).exists()
        assert containers(kept)
    finally:
        for project in (kept, gone):
            lh.remove_compose_projects(name=project)
            lh.release_project(project)


# --- the project fixture -----------------------------------------------------------------


def test_project_points_fab_at_the_loophost(project, loophost, sample_app, monkeypatch):
    env = dotenv_values(project.env_file)
    assert env == project.settings
    assert env["APP_NAME"].startswith(PREFIX)
    assert env["GIT_REPO"] == str(sample_app.repo)
    assert env["NGINX_TEST_CMD"] == loophost.nginx_test_cmd
    assert len({env["PUBLIC_PORT"], env["BLUE_PORT"], env["GREEN_PORT"]}) == 3
    hosts = yaml.safe_load(project.hosts_file.read_text())
    assert hosts == {"hosts": loophost.hosts_entry("testhost"), "default_hosts": ["testhost"]}

    project.set(HEALTH_TIMEOUT=5, APP_CMD="busybox sh -c 'echo $PORT; exit 1' # not a comment")
    env = dotenv_values(project.env_file)
    assert env["HEALTH_TIMEOUT"] == "5"
    assert env["APP_CMD"] == "busybox sh -c 'echo $PORT; exit 1' # not a comment"
    project.set(APP_CMD=None)
    assert "APP_CMD" not in dotenv_values(project.env_file)

    monkeypatch.setenv("BLUEGREEN_APP_NAME", "leaked")
    assert "BLUEGREEN_APP_NAME" not in project.child_env()
    assert project.child_env({"BLUEGREEN_GREEN_BRANCH": "x"})["BLUEGREEN_GREEN_BRANCH"] == "x"

    result = project.fab("--version", check=0)
    assert "Fabric" in result.stdout
    project.fab("--list", check=0)

    status, headers, error = project.get("/")
    assert status is None and headers == {} and "Connection refused" in error
