"""Settings: every configuration key, its default, its source and its check.

Precedence, highest first: task flags, the process environment with the
prefix ``BLUEGREEN_``, the host's ``env:`` block in hosts.yml, ``.env``,
built-in defaults. Plain key names in the environment are ignored on
purpose: OpenSSL reads ``SSL_CERT_FILE`` and CGI sets ``SERVER_NAME``.

Every value is checked here, before any connection is made, and a bad one
is reported with its key, where it came from, the value and what is allowed.
"""

import difflib
import ipaddress
import os
import re
import shlex
from dataclasses import dataclass, field

from dotenv import dotenv_values

from .errors import BAD_INPUT, ConfigError, Failure

ENV_PREFIX = "BLUEGREEN_"
COLOURS = ("blue", "green")

# Where the files come from; these two names are not settings of their own.
ENV_FILE_VAR = "BLUEGREEN_ENV_FILE"
HOSTS_FILE_VAR = "BLUEGREEN_HOSTS_FILE"


def global_defaults():
    """Every key with its built-in default (the seed's eight keys first)."""
    return {
        "APP_CMD": "",
        "APP_PORT": "8080",
        "BLUE_BRANCH": "main",
        "GREEN_BRANCH": "main",
        "GIT_REPO": "",
        "SERVER_NAME": "_",
        "SSL_CERT_FILE": "",
        "SSL_KEY_FILE": "",
        "APP_NAME": "app",
        "PUBLIC_PORT": "8080",
        "BLUE_PORT": "8081",
        "GREEN_PORT": "8082",
        "BIND_ADDRESS": "127.0.0.1",
        "DOCKER_NETWORK": "bridge",
        "SSL_PORT": "443",
        "DEPLOY_DIR": "",  # empty means /srv/<APP_NAME>
        "HEALTH_PATH": "/",
        "HEALTH_TIMEOUT": "60",
        "HEALTH_INTERVAL": "1",
        "HEALTH_PASSES": "2",
        "NGINX_CONF_DIR": "/etc/nginx/conf.d",
        "NGINX_TEST_CMD": "nginx -t",
        "NGINX_RELOAD_CMD": "nginx -s reload",
        "COMPOSE_CMD": "docker compose",
        "APP_ENV_FILE": "",
        "USE_SUDO": "false",
        "KNOWN_HOSTS": "~/.ssh/known_hosts",
        "DEPLOY_SSH_KEY": "",
        "DEPLOY_KNOWN_HOSTS": "",
        "PRE_SWITCH_CMD": "",
        "STOP_TIMEOUT": "10",
        "CONNECT_TIMEOUT": "10",
        "DRAIN_TIMEOUT": "30",
    }


# Values that must never appear in output, errors or history.
SECRET_KEYS = frozenset({"DEPLOY_SSH_KEY"})
# Values that are text blocks by nature; every other value is one line.
MULTILINE_KEYS = frozenset({"DEPLOY_SSH_KEY", "DEPLOY_KNOWN_HOSTS"})


# --- checks: each takes the raw text, returns the typed value or raises ---


class Invalid(ValueError):
    """Raised by a check with the sentence that says what is allowed."""


APP_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
HOSTNAME_RE = re.compile(
    r"(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
# Paths reach shells and nginx files: keep them to characters that need no
# quoting anywhere (they are still quoted in every script).
SAFE_PATH_RE = re.compile(r"/[A-Za-z0-9._@+/-]*")
HEALTH_PATH_RE = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*")
REF_CHARS_RE = re.compile(r"[A-Za-z0-9._/-]+")
SHA_RE = re.compile(r"[0-9a-fA-F]{4,40}")
GIT_URL_RE = re.compile(r"(https?|ssh|git|file)://[^\s'\"\\]+")
GIT_SCP_RE = re.compile(r"([A-Za-z0-9._-]+@)?[A-Za-z0-9._-]+:[^\s'\"\\]+")
GIT_PATH_RE = re.compile(r"(/|~/)[^\s'\"\\]*")
BOOLS = {"true": True, "yes": True, "1": True, "on": True,
         "false": False, "no": False, "0": False, "off": False, "": False}


def check_app_name(v):
    if not APP_NAME_RE.fullmatch(v):
        raise Invalid("allowed: lower-case letters, digits and '-', starting "
                      "with a letter or digit, at most 40 characters")
    return v


def _is_digits(v):
    """ASCII digits only: str.isdigit() also accepts '²', which int() refuses."""
    return v.isascii() and v.isdigit()


def check_port(v):
    if not _is_digits(v) or not 1 <= int(v) <= 65535:
        raise Invalid("allowed: a port number from 1 to 65535")
    return int(v)


def check_branch(v):
    """Git's ref-name rules, narrowed to characters that are safe anywhere."""
    allowed = ("allowed: a git branch name of letters, digits, '.', '_', "
               "'-' and '/', not starting with '-', '.' or '/', without "
               "'..' or '//', not ending in '/', '.' or '.lock'")
    if (not REF_CHARS_RE.fullmatch(v) or v[0] in "-./" or ".." in v
            or "//" in v or v.endswith(("/", ".", ".lock"))
            or any(part.startswith(".") for part in v.split("/"))):
        raise Invalid(allowed)
    return v


def check_ref(v):
    """A commit sha, or a branch or tag name."""
    if SHA_RE.fullmatch(v):
        return v
    try:
        return check_branch(v)
    except Invalid:
        raise Invalid("allowed: a commit sha (4 to 40 hex digits) or a branch "
                      "or tag name of letters, digits, '.', '_', '-', '/', "
                      "not starting with '-'") from None


def check_git_repo(v):
    if v.startswith("-") or not (GIT_URL_RE.fullmatch(v) or GIT_SCP_RE.fullmatch(v)
                                 or GIT_PATH_RE.fullmatch(v)):
        raise Invalid("allowed: a URL (https://, ssh://, git://, file://), "
                      "user@host:path, or an absolute path on the host; no "
                      "spaces, quotes or backslashes")
    return v


def check_server_name(v):
    names = v.split()
    if not names or not all(n == "_" or HOSTNAME_RE.fullmatch(n) for n in names):
        raise Invalid("allowed: '_' or host names (letters, digits, '-', '.', "
                      "an optional leading '*.'), separated by spaces")
    return " ".join(names)


def check_abs_path(v):
    if not SAFE_PATH_RE.fullmatch(v) or "/../" in v + "/":
        raise Invalid("allowed: an absolute path of letters, digits and "
                      "'._@+-/', without '..'")
    return v.rstrip("/") or "/"


def check_optional_abs_path(v):
    return check_abs_path(v) if v else ""


def check_deploy_dir(v):
    path = check_abs_path(v)
    if path in ("/", "/etc", "/usr", "/var", "/home", "/root", "/srv", "/tmp"):
        raise Invalid("allowed: a directory of this app's own, such as /srv/<APP_NAME>")
    return path


def check_health_path(v):
    if not HEALTH_PATH_RE.fullmatch(v):
        raise Invalid("allowed: a URL path starting with '/', without spaces "
                      "or quotes")
    return v


def check_positive_number(v):
    try:
        n = float(v)
    except ValueError:
        n = 0
    if not n > 0 or n != n or n == float("inf"):
        raise Invalid("allowed: a number greater than 0")
    return n


def check_positive_int(v):
    if not _is_digits(v) or int(v) < 1:
        raise Invalid("allowed: a whole number of 1 or more")
    return int(v)


def check_non_negative_int(v):
    if not _is_digits(v):
        raise Invalid("allowed: a whole number of 0 or more")
    return int(v)


def check_network(v):
    if v not in ("bridge", "host"):
        raise Invalid("allowed: 'bridge' or 'host'")
    return v


def check_ip(v):
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise Invalid("allowed: an IP address such as 127.0.0.1 or 0.0.0.0") from None


def check_command(v):
    if not v.strip():
        raise Invalid("allowed: a command line (it cannot be empty)")
    return check_optional_command(v)


def check_optional_command(v):
    try:
        shlex.split(v)
    except ValueError:
        raise Invalid("allowed: a command line a shell can parse (a quote is not "
                      "closed)") from None
    return v.strip()


def check_bool(v):
    if v.lower() not in BOOLS:
        raise Invalid("allowed: true or false")
    return BOOLS[v.lower()]


def check_local_path(v):
    return os.path.expanduser(v) if v else ""


def check_local_file(v):
    if not v:
        return ""
    path = os.path.expanduser(v)
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise Invalid("allowed: a readable file on this machine (it is not there)")
    return path


def check_private_key(v):
    if v and "PRIVATE KEY" not in v:
        raise Invalid("allowed: the text of a private key ('-----BEGIN ... "
                      "PRIVATE KEY-----' ...)")
    return v


def check_known_hosts_text(v):
    return v


CHECKS = {
    "APP_CMD": check_optional_command,
    "APP_PORT": check_port,
    "BLUE_BRANCH": check_branch,
    "GREEN_BRANCH": check_branch,
    "GIT_REPO": lambda v: check_git_repo(v) if v else "",
    "SERVER_NAME": check_server_name,
    "SSL_CERT_FILE": check_optional_abs_path,
    "SSL_KEY_FILE": check_optional_abs_path,
    "APP_NAME": check_app_name,
    "PUBLIC_PORT": check_port,
    "BLUE_PORT": check_port,
    "GREEN_PORT": check_port,
    "BIND_ADDRESS": check_ip,
    "DOCKER_NETWORK": check_network,
    "SSL_PORT": check_port,
    "DEPLOY_DIR": lambda v: check_deploy_dir(v) if v else "",
    "HEALTH_PATH": check_health_path,
    "HEALTH_TIMEOUT": check_positive_number,
    "HEALTH_INTERVAL": check_positive_number,
    "HEALTH_PASSES": check_positive_int,
    "NGINX_CONF_DIR": check_abs_path,
    "NGINX_TEST_CMD": check_command,
    "NGINX_RELOAD_CMD": check_command,
    "COMPOSE_CMD": check_command,
    "APP_ENV_FILE": check_local_file,
    "USE_SUDO": check_bool,
    "KNOWN_HOSTS": check_local_path,
    "DEPLOY_SSH_KEY": check_private_key,
    "DEPLOY_KNOWN_HOSTS": check_known_hosts_text,
    "PRE_SWITCH_CMD": check_optional_command,
    "STOP_TIMEOUT": check_non_negative_int,
    "CONNECT_TIMEOUT": check_positive_number,
    "DRAIN_TIMEOUT": check_non_negative_int,
}
assert set(CHECKS) == set(global_defaults())


@dataclass(frozen=True)
class Settings:
    """The checked configuration of one app on one host."""

    app_cmd: str
    app_port: int
    blue_branch: str
    green_branch: str
    git_repo: str
    server_name: str
    ssl_cert_file: str
    ssl_key_file: str
    app_name: str
    public_port: int
    blue_port: int
    green_port: int
    bind_address: str
    docker_network: str
    ssl_port: int
    deploy_dir: str
    health_path: str
    health_timeout: float
    health_interval: float
    health_passes: int
    nginx_conf_dir: str
    nginx_test_cmd: str
    nginx_reload_cmd: str
    compose_cmd: str
    app_env_file: str
    use_sudo: bool
    known_hosts: str
    deploy_ssh_key: str = field(repr=False)  # a secret: never in a repr or traceback
    deploy_known_hosts: str
    pre_switch_cmd: str
    stop_timeout: int
    connect_timeout: float
    drain_timeout: int
    origins: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def ssl(self):
        return bool(self.ssl_cert_file and self.ssl_key_file)

    @property
    def host_header(self):
        """The Host header probes send: the first server name, as a client would."""
        first = self.server_name.split()[0]
        return "localhost" if first == "_" or first.startswith("*") else first

    @property
    def upstream_address(self):
        """Where nginx reaches a colour's port on the host."""
        if self.docker_network == "host" or self.bind_address in ("0.0.0.0", "::"):
            return "127.0.0.1"
        return f"[{self.bind_address}]" if ":" in self.bind_address else self.bind_address

    @property
    def nginx_file(self):
        return f"{self.nginx_conf_dir}/{self.app_name}.conf"

    def port_of(self, colour):
        return {"blue": self.blue_port, "green": self.green_port}[colour]

    def branch_of(self, colour):
        return {"blue": self.blue_branch, "green": self.green_branch}[colour]

    def public(self):
        """The settings an operator may see (status, history, --json): no secrets."""
        out = {}
        for key in global_defaults():
            if key in SECRET_KEYS:
                continue
            out[key] = getattr(self, key.lower())
        return out


def other(colour):
    return "green" if colour == "blue" else "blue"


# --- loading ---


@dataclass
class Layer:
    """One source of values: its name for error messages and its values."""

    origin: str
    values: dict


def read_env_file(path):
    """The .env layer; a missing file is an empty layer."""
    if not path or not os.path.exists(path):
        return Layer(f".env ({path})", {})
    if not os.path.isfile(path):
        raise Failure(f"{path} is not a file", f"point {ENV_FILE_VAR} at your .env file",
                      code=BAD_INPUT)
    # No ${VAR} interpolation: it would pull plain environment names (the
    # machine's SSL_CERT_FILE) into settings, and APP_CMD's `${PORT}` is for
    # the container's shell, not for this machine's environment.
    values = dotenv_values(path, interpolate=False)
    return Layer(f".env ({path})", {k: ("" if v is None else v) for k, v in values.items()})


def environ_layer(environ):
    values = {}
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX) and name not in (ENV_FILE_VAR, HOSTS_FILE_VAR):
            values[name[len(ENV_PREFIX):]] = value
    return Layer("the environment (BLUEGREEN_{key})", values)


def unknown_key_error(key, origin):
    guess = difflib.get_close_matches(key, global_defaults(), n=1)
    hint = f"did you mean {guess[0]}?" if guess else "see .env.example for every key"
    return Failure(f"unknown key {key} in {origin}", hint, code=BAD_INPUT)


def describe(key, value):
    if key in SECRET_KEYS:
        return "<hidden>"
    return value


def merge_layers(layers):
    """Apply layers lowest first; return {key: (raw value, origin)}."""
    merged = {k: (v, "the built-in default") for k, v in global_defaults().items()}
    for layer in layers:
        for key, value in layer.values.items():
            origin = layer.origin.replace("{key}", key)
            if key not in merged:
                raise unknown_key_error(key, origin)
            merged[key] = (value, origin)
    return merged


def check_all(merged, require_repo=True):
    """Check every value and the rules between values; build Settings."""
    typed, origins = {}, {}
    for key, (raw, origin) in merged.items():
        raw = "" if raw is None else str(raw)
        origins[key] = origin
        if key in SECRET_KEYS:
            # Do not put the text of a key into messages.
            shown = "<hidden>"
        else:
            shown = raw
        if "\x00" in raw or (("\n" in raw or "\r" in raw) and key not in MULTILINE_KEYS):
            raise ConfigError(key, shown, origin,
                              "allowed: a single line (no newlines or NUL characters)")
        try:
            typed[key] = CHECKS[key](raw)
        except Invalid as exc:
            raise ConfigError(key, shown, origin, str(exc)) from None

    def fail(key, why):
        raise ConfigError(key, merged[key][0], origins[key], why)

    if not typed["DEPLOY_DIR"]:
        typed["DEPLOY_DIR"] = f"/srv/{typed['APP_NAME']}"
        origins["DEPLOY_DIR"] = "the built-in default (/srv/<APP_NAME>)"
    if require_repo and not typed["GIT_REPO"]:
        raise Failure(
            "GIT_REPO is not set: the host needs to know what to clone",
            "set GIT_REPO in .env (a URL, user@host:path or a path on the host)",
            code=BAD_INPUT)
    if bool(typed["SSL_CERT_FILE"]) != bool(typed["SSL_KEY_FILE"]):
        missing = "SSL_KEY_FILE" if typed["SSL_CERT_FILE"] else "SSL_CERT_FILE"
        present = "SSL_CERT_FILE" if missing == "SSL_KEY_FILE" else "SSL_KEY_FILE"
        fail(present, f"{missing} must be set too (HTTPS needs both or neither)")
    ports = ["PUBLIC_PORT", "BLUE_PORT", "GREEN_PORT"]
    if typed["SSL_CERT_FILE"]:
        ports.append("SSL_PORT")
    seen = {}
    for key in ports:
        if typed[key] in seen:
            fail(key, f"allowed: a port no other key uses ({seen[typed[key]]} "
                      f"is {typed[key]} too)")
        seen[typed[key]] = key
    return Settings(**{k.lower(): v for k, v in typed.items()}, origins=origins)


def load_settings(env_file=None, host_layer=None, flags=None, environ=None,
                  require_repo=True):
    """Settings for one host: .env < hosts.yml env: < BLUEGREEN_* < flags.

    ``host_layer`` is a Layer from the inventory (or None); ``flags`` is a
    Layer of task flags that map to keys.
    """
    environ = os.environ if environ is None else environ
    named = env_file or environ.get(ENV_FILE_VAR)
    if named and not os.path.exists(named):
        # A mistyped name must not silently deploy the built-in defaults.
        raise Failure(f"{ENV_FILE_VAR} names {named}, which does not exist",
                      "copy .env.example there, or unset it", code=BAD_INPUT)
    env_file = named or ".env"
    layers = [read_env_file(env_file)]
    if host_layer is not None:
        layers.append(host_layer)
    layers.append(environ_layer(environ))
    if flags is not None:
        layers.append(flags)
    return check_all(merge_layers(layers), require_repo=require_repo)


def check_flag(flag, value, check):
    """Check one task flag's value; a bad one names the flag."""
    try:
        return check(value)
    except Invalid as exc:
        raise ConfigError(flag, value, "the command line", str(exc)) from None
