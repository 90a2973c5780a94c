"""configuration/env_layers.py: the env file and the process environment as
layers (BLUEGREEN_ prefix, dotenv quoting, nothing leaked into os.environ).
"""

import os

import pytest

from tasks.configuration.env_layers import ENV_FILE_VAR, ENV_PREFIX, HOSTS_FILE_VAR
from tasks.configuration.settings import load_settings
from tasks.errors import BAD_INPUT, Failure


def write_env(tmp_path, text, name=".env"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_plain_names_in_the_environment_are_ignored(tmp_path):
    env_file = write_env(tmp_path, "")
    # OpenSSL's SSL_CERT_FILE is exported on this very machine; CGI sets SERVER_NAME.
    environ = {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
               "SERVER_NAME": "cgi;host", "APP_NAME": "Not Valid", "BLUE_PORT": "1"}
    s = load_settings(env_file=env_file, environ=environ, require_repo=False)
    assert s.ssl_cert_file == "" and not s.ssl
    assert s.server_name == "_" and s.app_name == "app" and s.blue_port == 8081


def test_process_environment_is_read_when_none_is_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("SERVER_NAME", "{bad")
    monkeypatch.setenv("BLUEGREEN_APP_NAME", "shop")
    s = load_settings(require_repo=False)
    assert s.app_name == "shop" and not s.ssl and s.server_name == "_"


def test_dotenv_is_not_leaked_into_os_environ(tmp_path):
    marker = "leakcheck-7d1f"
    env_file = write_env(tmp_path, f"APP_NAME={marker}\nAPP_CMD=echo {marker}\n")
    before = dict(os.environ)
    s = load_settings(env_file=env_file, environ={}, require_repo=False)
    assert s.app_name == marker
    assert dict(os.environ) == before
    assert marker not in " ".join(os.environ.values())


def test_dotenv_values_are_taken_literally(tmp_path, monkeypatch):
    # ${VAR} must reach the container as written, and must not pull this
    # machine's plain environment (SSL_CERT_FILE) into the settings.
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    env_file = write_env(tmp_path, "APP_CMD=sh -c 'exec app --port ${PORT}'\n"
                         "PRE_SWITCH_CMD=migrate ${SSL_CERT_FILE}\n")
    s = load_settings(env_file=env_file, environ={}, require_repo=False)
    assert s.app_cmd == "sh -c 'exec app --port ${PORT}'"
    assert s.pre_switch_cmd == "migrate ${SSL_CERT_FILE}"


def test_dotenv_quoting_and_comments(tmp_path):
    env_file = write_env(tmp_path, '# a comment\nNGINX_TEST_CMD="nginx -c /x/n.conf -t"\n'
                         "SERVER_NAME='a.example.com b.example.com'\n"
                         "HEALTH_PATH=/healthz # trailing comment\nAPP_CMD=\n")
    s = load_settings(env_file=env_file, environ={}, require_repo=False)
    assert s.nginx_test_cmd == "nginx -c /x/n.conf -t"
    assert s.server_name == "a.example.com b.example.com"
    assert s.health_path == "/healthz" and s.app_cmd == ""


def test_env_file_named_by_bluegreen_env_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_env(tmp_path, "APP_NAME=from-dot-env\n")
    other = write_env(tmp_path, "APP_NAME=shop\n", name="shop.env")
    s = load_settings(environ={ENV_FILE_VAR: other,
                                   HOSTS_FILE_VAR: "/not/a/key"}, require_repo=False)
    assert s.app_name == "shop"
    assert other in s.origins["APP_NAME"]


def test_dot_env_in_the_working_directory_is_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_env(tmp_path, "APP_NAME=here\n")
    assert load_settings(environ={}, require_repo=False).app_name == "here"


def test_a_named_env_file_that_is_missing_stops(tmp_path):
    missing = str(tmp_path / "typo.env")
    with pytest.raises(Failure) as err:
        load_settings(environ={ENV_FILE_VAR: missing}, require_repo=False)
    assert err.value.code == BAD_INPUT
    assert ENV_FILE_VAR in str(err.value) and missing in str(err.value)


def test_env_file_that_is_a_directory_stops(tmp_path):
    with pytest.raises(Failure) as err:
        load_settings(env_file=str(tmp_path), environ={}, require_repo=False)
    assert err.value.code == BAD_INPUT and str(tmp_path) in str(err.value)
