"""The configuration keys: one row each, with its default, its check and what it means.

Defaults, checks, the docs' key table (docs/configuration.md) and
.env.example are all read from KEYS (tests/unit/test_config.py holds them
together); settings.py merges the layers and checks every value with the
row's check.
"""

from dataclasses import dataclass

from .durations import (check_non_negative_seconds, check_positive_seconds,
                        check_positive_whole_seconds)
from .process_values import (check_compose_override_file, check_procfile, check_scale,
                             check_stop_first, check_volumes)
from .nginx_values import check_asset_paths, check_maintenance_page_file, check_nginx_snippet_file
from .values import (check_abs_path, check_app_name, check_bool, check_branch, check_build_on,
                     check_command, check_deploy_dir, check_fraction, check_git_repo,
                     check_health_path, check_image_ref, check_ip, check_keepalive_min_timeout,
                     check_known_hosts_text, check_local_dir, check_local_file, check_local_path,
                     check_network, check_nginx_duration, check_nginx_size,
                     check_optional_abs_path, check_optional_command, check_port,
                     check_positive_int, check_pre_switch_on, check_private_key,
                     check_server_name, check_size_bytes, check_timeout_seconds)


# Values that must never appear in output, errors or history.
SECRET_KEYS = frozenset({"DEPLOY_SSH_KEY"})
# Values that are text blocks by nature; every other value is one line.
MULTILINE_KEYS = frozenset({"DEPLOY_SSH_KEY", "DEPLOY_KNOWN_HOSTS"})


@dataclass(frozen=True)
class Key:
    """One configuration key: its name, built-in default, check and meaning."""

    name: str
    default: str  # as written in .env
    check: object  # text -> typed value (the Settings attribute); raises Invalid
    meaning: str  # one line, for an operator
    shown: str = None  # the default as docs/configuration.md shows it, when not the value itself
    example: str = None  # what .env.example sets, when not the default

    @property
    def attribute(self):
        """The Settings attribute that holds the checked value."""
        return self.name.lower()

    def documented_default(self):
        """The default column of docs/configuration.md's key table."""
        if self.shown:
            return self.shown
        return f"`{self.default}`" if self.default else "empty"


def _optional(check):
    return lambda v: check(v) if v else ""


KEYS = (
    # the seed's eight keys first
    Key("APP_CMD", "", check_optional_command,
        "command the container runs; empty keeps the image's own CMD"),
    Key("APP_PORT", "8080", check_port, "port the app listens on inside its container"),
    Key("BLUE_BRANCH", "main", check_branch, "branch blue starts from"),
    Key("GREEN_BRANCH", "main", check_branch, "branch green starts from"),
    Key("GIT_REPO", "", _optional(check_git_repo),
        "what the host clones: a URL, user@host:path or a path on the host",
        shown="required", example="https://github.com/example/app.git"),
    Key("SERVER_NAME", "_", check_server_name, "nginx server_name: _ or host names"),
    Key("SSL_CERT_FILE", "", check_optional_abs_path, "certificate path on the host"),
    Key("SSL_KEY_FILE", "", check_optional_abs_path, "private key path on the host"),
    Key("APP_NAME", "app", check_app_name,
        "names the deploy dir, compose project and nginx file"),
    Key("PUBLIC_PORT", "8080", check_port, "port nginx listens on for clients"),
    Key("BLUE_PORT", "8081", check_port, "host port of blue"),
    Key("GREEN_PORT", "8082", check_port, "host port of green"),
    Key("BIND_ADDRESS", "127.0.0.1", check_ip, "where the colour ports are published"),
    Key("DOCKER_NETWORK", "bridge", check_network, "bridge or host networking"),
    Key("SSL_PORT", "443", check_port, "HTTPS port"),
    Key("DEPLOY_DIR", "", _optional(check_deploy_dir),
        "everything the tool keeps on the host for this app",
        shown="`/srv/<APP_NAME>`"),
    Key("HEALTH_PATH", "/", check_health_path, "path probed on the new colour"),
    Key("HEALTH_TIMEOUT", "60", check_positive_seconds,
        "seconds before a release is abandoned"),
    Key("HEALTH_INTERVAL", "1", check_positive_seconds, "seconds between probes"),
    Key("HEALTH_PASSES", "2", check_positive_int, "good answers needed in a row"),
    Key("NGINX_CONF_DIR", "/etc/nginx/conf.d", check_abs_path,
        "where <APP_NAME>.conf goes"),
    Key("NGINX_TEST_CMD", "nginx -t", check_command, "run before every reload"),
    Key("NGINX_RELOAD_CMD", "nginx -s reload", check_command, "the graceful reload"),
    Key("COMPOSE_CMD", "docker compose", check_command, "Docker Compose v2"),
    Key("APP_ENV_FILE", "", check_local_file,
        "local file with the app's runtime secrets"),
    Key("USE_SUDO", "false", check_bool, "run nginx and files outside DEPLOY_DIR with sudo"),
    Key("KNOWN_HOSTS", "~/.ssh/known_hosts", check_local_path,
        "host keys the SSH connection is checked against"),
    Key("DEPLOY_SSH_KEY", "", check_private_key, "private key text, for CI jobs"),
    Key("DEPLOY_KNOWN_HOSTS", "", check_known_hosts_text, "known_hosts lines, for CI jobs"),
    Key("PRE_SWITCH_CMD", "", check_optional_command,
        "run in the new colour's container before the switch"),
    Key("STOP_TIMEOUT", "10", check_non_negative_seconds, "seconds a container gets to stop"),
    Key("CONNECT_TIMEOUT", "10", check_positive_seconds,
        "seconds to wait for the SSH connection"),
    Key("DRAIN_TIMEOUT", "30", check_non_negative_seconds,
        "seconds old nginx workers get before a colour is stopped"),
    Key("KEEPALIVE_MIN_TIMEOUT", "auto", check_keepalive_min_timeout,
        "nginx keepalive_min_timeout: auto (5s on nginx 1.27.4+), a duration, or off"),
    Key("CLIENT_MAX_BODY_SIZE", "10m", check_nginx_size,
        "nginx client_max_body_size for the app (0 = unlimited)"),
    Key("PROXY_READ_TIMEOUT", "60s", check_nginx_duration,
        "nginx proxy_read_timeout and proxy_send_timeout for the app"),
    Key("NGINX_SNIPPET_FILE", "", check_nginx_snippet_file,
        "local file whose content goes inside the app's server block"),
    Key("KEEP_RELEASES", "5", check_positive_int, "release images kept per app"),
    Key("MIN_FREE_DISK", "2g", check_size_bytes,
        "check fails below this much free space for the app's images"),
    Key("WATCH_MAX_ERROR_RATE", "0.05", check_fraction,
        "share of 5xx from the new colour that makes --watch revert"),
    Key("WATCH_MIN_REQUESTS", "20", check_positive_int,
        "requests to the new colour needed before --watch judges"),
    Key("BUILD_TIMEOUT", "30m", check_timeout_seconds,
        "bound on check-out, build and start"),
    Key("BUILD_ON", "host", check_build_on,
        "host: the host checks out and builds; local: this machine builds and ships the image"),
    Key("LOCAL_BUILD_DIR", "~/.cache/bluegreen", check_local_dir,
        "local checkouts for BUILD_ON=local, one per app"),
    Key("PRE_SWITCH_TIMEOUT", "10m", check_timeout_seconds,
        "bound on PRE_SWITCH_CMD; past it the release aborts like a failed migration"),
    Key("CLOJURE_BASE_IMAGE", "clojure:temurin-21-tools-deps", check_image_ref,
        "FROM of the Dockerfile rendered for repositories without one"),
    Key("ASSET_PATHS", "/assets/ /static/ /packs/ /_next/static/", check_asset_paths,
        "path prefixes whose 404 on the live colour is asked of the other colour"),
    Key("MAINTENANCE_PAGE_FILE", "", check_maintenance_page_file,
        "local HTML file served with 503 while maintenance is on"),
    Key("MAINTENANCE_RETRY_AFTER", "60", check_positive_whole_seconds,
        "seconds in the Retry-After header of the maintenance answer"),
    Key("PROCFILE", "Procfile", check_procfile,
        "path of the app's Procfile in its repository; none turns it off"),
    Key("SCALE", "", check_scale, "containers per worker type: worker=2 clock=1"),
    Key("STOP_FIRST", "clock scheduler beat cron", check_stop_first,
        "worker types stopped in the old colour before they start in the new one"),
    Key("WORKER_STOP_TIMEOUT", "30", check_non_negative_seconds,
        "seconds an old worker gets after SIGTERM to finish its job"),
    Key("WORKER_READY_SECONDS", "5", check_non_negative_seconds,
        "seconds a new worker must stay up (or turn healthy) before the old colour's stop"),
    Key("VOLUMES", "", check_volumes,
        "compose volumes SOURCE:TARGET[:ro], space-separated, in every colour and process"),
    Key("COMPOSE_OVERRIDE_FILE", "", check_compose_override_file,
        "local YAML merged into every service of the app (mem_limit, logging, ...)"),
    Key("HOOKS_DIR", ".bluegreen/hooks", check_local_path,
        "local directory (beside .env) of hook executables: pre-TASK, post-TASK, failed"),
    Key("HOOK_TIMEOUT", "60", check_timeout_seconds,
        "seconds a hook (and SECRETS_CMD) may run"),
    Key("SECRETS_CMD", "", check_optional_command,
        "local command whose output (dotenv lines) is merged over APP_ENV_FILE into app.env; "
        "never printed or written to a local file"),
    Key("ALLOWED_SIGNERS", "", check_local_file,
        "local SSH allowed_signers file: only commits signed by a key in it are released"),
    Key("PRE_SWITCH_ON", "first", check_pre_switch_on,
        "with several hosts in one run: first runs PRE_SWITCH_CMD on the first host only; "
        "every on each host"),
)
KEY_BY_NAME = {key.name: key for key in KEYS}
CHECKS = {key.name: key.check for key in KEYS}


def global_defaults():
    """Every key with its built-in default, in the table's order."""
    return {key.name: key.default for key in KEYS}
