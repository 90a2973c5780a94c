"""fab check: the facts its script gathers, and how `evaluate` judges them.

Tests are data: a sample of the check script's output (tool markers, the
inspect blocks, `ss -Htlnp` lines, the other nginx files, disk, git, SSL)
and the rows it must give.
"""

import os
import subprocess

import pytest

from support.checks import (
    BLUE_PROXY, NGINX_8080, SSHD, TOOLS, check_output, failures, judge, only, rows, ss_line,
)
from support.host_output import container_line, released_state
from support.local_step import M, read_step, run_step
from support.plain_settings import make_settings
from tasks.commands.base import first_command
from tasks.commands.host_reading import parse_listening, parse_view
from tasks.flows.check import (CERT_WARN_DAYS, OtherFile, check_script, evaluate,
                               parse_other_files, tool_problems, tools_script)
from tasks.model.nginx_file import render_nginx


def other_file(path, *, listen=8080, names="blog.example.com", upstream=9001, app=None):
    """Another site's nginx file as `cat` prints it inside the others block."""
    header = f"# bluegreen app={app} live=blue\n" if app else "# written by hand\n"
    return (f"::file {path}\n{header}"
            f"upstream backend {{\n    server 127.0.0.1:{upstream};\n}}\n"
            f"server {{\n    listen {listen};\n    listen [::]:{listen};\n"
            f"    server_name {names};\n"
            "    location / { proxy_pass http://backend; }\n}\n\n")


@pytest.fixture
def s():
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git",
                         SERVER_NAME="shop.example.com")


# --- a healthy host ------------------------------------------------------------


def test_a_healthy_host_is_all_ok(s):
    result = judge(s)
    assert [(name, level) for name, level, _ in result] == [
        ("tools", "ok"), ("keep-alive", "ok"), ("nginx -t", "ok"), ("PUBLIC_PORT", "ok"),
        ("BLUE_PORT", "ok"), ("GREEN_PORT", "ok"), ("disk", "ok"), ("docker disk", "ok"),
        ("images", "ok"), ("nginx reload", "ok"), ("GIT_REPO", "ok")]
    assert only(result, "tools")[1] == "git 2.39.2, docker 24.0.7, compose 2.24.5, nginx 1.22.1"
    assert only(result, "PUBLIC_PORT")[1] == "8080 ours"
    assert only(result, "BLUE_PORT")[1] == "8081 ours"
    assert only(result, "GREEN_PORT")[1] == "8082 free"
    assert only(result, "disk")[1] == "20.0 GiB free for /srv/shop"
    assert only(result, "GIT_REPO")[1] == "reachable from the host (3 branches)"


def test_keep_alive_clients_are_protected_only_on_nginx_1_27_4_or_later(s):
    level, detail = only(judge(s, nginx_version="1.28.0"), "keep-alive")
    assert (level, detail.split(":")[0]) == ("ok", "protected")
    level, detail = only(judge(s, nginx_version="1.22.1"), "keep-alive")
    assert level == "warn" and detail.startswith("not protected: nginx 1.22.1")
    assert "install nginx 1.27.4+" in detail  # what to do
    level, detail = only(judge(s.__class__(**{**vars(s), "keepalive_min_timeout": "off"}),
                               nginx_version="1.28.0"), "keep-alive")
    assert level == "warn" and "KEEPALIVE_MIN_TIMEOUT=off" in detail


def test_a_fresh_host_before_setup(s):
    result = judge(s, live=None, deploy_dir=False, listening=(SSHD,))
    assert failures(result) == []
    assert only(result, "PUBLIC_PORT")[1] == "8080 free"


# --- tools ---------------------------------------------------------------------


@pytest.mark.parametrize("tools, problem", [
    ({"git": "missing"}, "git is not installed (or not in the deploy user's PATH)"),
    ({"docker": "missing"}, "docker is not installed (or not in the deploy user's PATH)"),
    ({"docker": "daemon-down"}, "the Docker daemon does not answer (is it running? may the "
                                "deploy user use it?)"),
    ({"compose": "missing"}, "compose is not installed (or not in the deploy user's PATH)"),
    ({"compose": "1.29.2"}, "Compose 1.29.2 is not v2 (install the docker compose plugin)"),
    ({"nginx": "missing"}, "nginx is not installed (or not in the deploy user's PATH)"),
])
def test_tool_problems_fail_the_check(s, tools, problem):
    result = judge(s, tools={**TOOLS, **tools})
    assert rows(result, "tools") == [("FAIL", problem)]


def test_every_missing_tool_is_named():
    assert len(tool_problems({})) == 4


@pytest.mark.parametrize("version", ["2.24.5", "v2.20.2", "2.40.3-desktop.1", "5.0.0", "v5.1.2"])
def test_compose_v2_and_later_are_fine(version):
    # Compose went from v2 to v5 (3 and 4 were skipped): v5 is not v1.
    assert tool_problems({**TOOLS, "compose": version}) == []


@pytest.mark.parametrize("version", ["1.29.2", "v1.25.0", "unknown", ""])
def test_compose_v1_or_garbage_is_refused(version):
    assert tool_problems({**TOOLS, "compose": version}) == [
        f"Compose {version} is not v2 (install the docker compose plugin)"]


@pytest.mark.parametrize("command, program", [
    ("nginx -t", "nginx"),
    ("sudo -n nginx -t", "nginx"),
    ("env NGINX_CONF=/x /usr/sbin/nginx -t -q", "/usr/sbin/nginx"),
    ("LANG=C openresty -t", "openresty"),
    ("systemctl reload nginx", "systemctl"),
    ("", ""),
])
def test_first_command(command, program):
    assert first_command(command) == program


# --- nginx -t --------------------------------------------------------------------


def test_nginx_t_failure_shows_its_last_line(s):
    out = ('nginx: [emerg] cannot load certificate "/etc/ssl/x.pem"\n'
           "nginx: configuration file /etc/nginx/nginx.conf test failed\n")
    result = judge(s, nginx_test="fail", nginx_test_output=out)
    assert only(result, "nginx -t") == (
        "FAIL", "nginx: configuration file /etc/nginx/nginx.conf test failed "
                "(NGINX_TEST_CMD=nginx -t)")


def test_nginx_t_failure_without_output(s):
    result = judge(s, nginx_test="fail", nginx_test_output="")
    assert only(result, "nginx -t") == ("FAIL", "failed (NGINX_TEST_CMD=nginx -t)")


# --- ports -------------------------------------------------------------------------


def test_public_port_shared_with_the_same_server_name_fails(s):
    other = other_file("/etc/nginx/conf.d/old-shop.conf", names="www.x.org shop.example.com")
    result = judge(s, others=other)
    assert only(result, "PUBLIC_PORT") == (
        "FAIL", "8080 is also served by /etc/nginx/conf.d/old-shop.conf with server_name "
                "shop.example.com www.x.org: give the apps different ports or SERVER_NAMEs")


def test_public_port_shared_with_different_server_names_is_fine(s):
    result = judge(s, others=other_file("/etc/nginx/conf.d/blog.conf"))
    assert only(result, "PUBLIC_PORT") == (
        "ok", "8080 ours (shared by name with /etc/nginx/conf.d/blog.conf)")
    assert failures(result) == []


@pytest.mark.parametrize("ours, theirs", [("_", "blog.example.com"),
                                          ("shop.example.com", "_")])
def test_a_catch_all_server_name_on_a_shared_port_fails(ours, theirs):
    # With '_' on either side nginx picks the default server by file order.
    s = make_settings(APP_NAME="shop", SERVER_NAME=ours)
    result = judge(s, others=other_file("/etc/nginx/conf.d/blog.conf", names=theirs))
    assert only(result, "PUBLIC_PORT")[0] == "FAIL"


def test_a_file_on_another_port_is_no_clash(s):
    result = judge(s, others=other_file("/etc/nginx/conf.d/blog.conf", listen=80,
                                        names="shop.example.com"))
    assert only(result, "PUBLIC_PORT") == ("ok", "8080 ours")


def test_public_port_used_by_another_program(s):
    result = judge(s, live=None, listening=(ss_line(8080, "apache2"), SSHD))
    assert only(result, "PUBLIC_PORT") == ("FAIL", "8080 is used by apache2, not nginx")


def test_public_port_in_use_by_a_program_ss_cannot_name(s):
    # Without root, ss -p shows no process: a port we do not serve is someone's.
    result = judge(s, live=None, listening=(ss_line(8080), SSHD))
    assert only(result, "PUBLIC_PORT") == ("FAIL", "8080 is in use by another program")


def test_ssl_port_is_checked_too():
    s = make_settings(APP_NAME="shop", SERVER_NAME="shop.example.com",
                      SSL_CERT_FILE="/etc/ssl/shop.pem", SSL_KEY_FILE="/etc/ssl/shop.key")
    result = judge(s, listening=(NGINX_8080, ss_line(443, "caddy")),
                   ssl={"cert": "ok", "key": "ok", "end": "Jan  1 00:00:00 2030 GMT",
                        "expiry": "ok"})
    assert only(result, "SSL_PORT") == ("FAIL", "443 is used by caddy, not nginx")


def test_colour_port_used_by_another_program(s):
    result = judge(s, listening=(NGINX_8080, BLUE_PROXY, ss_line(8082, "python3", "127.0.0.1")))
    assert only(result, "GREEN_PORT") == (
        "FAIL", "8082 is in use by python3, not by green's container")
    assert only(result, "BLUE_PORT") == ("ok", "8081 ours")


def test_colour_port_in_use_by_an_unnamed_program(s):
    result = judge(s, listening=(NGINX_8080, BLUE_PROXY, ss_line(8082)))
    assert only(result, "GREEN_PORT") == (
        "FAIL", "8082 is in use by another program, not by green's container")


def test_a_colour_port_held_by_its_own_crash_looping_container_is_ours(s):
    result = judge(s, listening=(NGINX_8080, BLUE_PROXY, ss_line(8082, "docker-proxy")),
                   containers={"blue": container_line(s, "blue"),
                               "green": container_line(s, "green", "restarting", 1, 3)})
    assert only(result, "GREEN_PORT") == ("ok", "8082 ours")


def test_upstream_port_used_by_another_apps_file(s):
    other = other_file("/etc/nginx/conf.d/blog.conf", upstream=8082, app="blog")
    result = judge(s, others=other)
    assert only(result, "GREEN_PORT") == (
        "FAIL", "8082 is also an upstream of /etc/nginx/conf.d/blog.conf (app blog)")


def test_upstream_port_used_by_a_hand_written_file(s):
    result = judge(s, others=other_file("/etc/nginx/conf.d/legacy.conf", upstream=8081))
    assert only(result, "BLUE_PORT") == (
        "FAIL", "8081 is also an upstream of /etc/nginx/conf.d/legacy.conf")


def test_another_file_of_an_app_with_our_name(s):
    result = judge(s, others=other_file("/etc/nginx/conf.d/shop-old.conf", app="shop"))
    assert only(result, "APP_NAME") == (
        "FAIL", "/etc/nginx/conf.d/shop-old.conf belongs to an app named shop too")


# --- disk, git, SSL ------------------------------------------------------------------


@pytest.mark.parametrize("kb, level", [
    ("1048576", "ok"), ("1048575", "warn"), ("204800", "warn"), ("204799", "FAIL"),
    ("0", "FAIL"), ("", "warn"), ("n/a", "warn"),
])
def test_disk_thresholds(s, kb, level):
    assert only(judge(s, disk_kb=kb), "disk")[0] == level


def test_disk_unreadable_says_so(s):
    assert only(judge(s, disk_kb=""), "disk") == ("warn", "could not read free space")


def test_git_remote_failure(s):
    result = judge(s, git_remote="fail fatal: '/srv/repo.git' does not appear to be a git repository")
    assert only(result, "GIT_REPO") == (
        "FAIL", "the host cannot read /srv/repo.git: fatal: '/srv/repo.git' does not appear "
                "to be a git repository")


def test_git_remote_not_reported_at_all(s):
    step = read_step(check_output(s).replace(f"{M} git_remote ok 3\n", ""))
    result = evaluate(step.values, step.blocks, parse_view(step, s), s)
    assert only(result, "GIT_REPO")[0] == "FAIL"


@pytest.fixture
def ssl_settings():
    return make_settings(APP_NAME="shop", SERVER_NAME="shop.example.com",
                         SSL_CERT_FILE="/etc/ssl/shop.pem", SSL_KEY_FILE="/etc/ssl/shop.key")


SSL_LISTEN = (NGINX_8080, ss_line(443, "nginx"), BLUE_PROXY)


def test_ssl_certificate_that_expires_soon_warns(ssl_settings):
    result = judge(ssl_settings, listening=SSL_LISTEN,
                   ssl={"cert": "ok", "key": "ok", "end": "Jun  1 12:00:00 2024 GMT",
                        "expiry": "soon"})
    assert only(result, "certificate") == (
        "warn", f"expires within {CERT_WARN_DAYS} days (Jun  1 12:00:00 2024 GMT): renew it")
    assert only(result, "SSL_CERT_FILE") == ("ok", "present and readable")
    assert only(result, "SSL_PORT") == ("ok", "443 ours")
    assert failures(result) == []


def test_ssl_certificate_valid(ssl_settings):
    result = judge(ssl_settings, listening=SSL_LISTEN,
                   ssl={"cert": "ok", "key": "ok", "end": "Jan  1 00:00:00 2030 GMT",
                        "expiry": "ok"})
    assert only(result, "certificate") == ("ok", "valid until Jan  1 00:00:00 2030 GMT")


def test_ssl_key_missing_fails(ssl_settings):
    result = judge(ssl_settings, listening=SSL_LISTEN,
                   ssl={"cert": "ok", "key": "missing", "end": "", "expiry": "soon"})
    assert only(result, "SSL_KEY_FILE") == (
        "FAIL", "/etc/ssl/shop.key is missing or unreadable on the host")


def test_no_ssl_rows_without_ssl(s):
    names = {name for name, _, _ in judge(s)}
    assert not names & {"SSL_PORT", "SSL_CERT_FILE", "SSL_KEY_FILE", "certificate"}


# --- lock and state -----------------------------------------------------------------


def test_a_held_lock_drift_and_broken_state_are_warnings(s):
    owner = '{"user": "bo", "machine": "ci", "pid": 9, "command": "release", "started_at": 1699999990}'
    result = judge(s, owner=owner, state=released_state(s, "green", ("blue", "green")))
    assert only(result, "lock") == ("warn", "held by bo@ci pid 9 running `release` for 10s")
    assert only(result, "state") == ("warn", "state.json says green is live but nginx serves blue")
    result = judge(s, state="{broken")
    assert rows(result, "state") == [
        ("warn", "/srv/shop/state.json is not valid JSON (corrupted?) (run `fab repair`)")]
    assert failures(result) == []


# --- parsers --------------------------------------------------------------------------


def test_parse_listening():
    text = "\n".join([
        'LISTEN 0      511          0.0.0.0:8080      0.0.0.0:*    users:(("nginx",pid=812,fd=6))',
        'LISTEN 0      511             [::]:8080         [::]:*    users:(("nginx",pid=812,fd=7))',
        'LISTEN 0      4096       127.0.0.1:8081      0.0.0.0:*    users:(("docker-proxy",pid=9,fd=4))',
        "LISTEN 0      4096               *:8082            *:*",
        'LISTEN 0      4096   127.0.0.53%lo:53        0.0.0.0:*    users:(("systemd-resolve",pid=5,fd=14))',
        "garbage",
        "",
    ])
    assert parse_listening(text) == {8080: "nginx", 8081: "docker-proxy", 8082: "",
                                     53: "systemd-resolve"}


def test_parse_other_files():
    text = (other_file("/etc/nginx/conf.d/blog.conf", names="blog.example.com www.blog.example.com",
                       upstream=9001, app="blog")
            + "::file /etc/nginx/conf.d/default.conf\n"
              "server {\n    listen 80 default_server;\n    listen 127.0.0.1:8443 ssl;\n"
              "    root /var/www;\n}\n")
    assert parse_other_files(text) == [
        OtherFile(path="/etc/nginx/conf.d/blog.conf", app="blog", listen=frozenset({8080}),
                  names=frozenset({"blog.example.com", "www.blog.example.com"}),
                  upstream_ports=frozenset({9001})),
        OtherFile(path="/etc/nginx/conf.d/default.conf", app=None,
                  listen=frozenset({80, 8443}), names=frozenset({"_"}),
                  upstream_ports=frozenset()),
    ]
    assert parse_other_files("") == []


def test_our_own_rendered_file_parses_as_ours():
    s = make_settings(APP_NAME="shop", SERVER_NAME="a.example.com b.example.com",
                      SSL_CERT_FILE="/etc/ssl/c.pem", SSL_KEY_FILE="/etc/ssl/k.pem")
    [f] = parse_other_files("::file /etc/nginx/conf.d/shop.conf\n" + render_nginx(s, "green"))
    assert f == OtherFile(path="/etc/nginx/conf.d/shop.conf", app="shop",
                          listen=frozenset({8080, 443}),
                          names=frozenset({"a.example.com", "b.example.com"}),
                          # both: ASSET_PATHS bridges green's 404s to blue
                          upstream_ports=frozenset({8081, 8082}))


# --- the script -------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [
    {},
    {"USE_SUDO": "true", "SSL_CERT_FILE": "/etc/ssl/c.pem", "SSL_KEY_FILE": "/etc/ssl/k.pem",
     "NGINX_TEST_CMD": "sudo -n /usr/sbin/nginx -t -c '/etc/nginx/nginx.conf'",
     "COMPOSE_CMD": "docker-compose", "DEPLOY_DIR": "/opt/apps/shop@2"},
])
def test_check_script_is_valid_shell(extra):
    s = make_settings(APP_NAME="shop", GIT_REPO="git@example.com:acme/shop.git", **extra)
    for text in (check_script(s), tools_script(s)):
        r = subprocess.run(["/bin/sh", "-n"], input=text, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


def test_check_script_asks_nginx_its_version_through_the_test_command():
    s = make_settings(NGINX_TEST_CMD="sudo -n /usr/sbin/nginx -t")
    assert 'echo "$M nginx $(/usr/sbin/nginx -v 2>&1' in tools_script(s)


def test_check_script_with_use_sudo_and_ssl():
    s = make_settings(APP_NAME="shop", USE_SUDO="true", SSL_CERT_FILE="/etc/ssl/c.pem",
                      SSL_KEY_FILE="/etc/ssl/k.pem")
    text = check_script(s)
    assert "if out=$(sudo -n nginx -t 2>&1)" in text
    assert "sudo -n test -r /etc/ssl/k.pem" in text
    assert f"-checkend {CERT_WARN_DAYS * 86400} " in text
    assert "git ls-remote --heads" in text and "GIT_TERMINAL_PROMPT=0" in text
    assert "[ \"$f\" != /etc/nginx/conf.d/shop.conf ]" in text  # our own file is not "other"


# --- the scripts run as steps of a local shell (git, docker, nginx, ss are stubs) ---


def stub(bin_dir, name, text):
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)


@pytest.fixture
def stubbed(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(bin_dir, "git", 'case "$1" in --version) echo "git version 2.39.5";;\n'
                         'ls-remote) printf "abc\\trefs/heads/main\\ndef\\trefs/heads/dev\\n";;\n'
                         "*) exit 1;; esac\n")
    stub(bin_dir, "docker", 'case "$1" in version) echo 24.0.7;; compose) echo 2.40.3;;\n'
                            "*) exit 1;; esac\n")
    stub(bin_dir, "nginx", 'if [ "$1" = -v ]; then echo "nginx version: nginx/1.22.1" >&2; '
                           'else echo "nginx: [emerg] unknown directive \\"x\\""; exit 1; fi\n')
    stub(bin_dir, "ss", 'echo "LISTEN 0 511 0.0.0.0:8080 0.0.0.0:* '
                        'users:((\\"nginx\\",pid=1,fd=6))"\n')
    conf = tmp_path / "conf.d"
    conf.mkdir()
    (conf / "blog.conf").write_text("server { listen 8080; server_name blog.example.com; }\n")
    return tmp_path, {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_the_tools_step_reports_each_version(stubbed, s):
    _, env = stubbed
    result = run_step(tools_script(s), env=env)
    assert result.values == TOOLS | {"git": "2.39.5", "docker": "24.0.7",
                                     "compose": "2.40.3"}
    assert tool_problems(result.values) == []


def test_the_check_step_gives_what_evaluate_reads(stubbed):
    root, env = stubbed
    s = make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git", DEPLOY_DIR=str(root / "srv"),
                      NGINX_CONF_DIR=str(root / "conf.d"))
    result = run_step(check_script(s), env=env)
    assert result.code == 0, result.stderr
    assert result.values["nginx_test"] == "fail"
    assert result.blocks["nginx_test_output"] == 'nginx: [emerg] unknown directive "x"\n'
    assert result.values["git_remote"] == "ok 2"
    assert result.values["deploy_dir"] == "no" and int(result.values["disk_kb"]) > 0
    assert result.values["nginx_version"] == "1.22.1"
    [other] = parse_other_files(result.blocks["others"])
    assert other.path == str(root / "conf.d" / "blog.conf")
    assert parse_listening(result.blocks["listening"]) == {8080: "nginx"}
    rows = evaluate(result.values, result.blocks, parse_view(result, s), s)
    # DEPLOY_DIR and its parent missing (check before setup): the space of the
    # nearest directory that exists, said so, never "could not read".
    s = make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git", NGINX_CONF_DIR=str(root / "conf.d"),
                      DEPLOY_DIR=str(root / "not" / "yet" / "srv"))
    deep = run_step(check_script(s), env=env)
    assert int(deep.values["disk_kb"]) > 0 and deep.values["disk_dir"] == str(root), deep.values
    [disk] = [r for r in evaluate(deep.values, deep.blocks, parse_view(deep, s), s) if r[0] == "disk"]
    assert "it does not exist yet" in disk[2], disk
    assert only(rows, "nginx -t")[0] == "FAIL"


# --- Docker's disk, the app's images, nginx reloads ------------------------------------


def test_docker_disk_below_min_free_disk_fails(s):
    assert only(judge(s, docker_free_kb=str(3 * 1024 * 1024)), "docker disk") == (
        "ok", "3.0 GiB free in /var/lib/docker (MIN_FREE_DISK 2.0 GiB)")
    level, detail = only(judge(s, docker_free_kb=str(1024 * 1024)), "docker disk")
    assert level == "FAIL" and "1.0 GiB free" in detail and "MIN_FREE_DISK 2.0 GiB" in detail
    assert only(judge(s, docker_free_kb=""), "docker disk")[0] == "warn"


def test_the_apps_images_count_once_each_and_the_build_cache_is_named(s):
    level, detail = only(judge(s), "images")
    assert level == "ok"
    assert detail.startswith("2 image(s) of shop: 12.5 MB of their own"), detail
    assert "build cache of all apps: 51.7 MB" in detail, detail


def test_worker_shutdown_timeout_unset_is_a_warning(s):
    assert only(judge(s), "nginx reload")[0] == "ok"
    level, detail = only(judge(s, shutdown_timeout="unset"), "nginx reload")
    assert level == "warn" and "worker_shutdown_timeout is not set" in detail
    assert rows(judge(s, shutdown_timeout="unknown"), "nginx reload") == []
