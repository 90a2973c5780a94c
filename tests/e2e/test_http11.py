"""Health probes and verification speak HTTP/1.1: an app whose server
refuses HTTP/1.0 once never went live.

The sample kind `h11only` is the `websockets` library's server (Debian's
python3-websockets): plain pages through process_request, WebSockets on
/ws, and 400 to any HTTP/1.0 request. It must release, switch and roll back
like any app, with its WebSockets working through nginx.
"""

import asyncio
import json

import pytest
import websockets

from released import fab, output, serves


@pytest.fixture
def h11(make_project, make_sample_app):
    app = make_sample_app("h11only", version="v1")
    return make_project(app=app)


def hello(port):
    """The first message of a WebSocket through nginx's public port."""
    async def talk():
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await ws.send("ping")
            return first, await asyncio.wait_for(ws.recv(), 10)
    return asyncio.run(talk())


def test_an_http11_only_app_releases_switches_and_rolls_back(h11):
    p = h11
    out = output(fab(p, "setup"))
    assert "2/2 good answers from blue (HTTP 200 /health)" in out, out
    serves(p, "v1", colour="blue")

    p.app.commit("v2", kind="h11only")
    out = output(fab(p, "release"))
    assert "https" not in out and "http :" in out  # verified through nginx
    serves(p, "v2", colour="green")
    first, echo = hello(p.public_port)
    assert (first["version"], first["colour"], echo) == ("v2", "green", "ping")

    fab(p, "rollback")
    serves(p, "v1", colour="blue")
    assert hello(p.public_port)[0]["colour"] == "blue"


def test_a_refused_probe_shows_the_request_it_sent(make_project):
    p = make_project()
    p.set(HEALTH_PATH="/no-such-health", HEALTH_TIMEOUT=3)
    r = fab(p, "setup", code=1)
    out = output(r)
    # The answer's first line and the request: method, path, version, Host.
    assert "HTTP/1.1 404 Not Found to `GET /no-such-health HTTP/1.1, Host: localhost`" in out, out
