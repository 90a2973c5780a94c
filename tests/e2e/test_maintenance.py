"""fab maintenance on|off: every public request answered 503 with Retry-After
and a page, by the same tested reload as a release; the colours stay
reachable for health probes, preview and the checks through nginx; a release
or rollback while it is on keeps it on; status and history show it; bad
input stops with exit 2 before any connection."""

import json

import pytest
import yaml

import loophost as lh
from sslkit import ssl_project
from traffic import request, tls_context

pytestmark = pytest.mark.e2e


def status_json(project):
    return json.loads(project.fab("status", "--json", check=0).stdout.splitlines()[0])


def history_json(project):
    out = project.fab("history", "--json", "--lines", "50", check=0).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_maintenance_on_release_rollback_off(make_project, any_nginx_host, tmp_path):
    project = make_project(host=any_nginx_host)
    project.set(MAINTENANCE_RETRY_AFTER=120)
    port = project.public_port
    project.fab("setup", check=0)
    assert request(port, "/version")[0] == 200
    assert "x_bluegreen_bypass" not in project.nginx_file.read_text()

    out = project.fab("maintenance", "on", "--message", "Back at 10:00 <b>soon</b> & fine",
                      check=0)
    assert "maintenance on" in out.stdout
    for path in ("/", "/version", "/assets/x.js", "/no/such/page"):
        for method in ("GET", "POST"):
            status, headers, body = request(port, path, method=method)
            assert status == 503, (path, method, status, body)
            assert headers["retry-after"] == "120"
            assert headers["x-deploy-maintenance"] == "on"
            assert headers["content-type"].startswith("text/html")
            if method == "GET":  # the message, HTML-escaped
                assert "Back at 10:00 &lt;b&gt;soon&lt;/b&gt; &amp; fine" in body, body
    # Let's Encrypt's HTTP-01 challenges pass through to their location, not the page.
    status, headers, _ = request(port, "/.well-known/acme-challenge/tok3n")
    assert status != 503 and "x-deploy-maintenance" not in headers, (status, headers)
    # The colours themselves still answer (health probes, preview's tunnel).
    assert request(project.blue_port, "/version")[2].strip() == "v1"

    s = status_json(project)
    assert s["maintenance"]["message"] == "Back at 10:00 <b>soon</b> & fine"
    assert s["maintenance"]["since"] and "token" not in s["maintenance"]
    assert "MAINTENANCE ON" in project.fab("status", check=0).stdout

    # A release while it is on: verify reaches green through nginx, the page stays.
    project.app.commit("v2")
    project.fab("release", check=0)
    status, headers, _ = request(port, "/version")
    assert (status, headers["x-deploy-colour"]) == (503, "green")
    assert request(project.green_port, "/version")[2].strip() == "v2"
    project.fab("rollback", check=0)
    status, headers, _ = request(port, "/version")
    assert (status, headers["x-deploy-colour"]) == (503, "blue")
    assert status_json(project)["maintenance"]["message"].startswith("Back at")
    # repair with an unreadable state.json keeps the page on, with the nginx file's token
    (project.deploy_dir / "state.json").write_text("{not json")
    project.fab("repair", check=0)
    repaired = status_json(project)["maintenance"]
    assert repaired["since"] == s["maintenance"]["since"]
    # ... and its --message, which the nginx file says too
    assert repaired["message"] == "Back at 10:00 <b>soon</b> & fine", repaired
    assert request(port, "/")[0] == 503
    project.fab("rollback", check=0)  # its verify through nginx needs the file's token
    status, headers, _ = request(port, "/version")
    assert (status, headers["x-deploy-colour"]) == (503, "green")
    project.fab("rollback", check=0)

    # A page of one's own: MAINTENANCE_PAGE_FILE, uploaded; `on` again replaces the page.
    page = tmp_path / "down.html"
    page.write_text("<!doctype html><title>Shop closed</title><p>Inventory day.</p>\n")
    project.set(MAINTENANCE_PAGE_FILE=page)
    project.fab("maintenance", "on", check=0)
    status, _, body = request(port, "/")
    assert (status, body) == (503, page.read_text())
    # `on` again that fails after the new page was uploaded: the served page is put back.
    other = tmp_path / "other.html"
    other.write_text("<p>a page that never went live</p>\n")
    project.set(MAINTENANCE_PAGE_FILE=other)
    project.fab("maintenance", "on", env={"BLUEGREEN_NGINX_TEST_CMD": "false"}, check=1)
    status, _, body = request(port, "/")
    assert (status, body) == (503, page.read_text())
    project.set(MAINTENANCE_PAGE_FILE=page)

    out = project.fab("maintenance", "off", check=0)
    assert "maintenance off" in out.stdout
    status, headers, body = request(port, "/version")
    assert (status, body.strip(), headers["x-deploy-colour"]) == (200, "v1", "blue")
    assert "retry-after" not in headers
    assert status_json(project)["maintenance"] is None
    assert "already" in project.fab("maintenance", "off", check=0).stdout

    entries = [e for e in history_json(project) if e["task"] == "maintenance"]
    assert [(e["result"], e["maintenance"]) for e in entries] == \
        [("ok", "on"), ("ok", "on"), ("failed", "on"), ("ok", "off")]
    assert entries[0]["message"] == "Back at 10:00 <b>soon</b> & fine"
    shown = project.fab("history", check=0).stdout
    assert "maintenance on: Back at 10:00" in shown and "maintenance off" in shown


def test_maintenance_over_https(make_project, tmp_path, readable_deploy_dir):  # noqa: F811
    project = ssl_project(make_project, tmp_path, deploy_dir=readable_deploy_dir)
    tls = (project.server_name, tls_context(project.cert))
    port = project.ssl_port
    project.fab("setup", check=0)
    project.fab("maintenance", "on", check=0)
    status, headers, body = request(port, "/", tls=tls)
    assert (status, headers["retry-after"]) == (503, "60") and "maintenance" in body.lower()
    project.app.commit("v2")
    project.fab("release", check=0)  # verify goes over TLS, through the page
    assert request(port, "/version", tls=tls)[0] == 503
    project.fab("maintenance", "off", check=0)
    status, headers, body = request(port, "/version", tls=tls)
    assert (status, body.strip(), headers["x-deploy-colour"]) == (200, "v2", "green")


@pytest.fixture
def unreachable(project):
    """A hosts.yml whose host listens nowhere: a task that connected would exit 3."""
    hosts = project.dir / "dead-hosts.yml"
    hosts.write_text(yaml.safe_dump({"hosts": {"dead": {"host": "127.0.0.1",
                                                        "port": lh.free_port()}},
                                     "default_hosts": ["dead"]}))
    return {"BLUEGREEN_HOSTS_FILE": str(hosts)}


@pytest.mark.parametrize("args, env, named", [
    (["on", "--message", "two\nlines"], {}, "--message"),
    (["on", "--message", "bell\x07"], {}, "--message"),
    (["on", "--message", "tab\there"], {}, "--message"),
    (["sideways"], {}, "maintenance"),
    (["off", "--message", "x"], {}, "--message"),
    (["on"], {"BLUEGREEN_MAINTENANCE_PAGE_FILE": "/nonexistent/down.html"},
     "MAINTENANCE_PAGE_FILE"),
    (["on"], {"BLUEGREEN_MAINTENANCE_RETRY_AFTER": "soon"}, "MAINTENANCE_RETRY_AFTER"),
    (["on"], {"BLUEGREEN_ASSET_PATHS": "assets/"}, "ASSET_PATHS"),
    (["on"], {"BLUEGREEN_ASSET_PATHS": "/a;b/"}, "ASSET_PATHS"),
])
def test_bad_input_exits_2_before_connecting(project, unreachable, args, env, named):
    result = project.fab("maintenance", *args, env={**unreachable, **env})
    assert result.returncode == 2, result.stdout + result.stderr
    assert named in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_page_file_over_1mb_exits_2_and_a_good_one_would_connect(project, unreachable,
                                                                    tmp_path):
    big = tmp_path / "big.html"
    big.write_bytes(b"<p>" + b"x" * (1024 * 1024))
    result = project.fab("maintenance", "on",
                         env={**unreachable, "BLUEGREEN_MAINTENANCE_PAGE_FILE": str(big)})
    assert result.returncode == 2 and "MAINTENANCE_PAGE_FILE" in result.stderr, result.stderr
    assert "1 MB" in result.stderr
    # The same command with good input does try the host: exit 3, not 2.
    assert project.fab("maintenance", "on", "--message", "ok", env=unreachable).returncode == 3
