"""Settings: every configuration key, its default, its source and its check.

Precedence, highest first: task flags, the process environment with the
prefix ``BLUEGREEN_``, the host's ``env:`` block in hosts.yml, ``.env``,
built-in defaults. Plain key names in the environment are ignored on
purpose: OpenSSL reads ``SSL_CERT_FILE`` and CGI sets ``SERVER_NAME``.

Every value is checked here (one check of values.py per key, named in the
KEYS table of keys.py), before any connection is made, and a bad one is
reported with its key, where it came from, the value and what is allowed.
"""

import difflib
import os
from dataclasses import dataclass, field

from ..errors import BAD_INPUT, ConfigError, Failure
from .env_layers import ENV_FILE_VAR, environ_layer, read_env_file
from .keys import CHECKS, KEY_BY_NAME, KEYS, MULTILINE_KEYS, SECRET_KEYS, global_defaults
from .nginx_values import read_nginx_snippet
from .process_values import read_compose_override
from .values import Invalid
COLOURS = ("blue", "green")


# Settings fields that are not keys; every other field is one row of KEYS
# (tests/unit/test_config.py checks the two agree).
NOT_KEYS = frozenset({"nginx_snippet", "compose_override", "origins"})


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
    keepalive_min_timeout: str  # "auto", "off" or an nginx duration
    client_max_body_size: str  # nginx size text, lower case
    proxy_read_timeout: str  # nginx duration text
    nginx_snippet_file: str
    keep_releases: int
    min_free_disk: int  # bytes
    watch_max_error_rate: float
    watch_min_requests: int
    build_timeout: float  # seconds
    build_on: str  # "host" or "local"
    local_build_dir: str  # absolute, ~ expanded
    pre_switch_timeout: float  # seconds
    clojure_base_image: str
    asset_paths: tuple  # URL path prefixes; () turns bridging off
    maintenance_page_file: str
    maintenance_retry_after: int
    procfile: str  # path in the repository; "" when off (none)
    scale: tuple  # ((type, containers), ...)
    stop_first: tuple  # worker types
    worker_stop_timeout: int
    worker_ready_seconds: int
    volumes: tuple  # compose volume specs
    compose_override_file: str
    hooks_dir: str  # as given: relative to the .env's directory (cli/hooks.py)
    hook_timeout: float  # seconds
    secrets_cmd: str
    allowed_signers: str  # a local file, or ""
    pre_switch_on: str  # "first" or "every": which hosts of a run run PRE_SWITCH_CMD
    # Not keys: what loading found beside the values.
    nginx_snippet: str = ""  # NGINX_SNIPPET_FILE's text, read when the settings load
    compose_override: dict = field(default_factory=dict, compare=False)  # its mapping
    origins: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def ssl(self):
        return bool(self.ssl_cert_file and self.ssl_key_file)

    @property
    def has_app_env(self):
        """Whether the colours get DEPLOY_DIR/app.env (APP_ENV_FILE, SECRETS_CMD)."""
        return bool(self.app_env_file or self.secrets_cmd)

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

    @property
    def access_log_path(self):
        """Where nginx writes this app's requests (the directory must exist before `nginx -t`)."""
        return f"{self.deploy_dir}/logs/access.log"

    def port_of(self, colour):
        return {"blue": self.blue_port, "green": self.green_port}[colour]

    def branch_of(self, colour):
        return {"blue": self.blue_branch, "green": self.green_branch}[colour]

    def public(self):
        """The settings an operator may see (status, history, --json): no secrets."""
        out = {}
        for key in KEYS:
            if key.name in SECRET_KEYS:
                continue
            out[key.name] = getattr(self, key.attribute)
        return out


def other(colour):
    return "green" if colour == "blue" else "blue"


# --- loading ---


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
        if not is_utf8(raw):
            raise ConfigError(key, shown, origin, "allowed: UTF-8 text (the environment "
                              "holds bytes that are not)")
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
            first = seen[typed[key]]
            fail(key, f"allowed: a port no other key uses ({first} from "
                      f"{origins[first]} is {typed[key]} too)")
        seen[typed[key]] = key
    try:
        snippet = read_nginx_snippet(typed["NGINX_SNIPPET_FILE"])
    except Invalid as exc:
        fail("NGINX_SNIPPET_FILE", str(exc))
    try:
        override = read_compose_override(typed["COMPOSE_OVERRIDE_FILE"])
    except Invalid as exc:
        fail("COMPOSE_OVERRIDE_FILE", str(exc))
    return Settings(**{KEY_BY_NAME[k].attribute: v for k, v in typed.items()},
                    nginx_snippet=snippet, compose_override=override, origins=origins)


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


def is_utf8(text):
    """False for text with bytes the locale could not decode (os.environ and
    sys.argv keep them as lone surrogates): they cannot be sent anywhere."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
