"""fab preview: a local port that reaches the idle colour through SSH.

Fabric's forward_local enters its block before the listener is bound and
hangs clients when the remote end refuses (fabric#2290, #2342); Host.forward binds
first and opens one direct-tcpip channel per client.
"""

import threading

from ..configuration.settings import other
from ..deploy.health import describe_probe, probe_address
from ..errors import FAILED, Failure
from ..model.plan import require_setup


def open_preview(session, colour, local_port, stop=None):
    """Serve the tunnel until Ctrl-C (or until ``stop`` is set)."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    view = session.inspect()
    require_setup(view, name)
    colour = colour or (other(view.live) if view.live else "blue")
    container = view.containers[colour]
    if not container.running:
        raise Failure(f"{colour} is not running on {name} ({container.describe()})",
                      f"release into it first: fab -H {name} release", code=FAILED)
    ok, answer = describe_probe(session.host, s, colour)
    record = view.record(colour)
    port = local_port or s.port_of(colour)
    try:
        tunnel = session.host.forward(s.port_of(colour), port, remote_host=probe_address(s))
    except Failure:
        if local_port:
            raise
        tunnel = session.host.forward(s.port_of(colour), 0, remote_host=probe_address(s))
    live = " (live)" if colour == view.live else ""
    rep.line(f"preview of {colour}{live}: {(record.get('commit') or '?')[:12]} "
             f"{record.get('branch') or ''}, health now: {answer}")
    rep.line(f"open {tunnel.url}  (Ctrl-C closes the tunnel)")
    stop = stop or threading.Event()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        rep.line("tunnel closed")
    finally:
        tunnel.close()
    return {"host": name, "colour": colour, "port": tunnel.local_port, "healthy": ok}
