"""fab preview: a local port that reaches the idle colour through SSH.

Fabric's forward_local enters its block before the listener is bound and
hangs clients when the remote end refuses (NOTES.md), so this is a small
forwarder of our own: bind first, then one direct-tcpip channel per client.
"""

import select
import socket
import threading

from .config import other
from .errors import BAD_INPUT, FAILED, Failure
from .health import describe_probe, probe_address
from .plan import require_setup


def bind_local(port):
    """A listening socket on 127.0.0.1: ``port``, or a free one when 0 or busy."""
    for candidate in ([port] if port else []) + [0]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", candidate))
        except OSError:
            sock.close()
            if candidate == port and port:
                raise Failure(f"local port {port} is in use", "pick another with "
                              "--local-port, or leave it out for a free one",
                              code=BAD_INPUT) from None
            raise
        sock.listen(16)
        return sock
    raise AssertionError("unreachable")


def pump(client, channel):
    """Copy bytes both ways until either side closes."""
    try:
        while True:
            ready, _, _ = select.select([client, channel], [], [], 30)
            if not ready:
                continue
            if client in ready:
                data = client.recv(65536)
                if not data:
                    break
                channel.sendall(data)
            if channel in ready:
                data = channel.recv(65536)
                if not data:
                    break
                client.sendall(data)
    except OSError:
        pass
    finally:
        channel.close()
        client.close()


def preview(session, colour, local_port, stop=None):
    """Serve the tunnel until Ctrl-C (or ``stop`` is set, for tests)."""
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
    listener = bind_local(local_port or s.port_of(colour))
    port = listener.getsockname()[1]
    live = " (live)" if colour == view.live else ""
    rep.line(f"preview of {colour}{live}: {(record.get('commit') or '?')[:12]} "
             f"{record.get('branch') or ''}, health now: {answer}")
    rep.line(f"open http://127.0.0.1:{port}/  (Ctrl-C closes the tunnel)")
    target = (probe_address(s), s.port_of(colour))
    transport = session.host._transport()
    stop = stop or threading.Event()
    listener.settimeout(0.5)
    try:
        while not stop.is_set():
            try:
                client, addr = listener.accept()
            except socket.timeout:
                continue
            try:
                channel = transport.open_channel("direct-tcpip", target, addr, timeout=5)
            except Exception as exc:
                rep.line(f"could not reach {colour} on the host: {exc}")
                client.close()
                continue
            threading.Thread(target=pump, args=(client, channel), daemon=True).start()
    except KeyboardInterrupt:
        rep.line("tunnel closed")
    finally:
        listener.close()
    return {"host": name, "colour": colour, "port": port, "healthy": ok}
