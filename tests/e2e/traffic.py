"""Single HTTP(S) requests (HTTPS with SNI), and waiting for an answer to settle.

Load (many requests, counted) is scripts/loadgen.py. Traffic goes to
127.0.0.1 only.
"""

import http.client
import time

import loophost as lh
from loadgen import LoopbackHTTPS, tls_context  # noqa: F401  (tests import it from here)


def https_get(port, path, server_name, context, timeout=5.0):
    """GET https://server_name:port/path at 127.0.0.1 -> (status, headers, body).

    headers has lower-case names. Never raises: a refused connection, a TLS
    failure or a timeout gives status None and the error as body.
    """
    conn = LoopbackHTTPS(server_name, port, context, timeout)
    return lh.fetch(conn, path, {"Connection": "close"})


def settled(request, expected, timeout=3.0, interval=0.02):
    """Poll request() -> (status, headers, body) until expected(*answer); return the last.

    For checks right after a switch. `fab` returns once nginx serves the
    new file, but nginx lets the old workers take new connections until it
    tells them to quit, about 100 ms after the new workers start (measured
    here: one request in five that followed `fab release` at once still got
    the old colour, the next one 50 ms later the new).
    """
    deadline = time.monotonic() + timeout
    while True:
        answer = request()
        if expected(*answer) or time.monotonic() > deadline:
            return answer
        time.sleep(interval)


def request(port, path, method="GET", tls=None, headers=None):
    """One request to 127.0.0.1:port -> (status, lower-case headers, body text).

    ``tls=(server_name, context)`` speaks HTTPS with SNI.
    """
    conn = (LoopbackHTTPS(tls[0], port, tls[1], 5.0) if tls
            else http.client.HTTPConnection(lh.LOOPBACK, port, timeout=5.0))
    try:
        conn.request(method, path, headers={**({"Host": tls[0]} if tls else {}),
                                            **(headers or {})})
        resp = conn.getresponse()
        return (resp.status, {k.lower(): v for k, v in resp.getheaders()},
                resp.read().decode(errors="replace"))
    finally:
        conn.close()
