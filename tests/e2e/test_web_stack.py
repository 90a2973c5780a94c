"""The real web stack (pyweb: aiohttp on the Debian base image) through nginx
in bridge mode: WebSockets across a switch and across `--stop-old`, a 5 MB
upload under the default CLIENT_MAX_BODY_SIZE, and NGINX_SNIPPET_FILE (its
header served; a snippet that breaks `nginx -t` leaves the old file).

One project lives for the module; the tests run in file order.
"""

import hashlib
import http.client
import json
import os
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

import loophost as lh
from released import fab, module_project, output, serves, state_file

DRAIN = 4


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, loophost):
    """pyweb "v1" set up in blue, DRAIN_TIMEOUT=4."""
    for project in module_project(request, tmp_path_factory, loophost, setup=True,
                                  kind="pyweb", slow=1, DRAIN_TIMEOUT=DRAIN, HEALTH_TIMEOUT=60):
        yield project


def ws_open(project):
    """A WebSocket through PUBLIC_PORT (use it in a with-block)."""
    return connect(f"ws://{lh.LOOPBACK}:{project.public_port}/ws", open_timeout=10)


def hello(ws):
    return json.loads(ws.recv(timeout=10))


def echoes(ws, text):
    ws.send(text)
    return ws.recv(timeout=10) == text


def test_a_websocket_outlives_a_switch_and_a_new_one_lands_on_the_new_colour(shared_project):
    p = shared_project
    with ws_open(p) as old:
        first = hello(old)
        assert (first["colour"], first["version"]) == ("blue", "v1"), first
        p.app.commit("v2", kind="pyweb", slow=1)
        fab(p, "release")
        serves(p, "v2", colour="green")
        # The old colour stays up: the connection made before the switch still works.
        assert echoes(old, "still here after the switch")
        with ws_open(p) as new:
            second = hello(new)
            assert (second["colour"], second["version"]) == ("green", "v2"), second
            assert echoes(new, "hello green")
        assert echoes(old, "and still here")


def test_stop_old_closes_the_old_websocket_after_drain_timeout(shared_project):
    p = shared_project
    with ws_open(p) as old:
        assert hello(old)["colour"] == "green"
        p.app.commit("v3", kind="pyweb", slow=1)
        started = time.monotonic()
        r = fab(p, "release", "--stop-old")
        took = time.monotonic() - started
        out = output(r)
        assert "stopped green" in out, out
        # The open WebSocket kept green busy: the stop waited DRAIN_TIMEOUT for it.
        stop_line = next(line for line in out.splitlines() if line.split()[1:2] == ["stop"])
        assert float(stop_line.split()[2].rstrip("s")) >= DRAIN - 0.5, stop_line
        assert took >= DRAIN, took
        # Then green stopped and the old connection was closed...
        with pytest.raises(ConnectionClosed):
            for _ in range(3):
                old.send("anyone?")
                old.recv(timeout=10)
    # ...and the client's reconnect lands on the new colour.
    with ws_open(p) as new:
        answer = hello(new)
        assert (answer["colour"], answer["version"]) == ("blue", "v3"), answer
        assert echoes(new, "reconnected")
    assert {c["service"]: c["state"] for c in p.containers()}["green"] == "exited"


def test_a_5mb_upload_passes_with_the_default_client_max_body_size(shared_project):
    p = shared_project
    assert "CLIENT_MAX_BODY_SIZE" not in p.settings
    body = os.urandom(5 * 1024 * 1024)
    conn = http.client.HTTPConnection(lh.LOOPBACK, p.public_port, timeout=30)
    try:
        conn.request("POST", "/upload", body=body)
        resp = conn.getresponse()
        answer = resp.read().decode()
    finally:
        conn.close()
    assert resp.status == 200, (resp.status, answer[:300])
    assert json.loads(answer)["size"] == len(body)
    assert json.loads(answer)["sha256"] == hashlib.sha256(body).hexdigest()


SNIPPET = """\
location /from-snippet {
    add_header X-Snippet served-by-snippet always;
    return 200 "snippet\\n";
}
"""


def test_a_snippets_header_is_served(shared_project, tmp_path):
    p = shared_project
    snippet = tmp_path / "snippet.conf"
    snippet.write_text(SNIPPET)
    p.set(NGINX_SNIPPET_FILE=snippet)
    try:
        p.app.commit("v4", kind="pyweb", slow=1)
        fab(p, "release")  # v4 into green, rendered with the snippet
        serves(p, "v4", colour="green")
        status, headers, body = p.get("/from-snippet")
        assert (status, body) == (200, "snippet\n"), (status, body)
        assert headers.get("x-snippet") == "served-by-snippet", headers
        # The app's own pages are untouched by it.
        assert p.get("/version")[2].strip() == "v4"
    finally:
        p.set(NGINX_SNIPPET_FILE=None)


def test_a_snippet_that_breaks_nginx_t_fails_the_switch_and_keeps_the_old_file(shared_project,
                                                                                tmp_path):
    p = shared_project
    before = p.nginx_file.read_text()
    snippet = tmp_path / "broken.conf"
    snippet.write_text("this_is_not_a_directive on;\n")
    p.set(NGINX_SNIPPET_FILE=snippet)
    try:
        r = fab(p, "rollback", code=1)
    finally:
        p.set(NGINX_SNIPPET_FILE=None)
    text = output(r)
    assert "nginx -t" in text or "failed `" in text, text
    assert "this_is_not_a_directive" in text, text
    assert p.nginx_file.read_text() == before
    serves(p, "v4", colour="green")
    assert state_file(p)["live"] == "green"
