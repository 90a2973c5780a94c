"""hosts.yml: names for hosts, how to reach them, and their overrides.

A name given with -H that is not in hosts.yml is an ordinary SSH
destination (``[user@]host[:port]``, ~/.ssh/config honoured).
"""

import os
import re
from dataclasses import dataclass, field

import yaml

from ..errors import BAD_INPUT, Failure, shown_value
from .env_layers import HOSTS_FILE_VAR, Layer
from .values import did_you_mean

HOST_FIELDS = {"host", "user", "port", "identity_file", "known_hosts", "env"}
DESTINATION_RE = re.compile(
    r"(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?"
    r"(?P<host>[A-Za-z0-9_][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
# A host name has at most 253 characters (RFC 1035); a login name is bounded too.
MAX_HOST_LENGTH = 253
MAX_USER_LENGTH = 255
NAME_RE = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class HostEntry:
    """Where one named host is and what it overrides."""

    name: str
    host: str
    user: str = None
    port: int = None
    identity_file: str = None
    known_hosts: str = None
    env: Layer = field(default=None, compare=False)
    listed: bool = field(default=False, compare=False)  # named in hosts.yml
    near: str = field(default="", compare=False)  # ' (did you mean prod?)': hosts.yml's


@dataclass
class Inventory:
    path: str
    hosts: dict
    default_hosts: list

    def resolve(self, name):
        """The entry for a -H name: from hosts.yml, or the name as a destination."""
        if name in self.hosts:
            return self.hosts[name]
        match = DESTINATION_RE.fullmatch(name)
        if not match or too_long(match):
            raise Failure(
                f"-H {shown_value(name)} is neither a host in {self.path} nor an SSH "
                f"destination ([user@]host[:port], a host of at most {MAX_HOST_LENGTH} "
                "characters)",
                f"add it under hosts: in {self.path}, or check the spelling",
                code=BAD_INPUT)
        port = match.group("port")
        if port is not None and not 1 <= int(port) <= 65535:
            raise Failure(f"-H {name!r}: port {port} is not a port number",
                          "use a port from 1 to 65535", code=BAD_INPUT)
        return HostEntry(name=name, host=match.group("host").strip("[]"),
                         user=match.group("user"),
                         port=int(port) if port else None,
                         near=did_you_mean(name, self.hosts))

    def select(self, cli_hosts):
        """The hosts a task runs on: -H names, else default_hosts."""
        names = [h.strip() for h in cli_hosts if h.strip()] if cli_hosts else []
        if not names:
            names = list(self.default_hosts)
        if not names:
            raise Failure(
                "no host given: this task runs on a production host",
                f"name one with -H (e.g. fab -H prod release) or set "
                f"default_hosts in {self.path}", code=BAD_INPUT)
        return [self.resolve(n) for n in names]


def too_long(match):
    """A destination whose host or user part no host could have."""
    return (len(match.group("host")) > MAX_HOST_LENGTH
            or len(match.group("user") or "") > MAX_USER_LENGTH)


def check_identity_file(entry, path):
    """An identity_file in hosts.yml must be a file this user can read."""
    key_file = entry.identity_file
    if not key_file:
        return
    if not os.path.exists(key_file):
        why = "does not exist"
    elif not os.path.isfile(key_file):
        why = "is not a file"
    elif not os.access(key_file, os.R_OK):
        why = "is not readable by this user"
    else:
        return
    raise Failure(f"{path}: hosts.{entry.name}.identity_file={key_file!r} {why}",
                  "point identity_file at the deploy user's private key, or remove it "
                  "to use ssh-agent, DEPLOY_SSH_KEY or ~/.ssh", code=BAD_INPUT)


def bad(path, where, why):
    return Failure(f"{path}: {where}: {why}",
                   "see hosts.example.yml for the layout", code=BAD_INPUT)


def parse_inventory(text, path):
    """Parse hosts.yml text into an Inventory; every mistake names its place."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        raise bad(path, where, "not valid YAML") from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        raise bad(path, "YAML", "nested too deeply") from None
    except ValueError as exc:  # a date that does not exist (2020-13-45)
        raise bad(path, "YAML", f"not valid YAML ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise bad(path, "top level", "expected a mapping with hosts: and default_hosts:")
    extra = set(data) - {"hosts", "default_hosts"}
    if extra:
        raise bad(path, "top level", f"unknown key {sorted(extra)[0]!r} "
                  "(allowed: hosts, default_hosts)")
    hosts_data = data.get("hosts") or {}
    if not isinstance(hosts_data, dict):
        raise bad(path, "hosts", "expected a mapping of names to host entries")
    hosts = {}
    for name, entry in hosts_data.items():
        name = str(name)
        where = f"hosts.{name}"
        if not NAME_RE.fullmatch(name):
            raise bad(path, where, "a host name is letters, digits, '.', '_' and '-'")
        if not isinstance(entry, dict):
            raise bad(path, where, "expected a mapping with at least host:")
        unknown = set(entry) - HOST_FIELDS
        if unknown:
            raise bad(path, where, f"unknown field {sorted(unknown)[0]!r} "
                      f"(allowed: {', '.join(sorted(HOST_FIELDS))})")
        host = entry.get("host")
        if (not isinstance(host, str) or not DESTINATION_RE.fullmatch(host) or "@" in host
                or too_long(DESTINATION_RE.fullmatch(host))):
            raise bad(path, f"{where}.host", "required: a host name or address "
                      f"(at most {MAX_HOST_LENGTH} characters)")
        port = entry.get("port")
        # YAML reads `port: true` as a bool, and bool is an int in Python.
        if port is not None and (not isinstance(port, int) or isinstance(port, bool)
                                 or not 1 <= port <= 65535):
            raise bad(path, f"{where}.port", "a port number from 1 to 65535")
        for key in ("user", "identity_file", "known_hosts"):
            value = entry.get(key)
            if value is not None and (not isinstance(value, str) or not value
                                      or any(c < " " or c == "\x7f" for c in value)
                                      or len(value) > 4096):
                raise bad(path, f"{where}.{key}", "expected a single-line string "
                          "(no control characters, at most 4096 characters)")
        env = entry.get("env") or {}
        if not isinstance(env, dict):
            raise bad(path, f"{where}.env", "expected a mapping of KEY: value")
        values = {}
        for key, value in env.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            values[str(key)] = "" if value is None else str(value)
        hosts[name] = HostEntry(
            name=name, host=host.strip("[]"), user=entry.get("user"), port=port,
            identity_file=_expand(entry.get("identity_file")),
            known_hosts=_expand(entry.get("known_hosts")),
            env=Layer(f"hosts.yml host {name!r} env ({path})", values), listed=True)
    defaults = data.get("default_hosts") or []
    if isinstance(defaults, str):
        defaults = [defaults]
    if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
        raise bad(path, "default_hosts", "expected a list of host names")
    for d in defaults:
        if d not in hosts:
            raise bad(path, "default_hosts", f"{d!r} is not under hosts:")
    return Inventory(path=path, hosts=hosts, default_hosts=defaults)


def _expand(value):
    return os.path.expanduser(value) if value else value


def load_inventory(environ=None):
    """hosts.yml from the current directory or BLUEGREEN_HOSTS_FILE; may be absent."""
    environ = os.environ if environ is None else environ
    path = environ.get(HOSTS_FILE_VAR) or "hosts.yml"
    if not os.path.exists(path):
        if environ.get(HOSTS_FILE_VAR):
            raise Failure(f"{HOSTS_FILE_VAR} names {path}, which does not exist",
                          "copy hosts.example.yml there, or unset it", code=BAD_INPUT)
        return Inventory(path=path, hosts={}, default_hosts=[])
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise bad(path, f"byte {exc.start}", "not UTF-8 text") from None
    return parse_inventory(text, path)
