"""model/nginx_file.py rendered: the text a release relies on (the live colour's
header comment, X-Deploy-Colour, the upstream port), read back by read_nginx,
and accepted by the real `nginx -t` (a missing binary FAILS: run
scripts/setup-host.sh).
"""

import re

import pytest

from support.nginx_binaries import nginx_t, on_host, self_signed_cert
from tasks.model.nginx_file import read_nginx, render_nginx


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


def test_the_maintenance_record_is_read_back_from_the_nginx_file(settings):
    """repair with an unreadable state.json keeps maintenance on (round four's loose end)."""
    s = settings()
    text = render_nginx(s, "blue", maintenance={"token": "ab12" * 8,
                                                "since": "2026-12-07T10:00:00Z"})
    assert read_nginx(text, s).maintenance == {"token": "ab12" * 8,
                                               "since": "2026-12-07T10:00:00Z",
                                               "message": "", "page": "message"}
    assert read_nginx(render_nginx(s, "blue"), s).maintenance is None


def test_repair_reads_the_maintenance_message_back_from_the_nginx_file(settings, tmp_path):
    """`maintenance on --message TEXT` survives a repair with no state.json: the
    file says its message (any text of one line) and page kind; nginx takes it."""
    s = on_host(settings, tmp_path)
    message = 'Back at 10:00 <b>soon</b> & "fine" \u00e9 # {not} ; }'
    record = {"token": "ab12" * 8, "since": "2026-12-07T10:00:00Z", "message": message,
              "page": "message", "by": "ann@laptop"}
    text = render_nginx(s, "blue", maintenance=record)
    assert read_nginx(text, s).maintenance == {k: record[k] for k in
                                               ("token", "since", "message", "page")}
    nginx_t(tmp_path, {"app.conf": text})
    # A file written before the note (or a note edited into nonsense): token and since.
    old = "\n".join(line for line in text.splitlines() if "# Its page:" not in line)
    assert read_nginx(old, s).maintenance == {"token": "ab12" * 8,
                                              "since": "2026-12-07T10:00:00Z"}
    broken = text.replace('{"message"', '{"message" oops')
    assert read_nginx(broken, s).maintenance == {"token": "ab12" * 8,
                                                 "since": "2026-12-07T10:00:00Z"}


def test_acme_challenges_pass_through_maintenance_without_ssl(settings):
    text = render_nginx(settings(), "blue", maintenance={"token": "ab12" * 8, "since": "x"})
    server = text.split("set $bluegreen_", 1)[1]
    assert "if ($uri ~ ^/\\.well-known/acme-challenge/)" in server
