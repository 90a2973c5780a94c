"""Any text for any flag, key or .env file: accepted, or exit 2 with one line
that names it and says what is allowed. Never a traceback, never an SSH
connection.

Hypothesis generates the text: arbitrary Unicode (lone surrogates too, as
os.environ and sys.argv carry undecodable bytes), digits of other scripts
('²' passes str.isdigit(), '٣' passes int()), numbers in every spelling
float() takes, and very long values. The checks are called directly (a task
with its connection replaced by a sentinel, so reaching it proves the value
was accepted before any connection), which keeps 10,000+ cases to seconds.
"""

import subprocess

import fabric
import invoke
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from tasks.cli import tasks as cli
from tasks.cli.flags import check_flag
from tasks.configuration import values
from tasks.configuration.env_layers import Layer
from tasks.configuration.inventory import Inventory, parse_inventory
from tasks.configuration.keys import KEY_BY_NAME, KEYS
from tasks.configuration.settings import check_all, load_settings, merge_layers
from tasks.configuration.values import (Invalid, check_fraction, check_keepalive_min_timeout,
                                        check_nginx_duration, check_nginx_size,
                                        check_non_negative_int, check_port, check_positive_int,
                                        check_positive_number, check_size_bytes,
                                        check_timeout_seconds)
from tasks.errors import BAD_INPUT, Failure

EXAMPLES = 200  # per flag or key; about 70 of them: over 10,000 cases a run
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

TRICKY = ["", " ", "0", "1", "-1", "+1", "²", "٣", "１", "1²", "½", "1e3", "1E-3", "nan",
          "inf", "-inf", "0x10", "1_000", " 5", "5 ", "5\t", "0.5", ".5", "5.", "1.5.1", "99" * 400,
          "9" * 5000, "10m", "1g", "1t", "5s1m", "1h30m", "٣s", "²m", "500ms", "0s", "366d",
          "main", "-main", "a..b", "a.lock", "a.lock/b", "a//b", "a/", ".a", "a/.b", "HEAD",
          "x" * 3000, "feature/" + "x" * 250, "a;b", "$(id)", "`id`", "a\nb", "a\rb", "a\x00b",
          "\udcff", "caf\u00e9", "fe80::1%eth0", "fe80::1%a b", "::1", "0.0.0.0", "/", "/..",
          "/srv/app", "/srv/../etc", "~/x", "auto", "off", "OFF", "true", "blue", "green",
          "BLUE", "purple", "abcd", "abc", "g" * 41, "0" * 40]

digits_and_units = st.text(alphabet="0123456789.-+eE_ smhdkgKMGTinfa²٣１\t", max_size=24)
long_text = st.builds(lambda ch, n: ch * n, st.sampled_from("a9/.-²٣ x"),
                      st.integers(min_value=200, max_value=6000))
ANY_TEXT = st.one_of(
    st.text(),
    st.text(st.characters(codec="ascii"), max_size=40),
    st.text(st.characters(categories=["Nd", "No", "Zs", "Cc", "Cs"]), max_size=12),
    digits_and_units,
    long_text,
    st.sampled_from(TRICKY),
)


def assert_bad_input_line(text, name):
    """One line, naming the flag or key, saying what is allowed (or what must hold)."""
    assert "\n" not in text, text
    assert name in text, text
    assert "allowed" in text or "must" in text, text
    assert len(text) < 700, text  # a long value is shown cut short


# --- configuration keys -----------------------------------------------------------------


def settings_with(key, value):
    layer = Layer("the environment (BLUEGREEN_{key})", {key: value})
    return check_all(merge_layers([layer]), require_repo=False)


@pytest.mark.parametrize("key", [k.name for k in KEYS])
@SETTINGS
@given(value=ANY_TEXT)
def test_any_value_of_a_key(key, value):
    try:
        settings = settings_with(key, value)
    except Failure as exc:
        assert exc.code == BAD_INPUT
        assert_bad_input_line(str(exc), key)
        assert f"BLUEGREEN_{key}" in str(exc), "it says where the value came from"
        return
    typed = getattr(settings, KEY_BY_NAME[key].attribute)
    accepted_is_sane(key, value, typed)


def accepted_is_sane(key, value, typed):
    """What an accepted value may be: bounded, and in ASCII where nginx or a shell reads it."""
    check = KEY_BY_NAME[key].check
    if check is check_port:
        assert 1 <= typed <= 65535
    elif check in (check_positive_int, check_non_negative_int):
        assert isinstance(typed, int) and 0 <= typed <= 1_000_000
    elif check in (check_positive_number, check_timeout_seconds):
        assert 0 < typed <= 7 * 86400
    elif check is check_fraction:
        assert 0 < typed < 1
    elif check in (check_nginx_duration, check_keepalive_min_timeout,
                   check_nginx_size):
        assert typed.isascii() and " " not in typed
    elif check is check_size_bytes:
        assert 0 <= typed <= 1024 ** 5
    elif check is values.check_branch:
        assert typed.isascii() and len(typed) <= 255 and not typed.startswith("-")
    if isinstance(typed, str):
        typed.encode("utf-8")  # no lone surrogates reach a host


# --- task flags -------------------------------------------------------------------------


class Reached(Exception):
    """The task got past its checks to where it would connect."""


@pytest.fixture(scope="module")
def no_connection():
    """Every path to a host replaced by Reached (module scope: Hypothesis runs
    each example in the same test call, so a function fixture would not reset)."""
    saved = cli.on_hosts, cli.on_fleet, cli.targets

    def reached(*args, **kwargs):
        raise Reached

    cli.on_hosts = cli.on_fleet = cli.targets = reached
    yield
    cli.on_hosts, cli.on_fleet, cli.targets = saved


FLAGS = [  # (task, its parameter, the flag an operator types)
    (cli.release, "branch", "--branch"), (cli.release, "ref", "--ref"),
    (cli.release, "wait_lock", "--wait-lock"), (cli.release, "canary", "--canary"),
    (cli.release, "watch", "--watch"), (cli.release, "batch", "--batch"),
    (cli.promote, "watch", "--watch"), (cli.promote, "wait_lock", "--wait-lock"),
    (cli.rollback, "to", "--to"), (cli.rollback, "wait_lock", "--wait-lock"),
    (cli.switch_, "to", "--to"), (cli.switch_, "wait_lock", "--wait-lock"),
    (cli.preview, "local_port", "--local-port"), (cli.preview, "colour", "--colour"),
    (cli.logs, "colour", "--colour"), (cli.logs, "lines", "--lines"),
    (cli.history, "lines", "--lines"),
]


# What a task needs besides the flag under test.
OTHER_FLAGS = {"switch": {"to": "blue"}}


CONTEXT = invoke.Context(config=fabric.Config())


@pytest.mark.parametrize("task,param,flag", FLAGS,
                         ids=[f"{t.name}{f}" for t, _, f in FLAGS])
@SETTINGS
@given(value=ANY_TEXT)
def test_any_value_of_a_flag(no_connection, task, param, flag, value):
    try:
        task.body(CONTEXT, **{**OTHER_FLAGS.get(task.name, {}), param: value})
    except Reached:
        return  # accepted; the value was checked before any connection
    except invoke.Exit as exc:
        assert exc.code == BAD_INPUT, exc.message
        assert_bad_input_line(exc.message, flag)
        return
    raise AssertionError(f"{task.name} {flag}={value!r} neither connected nor failed")


@SETTINGS
@given(value=ANY_TEXT)
def test_any_value_of_render_colour(value):
    try:
        check_flag("--colour", value, cli.check_colour)
    except Failure as exc:
        assert exc.code == BAD_INPUT
        assert_bad_input_line(str(exc), "--colour")


@SETTINGS
@given(value=ANY_TEXT)
def test_any_dash_h_name(value):
    inventory = Inventory(path="hosts.yml", hosts={}, default_hosts=[])
    try:
        entry = inventory.resolve(value)
    except Failure as exc:
        assert exc.code == BAD_INPUT
        assert "\n  " in str(exc) and str(exc).count("\n") == 1  # cause, then what to do
        assert "-H" in str(exc) and len(str(exc)) < 700
        return
    assert len(entry.host) <= 253 and (entry.port is None or 1 <= entry.port <= 65535)


# --- hosts.yml fields -------------------------------------------------------------------


HOST_FIELDS = ["host", "user", "port", "identity_file", "known_hosts"]


@pytest.mark.parametrize("field", HOST_FIELDS)
@SETTINGS
@given(value=st.one_of(ANY_TEXT, st.integers(), st.booleans(), st.none(),
                       st.lists(st.integers(), max_size=2)))
def test_any_value_of_a_hosts_yml_field(field, value):
    import yaml

    entry = {"host": "127.0.0.1", field: value}
    try:
        text = yaml.safe_dump({"hosts": {"web1": entry}})
    except yaml.YAMLError:
        return  # not something a hosts.yml can hold
    try:
        parse_inventory(text, "hosts.yml")
    except Failure as exc:
        assert exc.code == BAD_INPUT
        assert "hosts.web1" in str(exc), str(exc)  # hosts.web1.FIELD, or the entry


@SETTINGS
@given(text=st.one_of(st.text(), st.text(alphabet="hosts:default_ []{}-!&*0123456789\n",
                                         max_size=60),
                      st.sampled_from(["a: 2020-13-45", "0: 0000-00-00", "hosts: !!binary x",
                                       "hosts: [", "- 1", "hosts: 3", "default_hosts: [x]",
                                       "hosts: {a: {host: x, port: 99999999999999999}}"])))
@example(text="[" * 1000)  # PyYAML recurses once per level: RecursionError
def test_any_hosts_yml_text(text):
    try:
        parse_inventory(text, "hosts.yml")
    except Failure as exc:
        assert exc.code == BAD_INPUT and "hosts.yml" in str(exc)


# --- what git itself allows -------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(name=st.text(alphabet="ab./-_0@{}k", max_size=14)
       | st.sampled_from(["a.lock/b", "a/b.lock", "x" * 255, "x" * 256, "a/.b", "a..b"]))
def test_every_branch_we_accept_git_accepts(name):
    """check_branch is git check-ref-format --branch, narrowed: never wider."""
    try:
        values.check_branch(name)
    except Invalid:
        return
    r = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True)
    assert r.returncode == 0, f"git refuses {name!r} that check_branch accepts"


# --- .env files ---------------------------------------------------------------------------


@SETTINGS
@given(data=st.one_of(st.binary(max_size=200),
                      st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.builds(lambda k, v: f"{k}={v}\n".encode("utf-8", "surrogatepass"),
                                st.sampled_from([k.name for k in KEYS] + ["NOPE"]), ANY_TEXT)))
def test_any_env_file(tmp_path_factory, data):
    """Whatever bytes .env holds: settings, or exit 2 naming the file or the key."""
    path = tmp_path_factory.getbasetemp() / "any.env"  # one file, rewritten per example
    path.write_bytes(data)
    try:
        load_settings(env_file=str(path), environ={}, require_repo=False)
    except Failure as exc:
        assert exc.code == BAD_INPUT
        first = str(exc).splitlines()[0]
        assert str(path) in first or "from .env" in first or "unknown key" in first, str(exc)
