"""configuration/settings.py: the layers merged in order, the Settings fields and
derived properties, and every bad value named with its key, value and origin.
"""

import pytest

from support.config_errors import assert_names_everything
from support.plain_settings import make_settings
from tasks.configuration.env_layers import Layer
from tasks.configuration.inventory import parse_inventory
from tasks.configuration.keys import CHECKS
from tasks.configuration.settings import check_all, load_settings, merge_layers, other
from tasks.errors import BAD_INPUT, ConfigError, Failure


GOOD_REPO = "https://example.com/shop.git"
CERT, KEY = "/etc/ssl/shop/cert.pem", "/etc/ssl/shop/key.pem"


def write_env(tmp_path, text, name=".env"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def host_layer(tmp_path, env_yaml, name="prod"):
    """The env: layer of one hosts.yml host, parsed the real way."""
    text = f"hosts:\n  {name}:\n    host: app.example.com\n    env:\n{env_yaml}"
    path = tmp_path / "hosts.yml"
    path.write_text(text)
    return parse_inventory(text, str(path)).hosts[name].env


# --- precedence ---------------------------------------------------------------


def test_defaults_when_nothing_is_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env here
    s = load_settings(environ={}, require_repo=False)
    assert (s.app_name, s.public_port, s.blue_port, s.green_port) == ("app", 8080, 8081, 8082)
    assert s.blue_branch == s.green_branch == "main"
    assert s.deploy_dir == "/srv/app"
    assert s.nginx_file == "/etc/nginx/conf.d/app.conf"
    assert s.server_name == "_" and not s.ssl and s.use_sudo is False
    assert s.health_timeout == 60.0 and s.health_passes == 2 and s.stop_timeout == 10
    assert s.origins["APP_NAME"] == "the built-in default"


def test_each_source_overrides_the_one_below(tmp_path):
    env_file = write_env(tmp_path, "GREEN_BRANCH=from-dotenv\nBLUE_BRANCH=from-dotenv\n"
                         "APP_NAME=from-dotenv\nHEALTH_PATH=/dotenv\n"
                         f"GIT_REPO={GOOD_REPO}\n")
    layer = host_layer(tmp_path, "      GREEN_BRANCH: from-host\n"
                       "      BLUE_BRANCH: from-host\n      APP_NAME: from-host\n")
    environ = {"BLUEGREEN_GREEN_BRANCH": "from-env", "BLUEGREEN_BLUE_BRANCH": "from-env"}
    flags = Layer("the command line (--branch)", {"GREEN_BRANCH": "from-flag"})
    s = load_settings(env_file=env_file, host_layer=layer, flags=flags, environ=environ)
    assert s.health_path == "/dotenv"          # .env over default
    assert s.app_name == "from-host"           # hosts.yml over .env
    assert s.blue_branch == "from-env"         # BLUEGREEN_* over hosts.yml
    assert s.green_branch == "from-flag"       # flag over BLUEGREEN_*
    assert s.server_name == "_"                # default when nobody sets it
    assert env_file in s.origins["HEALTH_PATH"]
    assert "hosts.yml host 'prod'" in s.origins["APP_NAME"]
    assert s.origins["BLUE_BRANCH"] == "the environment (BLUEGREEN_BLUE_BRANCH)"
    assert s.origins["GREEN_BRANCH"] == "the command line (--branch)"
    assert s.origins["SERVER_NAME"] == "the built-in default"


def test_git_repo_is_required_for_tasks_that_deploy(tmp_path):
    env_file = write_env(tmp_path, "")
    with pytest.raises(Failure) as err:
        load_settings(env_file=env_file, environ={})
    assert err.value.code == BAD_INPUT and "GIT_REPO" in str(err.value)
    # render works without it
    assert load_settings(env_file=env_file, environ={}, require_repo=False).git_repo == ""


def test_typed_values_and_derived_properties():
    s = make_settings(APP_NAME="shop", SSL_CERT_FILE=CERT, SSL_KEY_FILE=KEY,
                      SERVER_NAME="  shop.example.com   www.shop.example.com ",
                      USE_SUDO="Yes", HEALTH_TIMEOUT="2.5", DEPLOY_DIR="/srv/shop/",
                      NGINX_CONF_DIR="/etc/nginx/sites-enabled/",
                      BIND_ADDRESS="::1", STOP_TIMEOUT="0")
    assert s.ssl and s.use_sudo is True and s.health_timeout == 2.5
    assert s.server_name == "shop.example.com www.shop.example.com"
    assert s.host_header == "shop.example.com"
    assert s.deploy_dir == "/srv/shop"
    assert s.nginx_file == "/etc/nginx/sites-enabled/shop.conf"
    assert s.upstream_address == "[::1]" and s.stop_timeout == 0
    assert s.port_of("blue") == 8081 and s.port_of("green") == 8082
    assert s.branch_of("green") == "main" and other("blue") == "green"
    assert make_settings(DOCKER_NETWORK="host", BIND_ADDRESS="10.0.0.5").upstream_address \
        == "127.0.0.1"
    assert make_settings(BIND_ADDRESS="0.0.0.0").upstream_address == "127.0.0.1"
    assert make_settings(SERVER_NAME="*.example.com").host_header == "localhost"


def test_ssl_port_may_equal_another_port_while_ssl_is_off():
    s = make_settings(SSL_PORT="8081")
    assert not s.ssl and s.ssl_port == 8081


def test_public_settings_never_show_the_deploy_key():
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecretbits\n-----END OPENSSH PRIVATE KEY-----"
    s = make_settings(DEPLOY_SSH_KEY=key)
    assert s.deploy_ssh_key == key
    public = s.public()
    assert "DEPLOY_SSH_KEY" not in public and "secretbits" not in repr(public)
    assert "secretbits" not in repr(s)
    assert public["APP_NAME"] == "app" and public["BLUE_PORT"] == 8081


# --- validation: one bad value per rule ------------------------------------------

# (id, other values needed, bad key, bad value, words of what is allowed)
BAD_VALUES = [
    ("branch-semicolon", {}, "BLUE_BRANCH", "main;rm -rf /", "git branch"),
    ("branch-dollar-paren", {}, "GREEN_BRANCH", "$(id)", "git branch"),
    ("branch-backtick", {}, "BLUE_BRANCH", "`id`", "git branch"),
    ("branch-leading-dash", {}, "GREEN_BRANCH", "-main", "not starting with '-'"),
    ("branch-dotdot", {}, "BLUE_BRANCH", "feature/../main", "'..'"),
    ("branch-dot-lock", {}, "GREEN_BRANCH", "main.lock", "'.lock'"),
    ("branch-space", {}, "BLUE_BRANCH", "my branch", "git branch"),
    ("app-name-slash", {}, "APP_NAME", "shop/api", "lower-case letters"),
    ("app-name-upper", {}, "APP_NAME", "Shop", "lower-case letters"),
    ("app-name-too-long", {}, "APP_NAME", "a" * 41, "at most 40"),
    ("app-name-leading-dash", {}, "APP_NAME", "-shop", "starting with a letter or digit"),
    ("blue-port-is-public", {}, "BLUE_PORT", "8080", "no other key uses"),
    ("green-port-is-blue", {}, "GREEN_PORT", "8081", "no other key uses"),
    ("ssl-port-is-green", {"SSL_CERT_FILE": CERT, "SSL_KEY_FILE": KEY},
     "SSL_PORT", "8082", "no other key uses"),
    ("ssl-port-is-public", {"SSL_CERT_FILE": CERT, "SSL_KEY_FILE": KEY},
     "SSL_PORT", "8080", "no other key uses"),
    ("port-zero", {}, "APP_PORT", "0", "1 to 65535"),
    ("port-too-big", {}, "PUBLIC_PORT", "70000", "1 to 65535"),
    ("port-not-a-number", {}, "BLUE_PORT", "abc", "1 to 65535"),
    ("port-negative", {}, "GREEN_PORT", "-1", "1 to 65535"),
    ("port-superscript-digit", {}, "SSL_PORT", "\u00b2", "1 to 65535"),
    ("server-name-semicolon", {}, "SERVER_NAME", "example.com;", "host names"),
    ("server-name-brace", {}, "SERVER_NAME", "example.com {", "host names"),
    ("server-name-empty", {}, "SERVER_NAME", "", "host names"),
    ("deploy-dir-relative", {}, "DEPLOY_DIR", "srv/shop", "absolute path"),
    ("nginx-conf-dir-relative", {}, "NGINX_CONF_DIR", "nginx/conf.d", "absolute path"),
    ("deploy-dir-root", {}, "DEPLOY_DIR", "/", "of this app's own"),
    ("deploy-dir-srv", {}, "DEPLOY_DIR", "/srv/", "of this app's own"),
    ("deploy-dir-dotdot", {}, "DEPLOY_DIR", "/srv/../etc", "without '..'"),
    ("deploy-dir-space", {}, "DEPLOY_DIR", "/srv/my app", "absolute path"),
    ("app-cmd-newline", {}, "APP_CMD", "serve\nrm -rf /", "single line"),
    ("app-cmd-nul", {}, "APP_CMD", "serve\x00", "NUL"),
    ("pre-switch-cr", {}, "PRE_SWITCH_CMD", "migrate\rrm -rf /", "single line"),
    ("health-path-relative", {}, "HEALTH_PATH", "healthz", "starting with '/'"),
    ("health-path-space", {}, "HEALTH_PATH", "/health check", "without spaces"),
    ("health-timeout-negative", {}, "HEALTH_TIMEOUT", "-5", "more than 0"),
    ("health-timeout-zero", {}, "HEALTH_TIMEOUT", "0", "more than 0"),
    ("health-timeout-nan", {}, "HEALTH_TIMEOUT", "nan", "more than 0"),
    ("health-interval-inf", {}, "HEALTH_INTERVAL", "inf", "more than 0"),
    ("health-interval-word", {}, "HEALTH_INTERVAL", "soon", "more than 0"),
    ("health-passes-zero", {}, "HEALTH_PASSES", "0", "whole number of 1 or more"),
    ("health-passes-fraction", {}, "HEALTH_PASSES", "1.5", "whole number of 1 or more"),
    ("stop-timeout-negative", {}, "STOP_TIMEOUT", "-1", "whole seconds, 0 or more"),
    ("drain-timeout-word", {}, "DRAIN_TIMEOUT", "long", "whole seconds, 0 or more"),
    ("connect-timeout-zero", {}, "CONNECT_TIMEOUT", "0", "more than 0"),
    ("docker-network-overlay", {}, "DOCKER_NETWORK", "overlay", "'bridge' or 'host'"),
    ("bind-address-name", {}, "BIND_ADDRESS", "localhost", "IP address"),
    ("use-sudo-maybe", {}, "USE_SUDO", "maybe", "true or false"),
    ("only-ssl-cert", {}, "SSL_CERT_FILE", CERT, "SSL_KEY_FILE must be set too"),
    ("only-ssl-key", {}, "SSL_KEY_FILE", KEY, "SSL_CERT_FILE must be set too"),
    ("ssl-cert-relative", {"SSL_KEY_FILE": KEY}, "SSL_CERT_FILE", "cert.pem", "absolute path"),
    ("git-repo-space", {}, "GIT_REPO", "https://example.com/my repo.git", "no spaces"),
    ("git-repo-leading-dash", {}, "GIT_REPO", "--upload-pack=touch", "a URL"),
    ("git-repo-quote", {}, "GIT_REPO", "git@example.com:'x'", "quotes"),
    ("nginx-test-cmd-empty", {}, "NGINX_TEST_CMD", "  ", "cannot be empty"),
    ("compose-cmd-empty", {}, "COMPOSE_CMD", "", "cannot be empty"),
    ("app-env-file-missing", {}, "APP_ENV_FILE", "/nonexistent/app.env", "readable file"),
    ("keepalive-banana", {}, "KEEPALIVE_MIN_TIMEOUT", "banana", "auto, off, or an nginx duration"),
    ("keepalive-negative", {}, "KEEPALIVE_MIN_TIMEOUT", "-1", "auto, off, or an nginx duration"),
    ("keepalive-space", {}, "KEEPALIVE_MIN_TIMEOUT", "5 s", "no spaces"),
    ("keepalive-units-backwards", {}, "KEEPALIVE_MIN_TIMEOUT", "5s1m", "largest first"),
    ("keep-releases-zero", {}, "KEEP_RELEASES", "0", "whole number of 1 or more"),
    ("keep-releases-negative", {}, "KEEP_RELEASES", "-3", "whole number of 1 or more"),
    ("body-size-mb", {}, "CLIENT_MAX_BODY_SIZE", "10 mb", "optional k, m or g"),
    ("body-size-unit-only", {}, "CLIENT_MAX_BODY_SIZE", "m", "optional k, m or g"),
    ("body-size-negative", {}, "CLIENT_MAX_BODY_SIZE", "-1", "optional k, m or g"),
    ("proxy-read-timeout-soon", {}, "PROXY_READ_TIMEOUT", "soon", "nginx duration"),
    ("proxy-read-timeout-zero", {}, "PROXY_READ_TIMEOUT", "0s", "more than 0"),
    ("proxy-read-timeout-fraction", {}, "PROXY_READ_TIMEOUT", "1.5s", "nginx duration"),
    ("snippet-missing", {}, "NGINX_SNIPPET_FILE", "/nonexistent/extra.conf", "readable file"),
    ("min-free-disk-tb", {}, "MIN_FREE_DISK", "1t", "optional k, m or g"),
    ("min-free-disk-word", {}, "MIN_FREE_DISK", "plenty", "optional k, m or g"),
    ("error-rate-two", {}, "WATCH_MAX_ERROR_RATE", "2", "between 0 and 1"),
    ("error-rate-zero", {}, "WATCH_MAX_ERROR_RATE", "0", "between 0 and 1"),
    ("error-rate-one", {}, "WATCH_MAX_ERROR_RATE", "1", "between 0 and 1"),
    ("error-rate-percent", {}, "WATCH_MAX_ERROR_RATE", "5%", "between 0 and 1"),
    ("error-rate-nan", {}, "WATCH_MAX_ERROR_RATE", "nan", "between 0 and 1"),
    ("min-requests-lots", {}, "WATCH_MIN_REQUESTS", "lots", "whole number of 1 or more"),
    ("min-requests-zero", {}, "WATCH_MIN_REQUESTS", "0", "whole number of 1 or more"),
    ("build-timeout-zero", {}, "BUILD_TIMEOUT", "0", "more than 0"),
    ("build-timeout-days", {}, "BUILD_TIMEOUT", "1d", "a duration such as 30m"),
    ("build-timeout-word", {}, "BUILD_TIMEOUT", "forever", "a duration such as 30m"),
    ("pre-switch-timeout-zero", {}, "PRE_SWITCH_TIMEOUT", "0", "more than 0"),
    ("pre-switch-timeout-word", {}, "PRE_SWITCH_TIMEOUT", "never", "a duration such as 30m"),
    ("base-image-upper", {}, "CLOJURE_BASE_IMAGE", "Clojure:21", "Docker image reference"),
    ("base-image-space", {}, "CLOJURE_BASE_IMAGE", "clojure:21 AS x", "Docker image reference"),
    ("base-image-bad-digest", {}, "CLOJURE_BASE_IMAGE", "clojure@sha256:xyz",
     "Docker image reference"),
]


def bad_case_ids():
    return [case[0] for case in BAD_VALUES]


@pytest.mark.parametrize("case", BAD_VALUES, ids=bad_case_ids())
def test_bad_value_in_dotenv_names_key_file_value_and_rule(case, tmp_path):
    _, others, key, value, allowed = case
    values = dict(others, **{key: value})
    # Writing NUL or a raw newline into a file is not how .env works;
    # feed those through the same layer the parsed file would produce.
    env_file = str(tmp_path / ".env")
    layer = Layer(f".env ({env_file})", values)
    with pytest.raises(ConfigError) as err:
        check_all(merge_layers([layer]), require_repo=False)
    assert_names_everything(err.value, key, value, [env_file])
    assert allowed in str(err.value), str(err.value)


def test_there_are_at_least_twenty_kinds_of_bad_value():
    assert len({case[2] for case in BAD_VALUES}) >= 20
    assert len(BAD_VALUES) >= 40


@pytest.mark.parametrize("key,value", [
    ("BLUE_BRANCH", "main;rm -rf /"), ("APP_NAME", "Shop"), ("PUBLIC_PORT", "70000"),
    ("SERVER_NAME", "a;b"), ("HEALTH_TIMEOUT", "nan"), ("USE_SUDO", "maybe"),
])
def test_bad_value_from_a_real_dotenv_file(tmp_path, key, value):
    env_file = write_env(tmp_path, f"{key}='{value}'\n")
    with pytest.raises(ConfigError) as err:
        load_settings(env_file=env_file, environ={}, require_repo=False)
    assert_names_everything(err.value, key, value, [".env", env_file])


@pytest.mark.parametrize("key,value", [
    ("GREEN_BRANCH", "$(id)"), ("DEPLOY_DIR", "/"), ("BIND_ADDRESS", "localhost"),
    ("DOCKER_NETWORK", "overlay"), ("HEALTH_PASSES", "1.5"),
])
def test_bad_value_from_the_environment_names_the_variable(tmp_path, key, value):
    env_file = write_env(tmp_path, "")
    with pytest.raises(ConfigError) as err:
        load_settings(env_file=env_file, environ={f"BLUEGREEN_{key}": value},
                          require_repo=False)
    assert_names_everything(err.value, key, value, [f"BLUEGREEN_{key}", "environment"])


def test_bad_value_from_hosts_yml_names_the_host_and_file(tmp_path):
    layer = host_layer(tmp_path, '      SERVER_NAME: "shop.example.com;"\n'
                       '      APP_CMD: "serve\\0"\n', name="staging")
    env_file = write_env(tmp_path, "")
    with pytest.raises(ConfigError) as err:
        load_settings(env_file=env_file, host_layer=layer, environ={},
                          require_repo=False)
    message = str(err.value)
    # dict order: APP_CMD (NUL) is checked before SERVER_NAME
    assert_names_everything(err.value, "APP_CMD", "serve\x00",
                            ["hosts.yml", "'staging'", str(tmp_path / "hosts.yml")])
    assert "NUL" in message


def test_bad_flag_layer_names_the_command_line(tmp_path):
    env_file = write_env(tmp_path, "")
    flags = Layer("the command line (--branch)", {"BLUE_BRANCH": "..;id"})
    with pytest.raises(ConfigError) as err:
        load_settings(env_file=env_file, flags=flags, environ={}, require_repo=False)
    assert_names_everything(err.value, "BLUE_BRANCH", "..;id", ["the command line", "--branch"])


def test_deploy_ssh_key_value_never_appears(tmp_path):
    secret = "hunter2-this-is-secret-material"
    with pytest.raises(ConfigError) as err:
        load_settings(env_file=write_env(tmp_path, ""), require_repo=False,
                          environ={"BLUEGREEN_DEPLOY_SSH_KEY": secret})
    message = str(err.value)
    assert err.value.code == BAD_INPUT
    assert "DEPLOY_SSH_KEY" in message and "BLUEGREEN_DEPLOY_SSH_KEY" in message
    assert "PRIVATE KEY" in message  # what is allowed
    assert secret not in message and secret not in repr(err.value.value)
    assert secret not in repr(err.value.args)
    assert "<hidden>" in message


@pytest.mark.parametrize("source", ["dotenv", "hosts", "environ"])
def test_unknown_key_suggests_the_nearest(tmp_path, source):
    env_file = write_env(tmp_path, "BLUE_BRANC=main\n" if source == "dotenv" else "")
    layer = host_layer(tmp_path, "      BLUE_BRANC: main\n") if source == "hosts" else None
    environ = {"BLUEGREEN_BLUE_BRANC": "main"} if source == "environ" else {}
    with pytest.raises(Failure) as err:
        load_settings(env_file=env_file, host_layer=layer, environ=environ,
                          require_repo=False)
    message = str(err.value)
    assert err.value.code == BAD_INPUT
    assert "unknown key BLUE_BRANC" in message
    assert "did you mean BLUE_BRANCH?" in message
    where = {"dotenv": env_file, "hosts": "hosts.yml host 'prod'",
             "environ": "BLUEGREEN_BLUE_BRANC"}[source]
    assert where in message


def test_unknown_key_with_no_near_match_points_at_the_example(tmp_path):
    with pytest.raises(Failure) as err:
        load_settings(env_file=write_env(tmp_path, "FROBNICATE=1\n"), environ={},
                          require_repo=False)
    assert "unknown key FROBNICATE" in str(err.value)
    assert ".env.example" in str(err.value)


# --- the nginx, release and watch keys -------------------------------------------


def test_defaults_of_the_nginx_release_and_watch_keys():
    s = make_settings()
    assert s.keepalive_min_timeout == "auto"
    assert s.client_max_body_size == "10m" and s.proxy_read_timeout == "60s"
    assert s.nginx_snippet_file == "" and s.nginx_snippet == ""
    assert s.keep_releases == 5 and s.min_free_disk == 2 * 1024 ** 3
    assert s.watch_max_error_rate == 0.05 and s.watch_min_requests == 20
    assert s.build_timeout == 1800.0


def test_watch_and_release_numbers():
    s = make_settings(WATCH_MAX_ERROR_RATE="0.2", WATCH_MIN_REQUESTS="1", KEEP_RELEASES="1")
    assert (s.watch_max_error_rate, s.watch_min_requests, s.keep_releases) == (0.2, 1, 1)


def test_new_release_keys_have_their_defaults():
    s = make_settings()
    assert s.pre_switch_timeout == 600.0
    assert s.clojure_base_image == "clojure:temurin-21-tools-deps"


@pytest.mark.parametrize("key, value, seconds", [
    ("HEALTH_TIMEOUT", "2m", 120.0), ("HEALTH_INTERVAL", "0.5", 0.5),
    ("STOP_TIMEOUT", "90s", 90), ("DRAIN_TIMEOUT", "1m", 60),
    ("CONNECT_TIMEOUT", "15s", 15.0), ("MAINTENANCE_RETRY_AFTER", "2m", 120),
    ("WORKER_STOP_TIMEOUT", "2m", 120), ("WORKER_READY_SECONDS", "10s", 10),
    ("HOOK_TIMEOUT", "90s", 90.0)])
def test_every_seconds_key_takes_the_duration_syntax(key, value, seconds):
    assert CHECKS[key](value) == seconds
