"""ASSET_PATHS and the maintenance page: checks, rendering, the record (pure)."""

import html
import re

import pytest

from support.nginx_binaries import current_nginx, debian_nginx, nginx_t, on_host, self_signed_cert
from tasks.configuration.nginx_values import check_asset_paths, check_maintenance_page_file
from tasks.configuration.values import Invalid
from tasks.errors import ConfigError
from tasks.flows.maintenance import (check_action, check_message, escape_html, plain_page,
                                     public_record, with_maintenance)
from tasks.flows.status import notes
from tasks.model.nginx_file import read_nginx, render_nginx
from tasks.model.pending import history_note
from tasks.model.state import bypass_headers, empty_state, maintenance_of

SSL = {"SSL_CERT_FILE": "/etc/ssl/c.pem", "SSL_KEY_FILE": "/etc/ssl/k.pem"}
RECORD = {"token": "0123abcd" * 4, "since": "2026-12-05T23:00:00Z", "by": "ann@laptop",
          "message": "back soon", "page": "message"}


# --- ASSET_PATHS -----------------------------------------------------------------------


@pytest.mark.parametrize("text, paths", [
    ("/assets/ /static/ /packs/ /_next/static/", ("/assets/", "/static/", "/packs/",
                                                  "/_next/static/")),
    ("", ()),
    ("  /build/   /build/ ", ("/build/",)),
    ("/assets", ("/assets",)),
])
def test_asset_paths(text, paths):
    assert check_asset_paths(text) == paths


@pytest.mark.parametrize("text", ["assets/", "/a b/x;", "/a;b/", "/a{b}/", "/", "//x/",
                                  "/a/../b/", "/a'b/", "/$x/"])
def test_bad_asset_paths(text):
    with pytest.raises(Invalid):
        check_asset_paths(text)


def test_a_bad_asset_path_names_the_key(settings):
    with pytest.raises(ConfigError) as err:
        settings(ASSET_PATHS="/ok/ static/")
    assert "ASSET_PATHS" in str(err.value) and "static/" in str(err.value)


def bridge_upstreams(text):
    return {m.group(1): m.group(2) for m in re.finditer(
        r"upstream \S+_bridge_to_(\w+) \{\s*server (\S+) max_fails", text)}


def test_the_live_colour_bridges_to_the_other(settings):
    text = render_nginx(settings(APP_NAME="shop"), "green")
    assert bridge_upstreams(text) == {"blue": "127.0.0.1:8081"}
    assert "server 127.0.0.1:8082 backup;" in text  # a stopped blue: green's own 404 again
    for path in ("/assets/", "/static/", "/packs/", "/_next/static/"):
        assert f"        location {path} {{\n            proxy_pass http://bluegreen_shop;\n" \
               f"            proxy_intercept_errors on;\n" \
               f"            error_page 404 = @bluegreen_shop_bridge;" in text
    bridge = text.split("location @bluegreen_shop_bridge {")[1]
    assert "proxy_pass http://bluegreen_shop_bridge_to_blue;" in bridge
    assert "if ($request_method !~ ^(GET|HEAD)$)" in bridge
    assert "proxy_intercept_errors" not in bridge  # its own 404 is final: no loop
    assert "add_header X-Deploy-Colour green always;" in bridge  # where nginx routes
    assert "add_header X-Deploy-Bridge blue always;" in bridge
    # The bridge does not change what the file says is live.
    view = read_nginx(text, settings(APP_NAME="shop"))
    assert (view.header_live, view.served, view.port) == ("green", "green", 8082)


def test_a_canary_bridges_both_ways(settings):
    text = render_nginx(settings(APP_NAME="shop"), "blue", canary=("green", 20))
    assert bridge_upstreams(text) == {"green": "127.0.0.1:8082", "blue": "127.0.0.1:8081"}
    assert "map $bluegreen_shop_colour $bluegreen_shop_bridge {" in text
    assert "proxy_pass http://bluegreen_shop_bridge_to_$bluegreen_shop_bridge;" in text
    view = read_nginx(text, settings(APP_NAME="shop"))
    assert (view.served, view.canary, view.canary_percent) == ("blue", "green", 20)


def test_no_asset_paths_no_bridge(settings):
    text = render_nginx(settings(ASSET_PATHS=""), "blue")
    assert "bridge" not in text and "proxy_intercept_errors" not in text
    assert "\n\n\n" not in text


# --- the maintenance page ----------------------------------------------------------------


@pytest.mark.parametrize("ssl", [False, True])
def test_maintenance_answers_503_in_the_server_that_serves_the_app(settings, ssl):
    s = settings(APP_NAME="shop", MAINTENANCE_RETRY_AFTER="90", **(SSL if ssl else {}))
    text = render_nginx(s, "blue", maintenance=RECORD)
    servers = text.split("server {")[1:]
    assert "return 503;" not in servers[0] if ssl else True  # the redirect stays a redirect
    app = servers[-1]
    assert f'if ($http_x_bluegreen_bypass = "{RECORD["token"]}")' in app
    assert "return 503;" in app
    assert "error_page 503 /.bluegreen/maintenance.html;" in app
    page = app.split("location = /.bluegreen/maintenance.html {")[1].split("\n    }")[0]
    assert "internal;" in page and f"alias {s.deploy_dir}/maintenance/index.html;" in page
    assert "add_header Retry-After 90 always;" in page
    assert "add_header X-Deploy-Maintenance on always;" in page
    assert "add_header X-Deploy-Colour blue always;" in page
    assert "\n\n\n" not in text and all(line == line.rstrip() for line in text.splitlines())
    assert "bypass" not in render_nginx(s, "blue")


@pytest.mark.parametrize("ssl", [False, True])
@pytest.mark.parametrize("canary", [None, ("green", 10)])
def test_real_nginx_accepts_maintenance_and_bridges(settings, tmp_path, ssl, canary):
    tls = dict(zip(("SSL_CERT_FILE", "SSL_KEY_FILE"), self_signed_cert(tmp_path))) if ssl else {}
    s = on_host(settings, tmp_path, APP_NAME="shop", **tls)
    text = render_nginx(s, "blue", canary=canary, maintenance=RECORD)
    for name, binary in (("debian", debian_nginx()), ("current", current_nginx())):
        nginx_t(tmp_path / name, {"shop.conf": text}, nginx=binary)


@pytest.mark.parametrize("value", ["on", "off"])
def test_actions(value):
    assert check_action(value) is (value == "on")


@pytest.mark.parametrize("value", ["", "ON", "enable", "on;"])
def test_bad_actions(value):
    with pytest.raises(Invalid):
        check_action(value)


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "tab\t", "bell\x07", "esc\x1b[1m", "\x7f",
                                   "x" * 501])
def test_bad_messages(value):
    with pytest.raises(Invalid):
        check_message(value)


def test_plain_page_escapes_the_message():
    page = plain_page("shop", 'Back at 10 <script>alert("x")</script> & more')
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in page
    assert "<script>" not in page
    assert "Down for maintenance" in plain_page("shop", "")


def test_page_file_of_at_most_1_mb(tmp_path):
    ok, big = tmp_path / "ok.html", tmp_path / "big.html"
    ok.write_bytes(b"x" * 1024 * 1024)
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    assert check_maintenance_page_file(str(ok)) == str(ok)
    assert check_maintenance_page_file("") == ""
    for bad in (big, tmp_path / "missing.html"):
        with pytest.raises(Invalid):
            check_maintenance_page_file(str(bad))


def test_the_record_in_state_json():
    state = empty_state("shop")
    assert maintenance_of(state) is None and bypass_headers(state) == {}
    on = with_maintenance(state, RECORD)
    assert maintenance_of(on) == RECORD
    assert bypass_headers(on) == {"X-Bluegreen-Bypass": RECORD["token"]}
    assert "token" not in public_record(RECORD)
    assert maintenance_of(with_maintenance(on, None)) is None
    assert "maintenance" not in state  # a new state, the old one untouched


def test_history_note():
    assert history_note({"maintenance": "on", "message": "db move"}) == "maintenance on: db move"
    assert history_note({"maintenance": "off"}) == "maintenance off"


def test_status_says_maintenance_is_on():

    row = {"host": "prod", "colours": {}, "state_error": None, "drift": None, "lock": None,
           "maintenance": public_record(RECORD)}
    [line] = notes(row)
    assert line.startswith('MAINTENANCE ON since 2026-12-05T23:00:00Z by ann@laptop: "back soon"')
    assert "`fab -H prod maintenance off`" in line
    assert notes({**row, "maintenance": None}) == []


@pytest.mark.parametrize("text", ["", "plain", "<b>\"it's\" & more</b>", "&amp; &#x27; <<>>",
                                  "é ü 日本 \u2028", "'\"'\"&&<>"])
def test_escape_html_is_html_escape(text):
    assert escape_html(text) == html.escape(text)
