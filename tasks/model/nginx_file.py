"""The nginx file: render it for a live colour (and a canary), and read it back."""

import json
import re
from dataclasses import dataclass
from typing import NamedTuple

from ..configuration.settings import COLOURS, other
from . import access_log
from .templating import render_template

# keepalive_min_timeout came with nginx 1.27.4: it lets an old worker keep an
# idle keep-alive connection open that long at a reload, so clients do not
# see a reset at a switch (measured: 22 resets in 15 reloads on 1.22, 0 on
# 1.30 with 5s; bench/README.md has the figures of this project's own run).
KEEPALIVE_MIN_TIMEOUT_SINCE = (1, 27, 4)
AUTO_KEEPALIVE_MIN_TIMEOUT = "5s"

# What a file rendered with `fab maintenance on` says of it (templates/nginx.conf.j2).
MAINTENANCE_SINCE_RE = re.compile(r"# Maintenance \(`fab maintenance on`, (?P<since>[^)]*)\)")
MAINTENANCE_TOKEN_RE = re.compile(r'if \(\$http_x_bluegreen_bypass = "(?P<token>[0-9a-f]+)"\)')
# Its message and page kind (JSON on one comment line): repair keeps them.
MAINTENANCE_NOTE_RE = re.compile(r"^\s*# Its page: (?P<note>\{.*\})\s*$", re.M)
HEADER_RE = re.compile(r"^# bluegreen app=(?P<app>\S+) live=(?P<live>\S+)"
                       r"(?: canary=(?P<canary>[a-z]+):(?P<percent>\d+))?\s*$", re.M)
# `upstream bluegreen_<app>` (one colour; also every file of earlier versions)
# or `upstream bluegreen_<app>_<colour>` (a canary file: one per colour).
UPSTREAM_RE = re.compile(
    r"upstream\s+bluegreen_(?P<app>[a-z0-9-]+)(?:_(?P<colour>blue|green))?\s*\{[^}]*?"
    r"server\s+(?P<address>\S+?):(?P<port>\d+)\s*;", re.S)
SPLIT_RE = re.compile(r"split_clients\s+\S+\s+\$\w+\s*\{(?P<body>[^}]*)\}", re.S)
SPLIT_ENTRY_RE = re.compile(r"(?P<share>\d+(?:\.\d+)?%|\*)\s+(?P<colour>\S+?)\s*;")
VERSION_RE = re.compile(r"(?:nginx/)?(\d+)\.(\d+)\.(\d+)")


# --- names in the nginx file ---------------------------------------------------


def nginx_names(settings):
    """The per-app names the file declares at http level.

    Several apps share one nginx (one conf.d), so every upstream, variable and
    log format carries the app's name. nginx variables allow [A-Za-z0-9_] and
    APP_NAME has '-', which becomes '_' (APP_NAME never has '_', so two apps
    cannot meet on one name).
    """
    word = settings.app_name.replace("-", "_")
    return {
        "upstream": f"bluegreen_{settings.app_name}",
        "colour": f"bluegreen_{word}_colour",
        "connection": f"bluegreen_{word}_connection",
        "log_format": f"bluegreen_{word}",
        "bridge": f"bluegreen_{word}_bridge",
        "maintenance": f"bluegreen_{word}_maintenance",
    }


def access_log_format(settings, live, canary=None):
    """The log_format string of this app's file (fields: FIELDS).

    With a canary the colour that served is the split_clients variable;
    without, every request is the live colour's.
    """
    return access_log.log_format("$" + nginx_names(settings)["colour"] if canary else live)


# --- keepalive_min_timeout -------------------------------------------------------


def parse_nginx_version(text):
    """(1, 27, 4) from "1.27.4" or `nginx -v`'s "nginx version: nginx/1.27.4"; None if unknown."""
    m = VERSION_RE.search(text or "")
    return tuple(int(n) for n in m.groups()) if m else None


def nginx_version_supports_keepalive_min_timeout(version):
    """True/False for a version string; None when the version is unknown."""
    parsed = parse_nginx_version(version)
    return None if parsed is None else parsed >= KEEPALIVE_MIN_TIMEOUT_SINCE


def keepalive_min_timeout(settings, nginx_version):
    """The keepalive_min_timeout to write, or None to write none.

    ``auto`` writes 5s only where the host's nginx knows the directive (an
    older nginx refuses the whole file); a duration is written always (nginx
    -t then tells an old nginx's operator); ``off`` never.
    """
    value = settings.keepalive_min_timeout
    if value == "off":
        return None
    if value == "auto":
        supported = nginx_version_supports_keepalive_min_timeout(nginx_version)
        return AUTO_KEEPALIVE_MIN_TIMEOUT if supported else None
    return value


class KeepaliveVerdict(NamedTuple):
    protected: bool  # keep-alive clients are safe from resets at a switch
    line: str  # one line for `check` and `status`


def keepalive_verdict(settings, nginx_version):
    """Whether keep-alive clients see resets at a switch on this host, in one line."""
    since = ".".join(map(str, KEEPALIVE_MIN_TIMEOUT_SINCE))
    supported = nginx_version_supports_keepalive_min_timeout(nginx_version)
    upgrade = f"install nginx {since}+ (nginx.org packages, 1.28 stable)"
    value = keepalive_min_timeout(settings, nginx_version)
    if supported is None:
        return KeepaliveVerdict(False, "nginx version unknown: cannot tell whether "
                                       "keep-alive clients are protected at a switch")
    if not supported and settings.keepalive_min_timeout not in ("auto", "off"):
        return KeepaliveVerdict(False, f"KEEPALIVE_MIN_TIMEOUT={value} but nginx "
                                       f"{nginx_version} is older than {since} and will "
                                       f"refuse the file: set it to auto, or {upgrade}")
    if not supported:
        return KeepaliveVerdict(False, f"not protected: nginx {nginx_version} is older than "
                                       f"{since}: keep-alive clients may see a reset at a "
                                       f"switch; {upgrade}")
    if value is None:
        return KeepaliveVerdict(False, f"not protected: KEEPALIVE_MIN_TIMEOUT=off: keep-alive "
                                       f"clients may see a reset at a switch (nginx "
                                       f"{nginx_version} could prevent it: set it to auto)")
    return KeepaliveVerdict(True, f"protected: nginx {nginx_version} keeps idle keep-alive "
                                  f"connections open {value} at a switch "
                                  f"(keepalive_min_timeout)")


# --- rendering ---------------------------------------------------------------------


def snippet_lines(text):
    """NGINX_SNIPPET_FILE's lines, indented into the server block, no blank-line runs."""
    lines, blank = [], False
    for line in text.splitlines():
        line = line.rstrip()
        if line or not blank:
            lines.append(f"    {line}" if line else "")
        blank = not line
    return lines


MAINTENANCE_URI = "/.bluegreen/maintenance.html"  # internal: clients cannot ask for it


def maintenance_root(settings):
    """The directory on the host whose index.html is the maintenance page."""
    return f"{settings.deploy_dir}/maintenance"


def asset_bridge(settings, live, canary_colour):
    """What the file needs to bridge ASSET_PATHS, or None when it is off.

    ``pairs``: for each colour that serves clients, the colour its 404s are
    asked of (both ways round during a canary).
    """
    if not settings.asset_paths:
        return None
    served = COLOURS if canary_colour else (live,)
    return {"paths": settings.asset_paths,
            "pairs": [{"served": colour, "to": other(colour)} for colour in served]}


def render_nginx(settings, live, *, nginx_version=None, canary=None, maintenance=None):
    """The whole nginx file that sends this app's traffic to ``live``.

    ``canary=(colour, percent)`` sends ``percent`` % of clients (sticky per
    client) to that colour instead. ``nginx_version`` is the host's ("1.27.4"),
    or None when unknown (a local `fab render`): it decides
    KEEPALIVE_MIN_TIMEOUT=auto. ``maintenance``: the record of `fab
    maintenance on` (its token, since), which answers every public request
    with 503 and the page; None serves the app.
    """
    canary_colour, percent = canary if canary else (None, None)
    if canary_colour is not None:
        if canary_colour != other(live) or not 1 <= int(percent) <= 99:
            raise ValueError(f"a canary is the idle colour and 1-99 %, not {canary!r}")
    names = nginx_names(settings)
    return render_template(
        "nginx.conf.j2", s=settings, live=live, colours=COLOURS,
        canary=canary_colour, canary_percent=percent and int(percent), names=names,
        log={"path": settings.access_log_path,
             "format": access_log_format(settings, live, canary),
             "fields": "time, colour, status, method, upstream seconds"},
        keepalive=keepalive_min_timeout(settings, nginx_version),
        keepalive_on_host=settings.keepalive_min_timeout == "auto" and nginx_version is None,
        auto_keepalive=AUTO_KEEPALIVE_MIN_TIMEOUT,
        keepalive_since=".".join(map(str, KEEPALIVE_MIN_TIMEOUT_SINCE)),
        snippet=snippet_lines(settings.nginx_snippet),
        bridge=asset_bridge(settings, live, canary_colour),
        maintenance=maintenance and {**maintenance, "root": maintenance_root(settings),
                                     "uri": MAINTENANCE_URI,
                                     "note": maintenance_note(maintenance)})


def maintenance_note(record):
    """The message and page kind of a maintenance record, as one line of JSON
    (ASCII only: the message is one line, json escapes the rest)."""
    return json.dumps({"message": record.get("message") or "",
                       "page": record.get("page") or "message"}, sort_keys=True)


# --- reading ------------------------------------------------------------------------


@dataclass(frozen=True)
class NginxView:
    """What an nginx file on the host says and what it really serves."""

    header_live: str  # the colour its header names, or None
    port: int  # the port the main upstream (all traffic but a canary's) proxies to, or None
    served: str  # the colour that port belongs to, or None (a foreign port)
    canary: str = None  # the colour a canary share goes to, or None without a canary
    canary_percent: int = None  # that share, 1-99, or None
    # {"token", "since"} while the file serves the maintenance page, else None
    maintenance: dict = None

    @property
    def drift(self):
        """True when the header and the upstream disagree (a hand edit)."""
        return self.header_live is not None and self.served != self.header_live


def read_nginx(text, settings):
    """Parse an nginx file we wrote (possibly edited since); None when absent.

    Reads files of every version: one upstream `bluegreen_<app>`, or a canary
    file's one upstream per colour and its split_clients.
    """
    if not text:
        return None
    colour_of = {settings.blue_port: "blue", settings.green_port: "green"}
    header = HEADER_RE.search(text)
    ports = {m.group("colour"): int(m.group("port")) for m in UPSTREAM_RE.finditer(text)}
    main, canary, percent = None, None, None
    split = SPLIT_RE.search(text)
    if split:
        for m in SPLIT_ENTRY_RE.finditer(split.group("body")):
            if m.group("share") == "*":
                main = m.group("colour")
            else:
                canary, percent = m.group("colour"), int(float(m.group("share")[:-1]))
    port = ports.get(main) if split else ports.get(None)
    if canary not in COLOURS:
        canary, percent = None, None
    live = header.group("live") if header else None
    if live not in COLOURS:
        live = None
    return NginxView(header_live=live, port=port, served=colour_of.get(port),
                     canary=canary, canary_percent=percent, maintenance=maintenance_in(text))


def maintenance_in(text):
    """The maintenance record an nginx file serves ({"token", "since"}, and its
    "message" and "page" when the file says them), or None: what `repair`
    keeps when state.json cannot be read."""
    since, token = MAINTENANCE_SINCE_RE.search(text), MAINTENANCE_TOKEN_RE.search(text)
    if not (since and token):
        return None
    record = {"token": token.group("token"), "since": since.group("since")}
    note = MAINTENANCE_NOTE_RE.search(text)
    try:
        said = json.loads(note.group("note")) if note else {}
    except ValueError:  # edited by hand: the page stays on, its text unknown
        said = {}
    if isinstance(said, dict):
        record.update({k: said[k] for k in ("message", "page")
                       if isinstance(said.get(k), str)})
    return record
