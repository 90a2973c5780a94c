"""The nginx file: render it for a live colour, and read which colour it serves."""

import re
from dataclasses import dataclass

from .render import render_template

HEADER_RE = re.compile(r"^# bluegreen app=(?P<app>\S+) live=(?P<live>\S+)\s*$", re.M)
UPSTREAM_RE = re.compile(
    r"upstream\s+bluegreen_(?P<app>[a-z0-9-]+)\s*\{[^}]*?server\s+"
    r"(?P<address>\S+?):(?P<port>\d+)\s*;", re.S)


def render_nginx(settings, live):
    """The whole nginx file that sends this app's traffic to ``live``."""
    return render_template("nginx.conf.j2", s=settings, live=live)


@dataclass(frozen=True)
class NginxView:
    """What an nginx file on the host says and what it really serves."""

    header_live: str  # the colour its header names, or None
    port: int  # the upstream port it proxies to, or None
    served: str  # the colour that port belongs to, or None (a foreign port)

    @property
    def drift(self):
        """True when the header and the upstream disagree (a hand edit)."""
        return self.header_live is not None and self.served != self.header_live


def read_nginx(text, settings):
    """Parse an nginx file we wrote (possibly edited since); None when absent."""
    if not text:
        return None
    header = HEADER_RE.search(text)
    upstream = UPSTREAM_RE.search(text)
    port = int(upstream.group("port")) if upstream else None
    served = {settings.blue_port: "blue", settings.green_port: "green"}.get(port)
    live = header.group("live") if header else None
    if live not in ("blue", "green"):
        live = None
    return NginxView(header_live=live, port=port, served=served)
