"""Rendering: the nginx and compose files, checked as text and by the real tools.

The text checks pin what a release relies on (the live colour's header
comment, X-Deploy-Colour, the upstream port). The real checks run the
rendered files through `nginx -t` and `docker compose config -q`: no daemon
and no SSH needed. A missing binary FAILS the test (run scripts/setup-host.sh).
"""

import json
import re
import shutil
import subprocess
import tempfile

import jinja2.bccache
import pytest
import yaml

from support.checkout import REPO, clean_environ, require_binary, run_fab
from support.nginx import nginx_t, on_host, self_signed_cert
from tasks.model import templating
from tasks.model.compose_file import render_clojure_dockerfile, render_compose
from tasks.model.nginx_file import read_nginx, render_nginx
from tasks.model.templating import preload


# --- nginx: text ------------------------------------------------------------------


def test_plain_nginx_file_points_at_the_live_colour(settings):
    s = settings(APP_NAME="shop", SERVER_NAME="shop.example.com", ASSET_PATHS="")
    text = render_nginx(s, "green")
    first = text.splitlines()[0]
    assert first == "# bluegreen app=shop live=green"
    assert 'app "shop"' in text and "green colour" in text
    assert re.search(r"upstream bluegreen_shop \{\s*server 127\.0\.0\.1:8082;", text)
    assert "listen 8080;" in text and "server_name shop.example.com;" in text
    assert "proxy_pass http://bluegreen_shop;" in text
    assert "add_header X-Deploy-Colour green always;" in text
    assert "ssl" not in text.replace("# ", "")
    assert "8081" not in text  # the idle colour is nowhere (ASSET_PATHS would bridge to it)


def test_nginx_proxy_headers(settings):
    text = render_nginx(settings(), "blue")
    for line in ("proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                 "proxy_set_header Connection $bluegreen_app_connection;",
                 "proxy_set_header Host $host;",
                 "proxy_set_header X-Real-IP $remote_addr;",
                 "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                 "proxy_set_header X-Forwarded-Proto $scheme;"):
        assert line in text, line


def test_nginx_file_is_readable_by_hand(settings):
    text = render_nginx(settings(SSL_CERT_FILE="/c.pem", SSL_KEY_FILE="/k.pem"), "blue")
    assert "\n\n\n" not in text and text.endswith("}\n")
    assert all(line == line.rstrip() for line in text.splitlines())
    assert text.count("{") == text.count("}")


def test_ssl_nginx_file_redirects_keeping_path_and_query(settings):
    s = settings(APP_NAME="shop", SSL_CERT_FILE="/etc/ssl/shop.pem",
                 SSL_KEY_FILE="/etc/ssl/shop.key", SERVER_NAME="shop.example.com")
    text = render_nginx(s, "blue")
    assert "listen 443 ssl;" in text
    assert "ssl_certificate     /etc/ssl/shop.pem;" in text
    assert "ssl_certificate_key /etc/ssl/shop.key;" in text
    assert "return 301 https://$host$request_uri;" in text
    # the redirect answers with the colour too: a switch can be verified on it
    redirect = text.split("server {")[1]
    assert "listen 8080;" in redirect and "X-Deploy-Colour blue always" in redirect
    # the redirect, location / and the ASSET_PATHS bridge
    assert text.count("add_header X-Deploy-Colour blue always;") == 3
    assert "ssl_session_cache   shared:bluegreen_shop:" in text


def test_ssl_redirect_names_a_non_default_port(settings):
    s = settings(SSL_CERT_FILE="/c.pem", SSL_KEY_FILE="/k.pem", SSL_PORT="8443")
    text = render_nginx(s, "green")
    assert "listen 8443 ssl;" in text
    assert "return 301 https://$host:8443$request_uri;" in text


@pytest.mark.parametrize("ssl", [False, True])
def test_acme_challenges_are_served_from_deploy_dir_on_the_public_port(settings, ssl):
    # certbot --webroot needs them over plain HTTP, before and after HTTPS is on
    values = {"SSL_CERT_FILE": "/c.pem", "SSL_KEY_FILE": "/k.pem"} if ssl else {}
    text = render_nginx(settings(APP_NAME="shop", DEPLOY_DIR="/srv/shop", **values), "blue")
    public = text.split("server {")[1]
    assert "listen 8080;" in public
    acme = public.index("location ^~ /.well-known/acme-challenge/ {")
    assert acme < public.index("location / {")
    assert "root /srv/shop/acme;" in public
    if ssl:  # the redirect moved into `location /`, so the challenge is not redirected
        assert re.search(r"location / \{\s*return 301 ", public)
        assert "acme" not in text.split("server {")[2]
    assert text.count("location ^~ /.well-known/acme-challenge/") == 1


def test_ipv6_bind_address_is_bracketed_upstream(settings):
    text = render_nginx(settings(BIND_ADDRESS="::1"), "blue")
    assert "server [::1]:8081;" in text


@pytest.mark.parametrize("colour", ["blue", "green"])
@pytest.mark.parametrize("values", [{}, {"SSL_CERT_FILE": "/c", "SSL_KEY_FILE": "/k"},
                                    {"BIND_ADDRESS": "::1"},
                                    {"BLUE_PORT": "9001", "GREEN_PORT": "9002"}])
def test_read_nginx_round_trip(settings, colour, values):
    s = settings(**values)
    view = read_nginx(render_nginx(s, colour), s)
    assert view.header_live == colour and view.served == colour
    assert view.port == s.port_of(colour) and not view.drift


def test_read_nginx_detects_a_hand_edited_upstream(settings):
    s = settings()
    text = render_nginx(s, "blue").replace("server 127.0.0.1:8081;", "server 127.0.0.1:8082;")
    view = read_nginx(text, s)
    assert view.header_live == "blue" and view.served == "green" and view.drift


def test_read_nginx_with_a_foreign_port_is_drift(settings):
    s = settings()
    text = render_nginx(s, "green").replace(":8082;", ":9999;")
    view = read_nginx(text, s)
    assert view.port == 9999 and view.served is None and view.drift


def test_read_nginx_without_our_header(settings):
    s = settings()
    text = "\n".join(render_nginx(s, "green").splitlines()[1:])
    view = read_nginx(text, s)
    assert view.header_live is None and view.served == "green" and not view.drift
    bogus = render_nginx(s, "green").replace("live=green", "live=purple")
    assert read_nginx(bogus, s).header_live is None


def test_read_nginx_of_no_file(settings):
    assert read_nginx("", settings()) is None
    assert read_nginx(None, settings()) is None


# --- compose: text ----------------------------------------------------------------


def compose(s):
    return yaml.safe_load(render_compose(s))


def test_bridge_compose_publishes_on_bind_address(settings):
    s = settings(APP_NAME="shop", APP_PORT="3000")
    text = render_compose(s)
    assert text.splitlines()[0] == "# bluegreen app=shop"
    data = yaml.safe_load(text)
    assert data["name"] == "shop" and set(data["services"]) == {"blue", "green"}
    for colour, port in (("blue", 8081), ("green", 8082)):
        svc = data["services"][colour]
        assert svc["ports"] == [f"127.0.0.1:{port}:3000"]
        assert "network_mode" not in svc
        assert svc["environment"] == {"PORT": "3000", "BLUEGREEN_COLOUR": colour,
                                      "BLUEGREEN_PROCESS": "web"}
        assert svc["build"] == {"context": f"./{colour}"}
        assert svc["image"] == f"bluegreen-shop:{colour}"
        assert svc["init"] is True and svc["restart"] == "unless-stopped"
        assert svc["stop_grace_period"] == "10s"
        assert svc["labels"] == {"bluegreen.app": "shop", "bluegreen.colour": colour,
                                 "bluegreen.process": "web"}
        assert "env_file" not in svc and "command" not in svc


def test_bridge_compose_with_ipv6_bind_is_bracketed(settings):
    data = compose(settings(BIND_ADDRESS="::1"))
    assert data["services"]["green"]["ports"] == ["[::1]:8082:8080"]


def test_bridge_compose_open_to_qa(settings):
    data = compose(settings(BIND_ADDRESS="0.0.0.0"))
    assert data["services"]["blue"]["ports"] == ["0.0.0.0:8081:8080"]


def test_host_network_compose_gives_each_colour_its_port(settings):
    data = compose(settings(DOCKER_NETWORK="host", BLUE_PORT="9101", GREEN_PORT="9102"))
    for colour, port in (("blue", "9101"), ("green", "9102")):
        svc = data["services"][colour]
        assert svc["network_mode"] == "host" and "ports" not in svc
        assert svc["environment"]["PORT"] == port


def test_stop_grace_period_follows_stop_timeout(settings):
    data = compose(settings(STOP_TIMEOUT="3"))
    assert {svc["stop_grace_period"] for svc in data["services"].values()} == {"3s"}


def test_env_file_only_with_app_env_file(settings, tmp_path):
    secrets = tmp_path / "shop.env"
    secrets.write_text("DATABASE_URL=postgres://x\n")
    with_env = compose(settings(APP_ENV_FILE=str(secrets)))
    assert all(svc["env_file"] == "app.env" for svc in with_env["services"].values())
    # the uploaded copy's name, never the local path
    assert str(tmp_path) not in render_compose(settings(APP_ENV_FILE=str(secrets)))
    assert all("env_file" not in svc for svc in compose(settings())["services"].values())


@pytest.mark.parametrize("cmd,expected", [
    ("sh -c 'exec app --port $PORT'", "sh -c 'exec app --port $$PORT'"),
    ("run ${HOME} \"$1\" $$", "run $${HOME} \"$$1\" $$$$"),
    ("serve --name 'a: b' # not a comment", "serve --name 'a: b' # not a comment"),
    ("café ünïcode", "café ünïcode"),
])
def test_app_cmd_reaches_compose_literally(settings, cmd, expected):
    data = compose(settings(APP_CMD=cmd))
    assert {svc["command"] for svc in data["services"].values()} == {expected}


def test_clojure_dockerfile_is_the_seeds_build(settings):
    text = render_clojure_dockerfile(settings(APP_PORT="3000"))
    assert "EXPOSE 3000" in text
    assert 'CMD ["clojure", "-M:server", "start"]' in text
    assert text.startswith("# Rendered by bluegreen")
    assert "\nFROM clojure:temurin-21-tools-deps\n" in text


def test_clojure_dockerfile_builds_from_clojure_base_image(settings):
    text = render_clojure_dockerfile(settings(CLOJURE_BASE_IMAGE="registry.example.com/clj:21"))
    assert "\nFROM registry.example.com/clj:21\n" in text
    # The CLI fetches dependencies; Debian's clojure (clojure.main) skips it.
    assert "then clojure -P -M:server;" in text and "grep -q -e '-Sdeps'" in text


# --- the real tools ----------------------------------------------------------------


def test_real_nginx_accepts_the_plain_file(tmp_path, settings):
    s = on_host(settings, tmp_path, APP_NAME="shop",
                SERVER_NAME="shop.example.com www.shop.example.com")
    nginx_t(tmp_path, {"shop.conf": render_nginx(s, "blue")})


def test_real_nginx_accepts_the_ssl_file(tmp_path, settings):
    cert, key = self_signed_cert(tmp_path)
    for port in ("443", "8443"):
        s = on_host(settings, tmp_path, APP_NAME="shop", SSL_CERT_FILE=cert,
                    SSL_KEY_FILE=key, SSL_PORT=port)
        nginx_t(tmp_path / port, {"shop.conf": render_nginx(s, "green")})


def test_real_nginx_accepts_two_apps_on_one_host(tmp_path, settings):
    cert, key = self_signed_cert(tmp_path)
    shop = on_host(settings, tmp_path, APP_NAME="shop", SERVER_NAME="shop.example.com",
                   SSL_CERT_FILE=cert, SSL_KEY_FILE=key)
    blog = on_host(settings, tmp_path, APP_NAME="blog", SERVER_NAME="blog.example.com",
                   PUBLIC_PORT="8080", BLUE_PORT="8091", GREEN_PORT="8092",
                   BIND_ADDRESS="::1")
    nginx_t(tmp_path, {"shop.conf": render_nginx(shop, "blue"),
                       "blog.conf": render_nginx(blog, "green")})


def test_the_nginx_harness_can_fail(tmp_path):
    """A pass proves something only if a broken file fails the same way."""
    with pytest.raises(AssertionError, match="nginx -t refused"):
        nginx_t(tmp_path, {"bad.conf": "server { listen 80 nonsense; }\n"})


def docker_compose_config(deploy_dir, text, app_env=False):
    docker = require_binary("docker")
    version = subprocess.run([docker, "compose", "version"], capture_output=True,
                             text=True, timeout=30)
    if version.returncode != 0:
        pytest.fail("`docker compose` (Compose v2) is not installed: run "
                    "scripts/setup-host.sh (as root) to install it", pytrace=False)
    deploy_dir.mkdir(parents=True, exist_ok=True)
    for colour in ("blue", "green"):
        (deploy_dir / colour).mkdir(exist_ok=True)
        (deploy_dir / colour / "Dockerfile").write_text("FROM scratch\n")
    if app_env:
        (deploy_dir / "app.env").write_text("SECRET=1\n")
    path = deploy_dir / "compose.yml"
    path.write_text(text)
    env = clean_environ()
    for var in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES"):
        env.pop(var, None)
    quiet = subprocess.run([docker, "compose", "-f", str(path), "config", "-q"],
                           capture_output=True, text=True, timeout=60, env=env)
    assert quiet.returncode == 0, f"docker compose config refused:\n{quiet.stderr}\n{text}"
    full = subprocess.run([docker, "compose", "-f", str(path), "config", "--format", "json"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert full.returncode == 0, full.stderr
    return json.loads(full.stdout)


def test_real_compose_accepts_the_bridge_file(tmp_path, settings):
    s = settings(APP_NAME="shop", BIND_ADDRESS="127.0.0.1", APP_PORT="3000")
    data = docker_compose_config(tmp_path / "shop", render_compose(s))
    assert data["name"] == "shop"
    blue = data["services"]["blue"]
    assert blue["init"] is True
    assert blue["ports"][0]["published"] == "8081" and blue["ports"][0]["target"] == 3000
    assert blue["ports"][0]["host_ip"] == "127.0.0.1"


def test_real_compose_accepts_an_ipv6_bind(tmp_path, settings):
    data = docker_compose_config(tmp_path / "app", render_compose(settings(BIND_ADDRESS="::1")))
    assert data["services"]["green"]["ports"][0]["host_ip"] == "::1"


def test_real_compose_accepts_the_host_network_file_with_env_file(tmp_path, settings):
    secrets = tmp_path / "local.env"
    secrets.write_text("SECRET=1\n")
    s = settings(APP_NAME="shop", DOCKER_NETWORK="host", APP_ENV_FILE=str(secrets),
                 APP_CMD="sh -c 'exec httpd -f -p $PORT -h /www' # ${HOME}",
                 STOP_TIMEOUT="0")
    data = docker_compose_config(tmp_path / "deploy", render_compose(s), app_env=True)
    green = data["services"]["green"]
    assert green["network_mode"] == "host"
    assert green["environment"]["PORT"] == "8082" and green["environment"]["SECRET"] == "1"
    # compose prints '$' re-escaped as '$$'; unescaped, $HOME would be expanded here
    command = " ".join(green["command"])
    assert "$$PORT" in command and "$${HOME}" in command, command
    assert "/root" not in command


def test_real_compose_without_app_env_needs_no_app_env(tmp_path, settings):
    data = docker_compose_config(tmp_path / "app", render_compose(settings()))
    assert "env_file" not in data["services"]["blue"]


# --- the real fab ------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path):
    """A directory with only .env.example copied to .env, as an operator starts."""
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    return tmp_path


def test_fab_list_shows_the_tasks(tmp_path):
    result = run_fab(["--list"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "render" in result.stdout
    assert "Traceback" not in result.stderr


def test_fab_render_with_the_example_env(workdir):
    result = run_fab(["render"], workdir)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "# ---- /etc/nginx/conf.d/app.conf" in out
    assert "# bluegreen app=app live=blue" in out
    assert "# ---- /srv/app/compose.yml" in out
    # OpenSSL's SSL_CERT_FILE in the environment does not turn SSL on
    assert " ssl;" not in out


def test_fab_render_green_for_a_hosts_yml_host(workdir):
    shutil.copy(REPO / "hosts.example.yml", workdir / "hosts.yml")
    result = run_fab(["-H", "staging", "render", "--colour", "green"], workdir)
    assert result.returncode == 0, result.stderr
    assert "live=green" in result.stdout
    assert "server_name staging.example.com;" in result.stdout
    assert '"0.0.0.0:8081:8080"' in result.stdout


def test_fab_render_reads_other_files_when_named(tmp_path):
    shutil.copy(REPO / ".env.example", tmp_path / "shop.env")
    with open(tmp_path / "shop.env", "a") as f:
        f.write("APP_NAME=shop\n")
    env = clean_environ(BLUEGREEN_ENV_FILE=str(tmp_path / "shop.env"),
                        BLUEGREEN_PUBLIC_PORT="9080")
    result = run_fab(["render"], tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "# ---- /etc/nginx/conf.d/shop.conf" in result.stdout
    assert "listen 9080;" in result.stdout


# (how the value arrives, key, value)
FAB_BAD_VALUES = [
    ("env", "BLUE_BRANCH", "main;rm -rf /"),
    ("env", "GREEN_BRANCH", "$(id)"),
    ("env", "BLUE_BRANCH", "`id`"),
    ("env", "GREEN_BRANCH", "-x"),
    ("env", "APP_NAME", "Shop/Api"),
    ("env", "BLUE_PORT", "8080"),
    ("env", "PUBLIC_PORT", "70000"),
    ("env", "APP_PORT", "abc"),
    ("env", "SSL_PORT", "\u00b2"),
    ("env", "SERVER_NAME", "a.example.com;"),
    ("env", "DEPLOY_DIR", "/"),
    ("env", "NGINX_CONF_DIR", "conf.d"),
    ("env", "APP_CMD", "serve\nreboot"),
    ("env", "HEALTH_PATH", "health"),
    ("env", "HEALTH_TIMEOUT", "nan"),
    ("env", "HEALTH_PASSES", "1.5"),
    ("env", "DOCKER_NETWORK", "overlay"),
    ("env", "BIND_ADDRESS", "localhost"),
    ("env", "USE_SUDO", "maybe"),
    ("env", "SSL_CERT_FILE", "/etc/ssl/only-cert.pem"),
    ("env", "GIT_REPO", "-oops"),
    ("env", "APP_ENV_FILE", "/nonexistent/app.env"),
    ("dotenv", "SERVER_NAME", "example.com {"),
    ("dotenv", "DEPLOY_DIR", "relative/dir"),
    ("dotenv", "GIT_REPO", "https://example.com/my repo.git"),
    ("dotenv", "HEALTH_PASSES", "0"),
    ("dotenv", "GREEN_BRANCH", "main.lock"),
    ("dotenv", "BLUE_BRANCH", "a..b"),
    ("dotenv", "STOP_TIMEOUT", "-1"),
    ("env", "KEEPALIVE_MIN_TIMEOUT", "banana"),
    ("dotenv", "KEEPALIVE_MIN_TIMEOUT", "-1"),
    ("env", "KEEPALIVE_MIN_TIMEOUT", "5 s"),
    ("env", "KEEP_RELEASES", "0"),
    ("dotenv", "KEEP_RELEASES", "-3"),
    ("env", "CLIENT_MAX_BODY_SIZE", "10 mb"),
    ("dotenv", "PROXY_READ_TIMEOUT", "soon"),
    ("env", "NGINX_SNIPPET_FILE", "/nonexistent/extra.conf"),
    ("env", "WATCH_MAX_ERROR_RATE", "2"),
    ("dotenv", "WATCH_MIN_REQUESTS", "lots"),
    ("env", "MIN_FREE_DISK", "lots"),
    ("dotenv", "BUILD_TIMEOUT", "soon"),
]


@pytest.mark.parametrize("how,key,value", FAB_BAD_VALUES,
                         ids=[f"{h}-{k}-{i}" for i, (h, k, _) in enumerate(FAB_BAD_VALUES)])
def test_fab_render_refuses_a_bad_value_in_one_line(workdir, how, key, value):
    env = clean_environ()
    if how == "env":
        env[f"BLUEGREEN_{key}"] = value
    else:
        with open(workdir / ".env", "a") as f:
            f.write(f"{key}='{value}'\n")
    result = run_fab(["render"], workdir, env=env)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {key}="), lines[0]
    assert (f"BLUEGREEN_{key}" if how == "env" else ".env") in lines[0]
    assert "allowed" in lines[0] or "must be set" in lines[0]
    assert result.stdout == ""  # nothing rendered from a bad configuration


def test_fab_render_refuses_a_snippet_that_closes_the_server_block(workdir):
    snippet = workdir / "extra.conf"
    snippet.write_text("return 204;\n}\nserver { listen 9999; }\n")
    env = clean_environ(BLUEGREEN_NGINX_SNIPPET_FILE=str(snippet))
    result = run_fab(["render"], workdir, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: NGINX_SNIPPET_FILE="), lines
    assert str(snippet) in lines[0] and "BLUEGREEN_NGINX_SNIPPET_FILE" in lines[0]
    assert "line 2: this '}' would close the app's server block early" in lines[0]
    assert result.stdout == ""


def test_fab_render_puts_the_snippet_in_the_server_block(workdir):
    snippet = workdir / "extra.conf"
    snippet.write_text("location /api/ {\n    return 204;\n}\n")
    env = clean_environ(BLUEGREEN_NGINX_SNIPPET_FILE=str(snippet))
    result = run_fab(["render"], workdir, env=env)
    assert result.returncode == 0, result.stderr
    assert f"    # From NGINX_SNIPPET_FILE ({snippet}):\n    location /api/ {{\n" \
           f"        return 204;\n    }}\n" in result.stdout
    # a local render does not know the host's nginx: it says so instead of guessing
    assert "keepalive_min_timeout: decided on the host" in result.stdout


def test_fab_render_hides_a_bad_deploy_key(workdir):
    secret = "not-a-key-but-secret-anyway"
    result = run_fab(["render"], workdir, env=clean_environ(BLUEGREEN_DEPLOY_SSH_KEY=secret))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "DEPLOY_SSH_KEY" in result.stderr and secret not in result.stderr + result.stdout


def test_fab_render_unknown_key_suggests_the_nearest(workdir):
    with open(workdir / ".env", "a") as f:
        f.write("GREEN_BRANHC=main\n")
    result = run_fab(["render"], workdir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown key GREEN_BRANHC" in result.stderr
    assert "did you mean GREEN_BRANCH?" in result.stderr


@pytest.mark.parametrize("args", [["render", "--colour", "purple"],
                                  ["-H", "bad host", "render"]])
def test_fab_render_bad_flags_exit_2(workdir, args):
    result = run_fab(args, workdir)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")


def test_fab_render_missing_env_file_exit_2(tmp_path):
    env = clean_environ(BLUEGREEN_ENV_FILE=str(tmp_path / "typo.env"))
    result = run_fab(["render"], tmp_path, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "typo.env" in result.stderr


def test_preloaded_templates_render_the_same(settings, monkeypatch):
    s = settings(APP_NAME="shop")
    expected = render_nginx(s, "green")
    monkeypatch.setattr(templating, "_preloading", None)
    templating.environment.cache_clear()
    preload("nginx.conf.j2", "no-such-template.j2")  # a bad name is render's to report
    assert render_nginx(s, "green") == expected
    assert not templating._preloading.is_alive()


# --- the compiled templates' cache ------------------------------------------------------


@pytest.fixture
def fresh_environment(tmp_path, monkeypatch):
    """templating.environment() built anew, with its cache under tmp_path."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    templating.environment.cache_clear()
    yield templating
    templating.environment.cache_clear()


def test_templates_compile_once_and_load_from_the_cache(fresh_environment, settings, tmp_path):
    s = settings(APP_NAME="shop")
    first = render_nginx(s, "green")
    cached = list(tmp_path.glob("_jinja2-cache-*/*.cache"))
    assert cached, list(tmp_path.iterdir())
    fresh_environment.environment.cache_clear()
    assert render_nginx(s, "green") == first  # loaded from the cache: the same file


def test_a_cache_that_cannot_be_written_or_used_is_only_slower(fresh_environment, settings,
                                                                tmp_path, monkeypatch):
    s = settings(APP_NAME="shop")
    expected = render_nginx(s, "blue")
    named_temporary_file = tempfile.NamedTemporaryFile

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    fresh_environment.environment.cache_clear()
    for entry in tmp_path.glob("_jinja2-cache-*/*.cache"):
        entry.unlink()
    monkeypatch.setattr(jinja2.bccache.tempfile, "NamedTemporaryFile", full_disk)
    assert render_nginx(s, "blue") == expected
    monkeypatch.setattr(jinja2.bccache.tempfile, "NamedTemporaryFile", named_temporary_file)
    # A cache directory that is not this user's own: no cache at all.
    fresh_environment.environment.cache_clear()
    for d in tmp_path.glob("_jinja2-cache-*"):
        shutil.rmtree(d)
        d.write_text("not a directory")
    assert fresh_environment.environment().bytecode_cache is None
    assert render_nginx(s, "blue") == expected
