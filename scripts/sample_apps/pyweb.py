"""Sample app "pyweb": a real Python web stack (aiohttp from Debian's packages).

Committed by scripts/loophost/ (SampleApp, kinds pyweb and pyweb-pages500)
as /app/server.py, next to /app/app.json ({"version", "kind",
"boot_seconds"}), into an image FROM the bluegreen test base image.

  GET  /health     200 "ok" (also in kind pyweb-pages500)
  GET  /version    the version label
  GET  /           a small page naming the version and colour
  GET  /ws         WebSocket: first a hello naming version and colour, then echo
  POST /upload     reads the whole body; answers {"size": N, "sha256": "..."}
  GET  /slow?s=N   answers after N seconds (a request in flight)

Kind pyweb-pages500 answers 500 on every path but /health (a release that
passes its health gate and then fails its users).

Environment: PORT (default 8080), BLUEGREEN_COLOUR, BOOT_SECONDS (overrides
app.json's boot delay before it listens), STOP_GRACE (seconds to finish
requests in flight after SIGTERM, default 30).

aiohttp 3.8 cancels requests in flight when its runner shuts down, so
SIGTERM is handled here: stop listening, close WebSockets (1001 going
away), wait for the requests in flight to finish, then exit.
"""

import asyncio
import hashlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from aiohttp import WSMsgType, web

CONFIG = json.loads((Path(__file__).parent / "app.json").read_text())
VERSION = CONFIG["version"]
KIND = CONFIG.get("kind", "pyweb")
COLOUR = os.environ.get("BLUEGREEN_COLOUR", "none")
PORT = int(os.environ.get("PORT", "8080"))
BOOT_SECONDS = float(os.environ.get("BOOT_SECONDS", CONFIG.get("boot_seconds", 3)))
STOP_GRACE = float(os.environ.get("STOP_GRACE", "30"))

in_flight = 0
sockets = set()


def log(message):
    print(f"pyweb {VERSION} ({COLOUR}): {message}", file=sys.stderr, flush=True)


@web.middleware
async def count_in_flight(request, handler):
    global in_flight
    if request.path == "/ws":  # closed at shutdown instead of waited for
        return await handler(request)
    in_flight += 1
    try:
        if KIND == "pyweb-pages500" and request.path != "/health":
            return web.Response(status=500, text=f"internal error ({VERSION})\n")
        response = await handler(request)
        response.headers["X-App-Version"] = VERSION
        return response
    finally:
        in_flight -= 1


async def health(request):
    return web.Response(text="ok\n")


async def version(request):
    return web.Response(text=f"{VERSION}\n")


async def index(request):
    return web.Response(content_type="text/html", text=(
        f"<!doctype html>\n<title>sample app</title>\n"
        f"<p>sample app {VERSION} ({COLOUR}, aiohttp)</p>\n"))


async def upload(request):
    digest, size = hashlib.sha256(), 0
    async for chunk in request.content.iter_chunked(65536):
        digest.update(chunk)
        size += len(chunk)
    return web.json_response({"size": size, "sha256": digest.hexdigest(), "version": VERSION})


async def slow(request):
    try:
        seconds = float(request.query.get("s", "1"))
    except ValueError:
        raise web.HTTPBadRequest(text="s: a number of seconds\n")
    await asyncio.sleep(seconds)
    return web.Response(text=f"slow {VERSION} {COLOUR} after {seconds:g}s\n")


async def websocket(request):
    ws = web.WebSocketResponse(heartbeat=None)
    await ws.prepare(request)
    sockets.add(ws)
    try:
        await ws.send_json({"hello": "sample app", "version": VERSION, "colour": COLOUR})
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
    finally:
        sockets.discard(ws)
    return ws


async def close_sockets(app):
    for ws in list(sockets):
        await ws.close(code=1001, message=b"server shutting down")


def make_app():
    app = web.Application(middlewares=[count_in_flight])
    app.add_routes([
        web.get("/health", health),
        web.get("/version", version),
        web.get("/", index),
        web.get("/ws", websocket),
        web.post("/upload", upload),
        web.get("/slow", slow),
    ])
    app.on_shutdown.append(close_sockets)
    return app


async def serve():
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(make_app(), handle_signals=False, access_log=None)
    await runner.setup()
    # Our own listener (not a TCPSite) so SIGTERM can close it alone while
    # the connections it accepted finish their requests.
    listener = await loop.create_server(runner.server, "0.0.0.0", PORT)
    log(f"listening on port {PORT}")
    await stop.wait()
    log(f"SIGTERM: no new connections; {in_flight} request(s) in flight")
    listener.close()
    await runner.shutdown()  # on_shutdown: WebSockets are told 1001
    deadline = loop.time() + STOP_GRACE
    while in_flight and loop.time() < deadline:
        await asyncio.sleep(0.05)
    log(f"stopped ({in_flight} request(s) unfinished)")
    await runner.cleanup()


def main():
    log(f"kind {KIND}, booting for {BOOT_SECONDS:g}s")
    # A real app's start-up (imports, caches, migrations) takes time: the
    # health gate must wait for it.
    # Stopped while booting: exit at once (serve() installs its own handler).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(BOOT_SECONDS)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
