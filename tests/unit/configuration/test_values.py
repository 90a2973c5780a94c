"""configuration/values.py: the checks of single values (refs, durations, sizes,
image references, multi-line values), each turning text into a typed value.
"""

import pytest

from support.config_errors import assert_names_everything
from support.plain_settings import make_settings
from tasks.cli.flags import check_flag
from tasks.configuration.values import Invalid, check_branch, check_ref, duration_seconds
from tasks.errors import ConfigError


@pytest.mark.parametrize("repo", [
    "https://github.com/acme/shop.git", "ssh://git@example.com:2222/acme/shop.git",
    "git@github.com:acme/shop.git", "/srv/git/shop.git", "file:///srv/git/shop.git",
    "~/repos/shop",
])
def test_git_repo_forms_that_are_accepted(repo):
    assert make_settings(GIT_REPO=repo, require_repo=True).git_repo == repo


def test_check_flag_names_the_flag():
    with pytest.raises(ConfigError) as err:
        check_flag("--branch", "`reboot`", check_branch)
    assert_names_everything(err.value, "--branch", "`reboot`", ["the command line"])
    assert check_flag("--branch", "release/2024.05", check_branch) == "release/2024.05"


@pytest.mark.parametrize("ref", ["0123abcd", "a" * 40, "v1.2.3", "release/2024-05"])
def test_refs_that_are_accepted(ref):
    assert check_ref(ref) == ref


@pytest.mark.parametrize("ref", ["-x", "HEAD~1", "a..b", "$(id)", "x" * 3 + " y"])
def test_refs_that_are_refused(ref):
    with pytest.raises(Invalid):
        check_ref(ref)


def test_deploy_ssh_key_with_nul_is_refused_without_showing_it():
    secret = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\x00bits\n"
    with pytest.raises(ConfigError) as err:
        make_settings(DEPLOY_SSH_KEY=secret)
    assert "secret" not in str(err.value).replace("DEPLOY_SSH_KEY", "")


def test_multiline_is_allowed_only_for_key_and_known_hosts_text():
    s = make_settings(
        DEPLOY_SSH_KEY="-----BEGIN OPENSSH PRIVATE KEY-----\nAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        DEPLOY_KNOWN_HOSTS="[127.0.0.1]:2222 ssh-ed25519 AAAA\nexample.com ssh-ed25519 BBBB\n")
    assert s.deploy_known_hosts.count("\n") == 2


@pytest.mark.parametrize("value,expected", [
    ("auto", "auto"), ("AUTO", "auto"), ("off", "off"), ("Off", "off"), ("5s", "5s"),
    ("500ms", "500ms"), ("1m", "1m"), ("10", "10"), ("1m30s", "1m30s"), ("0", "0"),
])
def test_keepalive_min_timeout_values(value, expected):
    assert make_settings(KEEPALIVE_MIN_TIMEOUT=value).keepalive_min_timeout == expected


@pytest.mark.parametrize("value,expected", [
    ("10m", "10m"), ("0", "0"), ("512K", "512k"), ("1G", "1g"), ("1048576", "1048576"),
])
def test_client_max_body_size_values(value, expected):
    assert make_settings(CLIENT_MAX_BODY_SIZE=value).client_max_body_size == expected


@pytest.mark.parametrize("value", ["60s", "5m", "1h", "90", "1h30m", "250ms", "2d"])
def test_proxy_read_timeout_values(value):
    assert make_settings(PROXY_READ_TIMEOUT=value).proxy_read_timeout == value


@pytest.mark.parametrize("value,expected", [
    ("2g", 2 * 1024 ** 3), ("500M", 500 * 1024 ** 2), ("64k", 65536), ("0", 0), ("123", 123),
])
def test_min_free_disk_in_bytes(value, expected):
    assert make_settings(MIN_FREE_DISK=value).min_free_disk == expected


@pytest.mark.parametrize("value,expected", [
    ("30m", 1800.0), ("90s", 90.0), ("1h", 3600.0), ("1h30m", 5400.0), ("600", 600.0),
    ("2.5", 2.5),
])
def test_build_timeout_in_seconds(value, expected):
    assert make_settings(BUILD_TIMEOUT=value).build_timeout == expected


def test_duration_seconds():
    assert duration_seconds("1h30m") == 5400 and duration_seconds("500ms") == 0.5
    assert duration_seconds("1d2h3m4s5ms") == 86400 + 7200 + 180 + 4 + 0.005
    for bad in ("", "s", "5 s", "5S", "5s5s", "1s1m", "1.5s", "-1s", "5y"):
        assert duration_seconds(bad) is None, bad


@pytest.mark.parametrize("value", [
    "clojure:temurin-21-tools-deps", "clojure", "bluegreen-test-jvm:bookworm-8da3663af3",
    "registry.example.com:5000/team/clojure:21", "localhost/a__b/c.d-e:tag_1",
    "clojure@sha256:" + "a" * 64, "clojure:21@sha256:" + "0" * 64,
])
def test_clojure_base_image_takes_image_references(value):
    assert make_settings(CLOJURE_BASE_IMAGE=value).clojure_base_image == value


@pytest.mark.parametrize("value,expected", [("10m", 600.0), ("45s", 45.0), ("2", 2.0)])
def test_pre_switch_timeout_reads_durations(value, expected):
    assert make_settings(PRE_SWITCH_TIMEOUT=value).pre_switch_timeout == expected
