"""hosts.yml: aliases, default_hosts, plain SSH destinations, and mistakes."""

import os

import pytest

from support.checkout import REPO
from tasks.configuration.env_layers import HOSTS_FILE_VAR
from tasks.configuration.inventory import HostEntry, load_inventory, parse_inventory
from tasks.configuration.settings import check_all, merge_layers
from tasks.errors import BAD_INPUT, Failure

HOSTS = """\
hosts:
  prod:
    host: app.example.com
    user: deploy
    port: 2222
    identity_file: ~/.ssh/deploy_ed25519
    known_hosts: /etc/bluegreen/known_hosts
    env:
      SERVER_NAME: app.example.com
      USE_SUDO: true
      HEALTH_PASSES: 3
  staging:
    host: 10.0.0.7
  v6:
    host: "[2001:db8::7]"
default_hosts: [prod]
"""


def parse(text, path="/etc/bluegreen/hosts.yml"):
    return parse_inventory(text, path)


def refused(text, path="/etc/bluegreen/hosts.yml"):
    with pytest.raises(Failure) as err:
        parse(text, path)
    assert err.value.code == BAD_INPUT
    assert path in str(err.value)
    return str(err.value)


def test_aliases_resolve_to_their_entries():
    inv = parse(HOSTS)
    prod = inv.resolve("prod")
    assert (prod.name, prod.host, prod.user, prod.port) == ("prod", "app.example.com", "deploy", 2222)
    assert prod.identity_file == os.path.expanduser("~/.ssh/deploy_ed25519")
    assert not prod.identity_file.startswith("~")
    assert prod.known_hosts == "/etc/bluegreen/known_hosts"
    staging = inv.resolve("staging")
    assert (staging.host, staging.user, staging.port) == ("10.0.0.7", None, None)
    assert inv.resolve("v6").host == "2001:db8::7"


def test_env_block_becomes_a_layer_named_after_the_host():
    prod = parse(HOSTS).resolve("prod")
    assert prod.env.values == {"SERVER_NAME": "app.example.com", "USE_SUDO": "true",
                               "HEALTH_PASSES": "3"}
    assert "hosts.yml host 'prod'" in prod.env.origin
    assert "/etc/bluegreen/hosts.yml" in prod.env.origin
    s = check_all(merge_layers([prod.env]), require_repo=False)
    assert s.server_name == "app.example.com" and s.use_sudo is True and s.health_passes == 3


def test_default_hosts_are_used_without_h():
    inv = parse(HOSTS)
    assert [e.name for e in inv.select([])] == ["prod"]
    assert [e.name for e in inv.select(None)] == ["prod"]
    assert [e.name for e in inv.select(["staging", " prod "])] == ["staging", "prod"]


def test_default_hosts_may_be_a_single_name():
    inv = parse("hosts:\n  a:\n    host: a.example.com\ndefault_hosts: a\n")
    assert inv.default_hosts == ["a"]


def test_no_host_at_all_says_how_to_name_one():
    inv = parse("hosts:\n  a:\n    host: a.example.com\n", path="hosts.yml")
    for cli in ([], None, ["", " "]):
        with pytest.raises(Failure) as err:
            inv.select(cli)
        assert err.value.code == BAD_INPUT == 2
        message = str(err.value)
        assert "no host given" in message
        assert "-H" in message and "default_hosts" in message and "hosts.yml" in message


@pytest.mark.parametrize("name,host,user,port", [
    ("app.example.com", "app.example.com", None, None),
    ("deploy@app.example.com", "app.example.com", "deploy", None),
    ("deploy@app.example.com:2222", "app.example.com", "deploy", 2222),
    ("10.0.0.9:22", "10.0.0.9", None, 22),
    ("[::1]:2200", "::1", None, 2200),
    ("root@[2001:db8::1]", "2001:db8::1", "root", None),
    ("my_ssh_alias", "my_ssh_alias", None, None),
])
def test_a_name_not_in_hosts_yml_is_an_ssh_destination(name, host, user, port):
    entry = parse(HOSTS).resolve(name)
    assert isinstance(entry, HostEntry)
    assert (entry.name, entry.host, entry.user, entry.port) == (name, host, user, port)
    assert entry.env is None


@pytest.mark.parametrize("name", [
    "host name", "app.example.com;id", "-oProxyCommand=id", "user@@host", "$(id)",
    "host:port", "a@b@c",
])
def test_a_name_that_is_no_destination_is_refused(name):
    with pytest.raises(Failure) as err:
        parse(HOSTS, path="hosts.yml").resolve(name)
    assert err.value.code == BAD_INPUT
    assert repr(name) in str(err.value) and "[user@]host[:port]" in str(err.value)


@pytest.mark.parametrize("port", ["0", "70000", "99999"])
def test_a_destination_with_a_bad_port_is_refused(port):
    with pytest.raises(Failure) as err:
        parse(HOSTS).resolve(f"app.example.com:{port}")
    assert err.value.code == BAD_INPUT and port in str(err.value)


def test_unknown_host_field_is_named_with_the_allowed_ones():
    message = refused("hosts:\n  prod:\n    host: a\n    hostname: b\n")
    assert "hosts.prod" in message and "'hostname'" in message
    assert "identity_file" in message and "known_hosts" in message


def test_unknown_top_level_key():
    message = refused("hosts: {}\ndefault_host: [prod]\n")
    assert "'default_host'" in message and "default_hosts" in message


@pytest.mark.parametrize("port", ["0", "70000", "'22'", "true", "-1", "22.5"])
def test_bad_port_in_hosts_yml(port):
    message = refused(f"hosts:\n  prod:\n    host: a.example.com\n    port: {port}\n")
    assert "hosts.prod.port" in message and "1 to 65535" in message


@pytest.mark.parametrize("host", ["", "null", "deploy@a.example.com", "'a b'", "[1, 2]",
                                  "'-oProxyCommand'", "'a;id'"])
def test_bad_or_missing_host_field(host):
    message = refused(f"hosts:\n  prod:\n    host: {host}\n")
    assert "hosts.prod.host" in message


def test_entry_without_host_field():
    assert "hosts.prod.host" in refused("hosts:\n  prod:\n    user: deploy\n")


@pytest.mark.parametrize("field,value", [("user", "''"), ("identity_file", "[a]"),
                                         ("known_hosts", '"a\\nb"')])
def test_bad_string_fields(field, value):
    message = refused(f"hosts:\n  prod:\n    host: a\n    {field}: {value}\n")
    assert f"hosts.prod.{field}" in message


def test_default_hosts_must_name_known_hosts():
    message = refused("hosts:\n  prod:\n    host: a\ndefault_hosts: [prod, stagin]\n")
    assert "default_hosts" in message and "'stagin'" in message


def test_default_hosts_must_be_names():
    assert "default_hosts" in refused("hosts:\n  prod:\n    host: a\ndefault_hosts: {a: 1}\n")


def test_invalid_yaml_names_the_line():
    message = refused("hosts:\n  prod:\n    host: [a\n")
    assert "line" in message and "not valid YAML" in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "hosts: [a, b]\n", "hosts:\n  prod: a\n",
                                  "hosts:\n  prod:\n    host: a\n    env: [A]\n",
                                  "hosts:\n  'bad name':\n    host: a\n"])
def test_wrong_shapes_are_refused(text):
    refused(text)


def test_empty_file_is_an_empty_inventory():
    for text in ("", "\n", "# nothing yet\n", "hosts:\n"):
        inv = parse(text)
        assert inv.hosts == {} and inv.default_hosts == []


def test_unknown_key_in_env_block_is_caught_with_did_you_mean():
    prod = parse("hosts:\n  prod:\n    host: a\n    env:\n      SERVERNAME: x\n").resolve("prod")
    with pytest.raises(Failure) as err:
        check_all(merge_layers([prod.env]), require_repo=False)
    assert err.value.code == BAD_INPUT
    assert "SERVERNAME" in str(err.value) and "did you mean SERVER_NAME?" in str(err.value)


def test_load_inventory_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_inventory(environ={}).hosts == {}  # absent is fine: -H names a destination
    (tmp_path / "hosts.yml").write_text(HOSTS)
    assert set(load_inventory(environ={}).hosts) == {"prod", "staging", "v6"}


def test_load_inventory_from_bluegreen_hosts_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = tmp_path / "shop-hosts.yml"
    other.write_text("hosts:\n  shop:\n    host: shop.example.com\n")
    inv = load_inventory(environ={HOSTS_FILE_VAR: str(other)})
    assert list(inv.hosts) == ["shop"] and inv.path == str(other)


def test_a_named_hosts_file_that_is_missing_stops(tmp_path):
    missing = str(tmp_path / "typo.yml")
    with pytest.raises(Failure) as err:
        load_inventory(environ={HOSTS_FILE_VAR: missing})
    assert err.value.code == BAD_INPUT
    assert HOSTS_FILE_VAR in str(err.value) and missing in str(err.value)


def test_the_example_hosts_file_is_valid():
    example = REPO / "hosts.example.yml"
    inv = parse(example.read_text(), str(example))
    assert {"prod", "staging"} <= set(inv.hosts)
    assert inv.default_hosts
    for name in ("prod", "staging"):
        entry = inv.hosts[name]
        assert entry.host and entry.user and entry.port and entry.identity_file
        assert entry.known_hosts and entry.env.values.get("SERVER_NAME")
        s = check_all(merge_layers([entry.env]), require_repo=False)
        assert s.server_name == entry.env.values["SERVER_NAME"]
    assert "#" in example.read_text()  # commented for the operator
