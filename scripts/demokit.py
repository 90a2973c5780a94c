"""The demo's small parts: its error, its printing, choosing its ports, and
the helpers its steps share (a .env value, a path as shown, a pid check).
Standard library only, like scripts/demo.py, which imports them."""

import re
import socket
import sys
from pathlib import Path

import loophost as lh


class DemoError(Exception):
    """A step of the demo failed: the message says which and what to do."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


def say(text=""):
    print(text, flush=True)


def heading(step, total, title, about=None):
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    say()
    say(f"{bold}==> [{step}/{total}] {title}{plain}")
    if about:
        say(f"    {about}")


# --- ports ------------------------------------------------------------------------


def port_free(port):
    """True when nothing listens on port, on any address (nginx binds 0.0.0.0)."""
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(family, socket.SOCK_STREAM)
        except OSError:  # no IPv6 on this machine
            continue
        try:
            # As nginx does: a connection in TIME_WAIT does not make a port taken.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((address, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def pick_ports(preferred, taken=()):
    """The preferred ports where free, other free ports for the rest; all distinct."""
    chosen = []
    for port in preferred:
        if port and port not in chosen and port not in taken and port_free(port):
            chosen.append(port)
            continue
        for _ in range(50):
            candidate = lh.free_port()
            if candidate not in chosen and candidate not in taken and port_free(candidate):
                chosen.append(candidate)
                break
        else:
            raise DemoError("found no free TCP port on this machine")
    return chosen


def parse_ports(text):
    try:
        ports = [int(p) for p in text.split()]
    except ValueError:
        ports = []
    if len(ports) != 3 or not all(0 <= p <= 65535 for p in ports):
        raise DemoError(f"DEMO_PORTS={text!r}: give three ports (public, blue, green); "
                        f"0 means any free port", code=2)
    return ports


# --- the demo -------------------------------------------------------------------------


def env_quote(value):
    """A .env value that dotenv_values reads back unchanged."""
    if re.fullmatch(r"[A-Za-z0-9_./:@,+=%-]*", value):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def shown(path):
    """path relative to the current directory when it is below it, else absolute."""
    path = Path(path)
    try:
        rel = path.relative_to(Path.cwd())
        return str(rel) if str(rel) != "." else "."
    except ValueError:
        return str(path)


def pid_is(pid, comm):
    """True when pid runs (not a zombie) and its command name is comm."""
    try:
        return lh.pid_alive(pid) and Path(f"/proc/{pid}/comm").read_text().strip() == comm
    except OSError:
        return False
