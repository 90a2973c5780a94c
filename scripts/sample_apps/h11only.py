"""Sample app "h11only": a server that speaks HTTP/1.1 only.

The `websockets` library's server (Debian's python3-websockets 10.4)
answers plain HTTP through process_request and refuses HTTP/1.0 requests
with 400. A health probe that speaks HTTP/1.0 never sees it healthy: that
was a real bug in the deploy tool's probe, and this app keeps it fixed.

Committed by scripts/loophost/ (SampleApp, kind h11only) as
/app/server.py next to /app/app.json ({"version", "kind", "boot_seconds"}).

  GET /health   200 "ok"          GET /version   the version label
  GET /         a line naming the version and colour
  GET /ws       WebSocket: a hello naming version and colour, then echo

Environment: PORT (default 8080), BLUEGREEN_COLOUR, BOOT_SECONDS.
"""

import asyncio
import http
import json
import os
import signal
import sys
import time
from pathlib import Path

import websockets

CONFIG = json.loads((Path(__file__).parent / "app.json").read_text())
VERSION = CONFIG["version"]
COLOUR = os.environ.get("BLUEGREEN_COLOUR", "none")
PORT = int(os.environ.get("PORT", "8080"))
BOOT_SECONDS = float(os.environ.get("BOOT_SECONDS", CONFIG.get("boot_seconds", 0)))

PAGES = {
    "/health": "ok\n",
    "/version": f"{VERSION}\n",
    "/": f"sample app {VERSION} ({COLOUR}, websockets {websockets.__version__})\n",
}


def log(message):
    print(f"h11only {VERSION} ({COLOUR}): {message}", file=sys.stderr, flush=True)


async def plain_http(path, request_headers):
    """Plain pages; None lets /ws go on to the WebSocket handshake."""
    path = path.split("?", 1)[0]
    if path == "/ws":
        return None
    text = PAGES.get(path)
    status = http.HTTPStatus.OK if text is not None else http.HTTPStatus.NOT_FOUND
    body = (text or "not found\n").encode()
    return status, [("Content-Type", "text/plain"), ("X-App-Version", VERSION)], body


async def echo(websocket, path=None):
    await websocket.send(json.dumps({"hello": "sample app", "version": VERSION,
                                     "colour": COLOUR}))
    async for message in websocket:
        await websocket.send(message)


async def serve():
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set_result, None)
    async with websockets.serve(echo, "0.0.0.0", PORT, process_request=plain_http):
        log(f"listening on port {PORT}")
        await stop
    log("stopped")


def main():
    log(f"booting for {BOOT_SECONDS:g}s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stopped while booting
    time.sleep(BOOT_SECONDS)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
