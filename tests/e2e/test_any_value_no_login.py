"""Bad values through the real `fab`: exit 2, one line, no traceback, and no
SSH connection at all, as the host's own sshd log shows (issue 26).

tests/unit/test_any_value.py sends thousands of generated values through the
checks; this sends a sample of the kinds it found (digits that are not ASCII,
numbers float() takes and we do not, names longer than git or DNS allow,
bytes that are not UTF-8) through `fab` against a loopback host whose sshd
logs every connection (LogLevel VERBOSE, its own log file).
"""

import time

import pytest

import loophost as lh
from hostile import error_lines
from released import no_traceback, output, wait_until
from support.project import Project

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def host(tmp_path_factory, _clean_machine):
    h = lh.LoopHost(tmp_path_factory.mktemp("nologin"), sshd_options={"LogLevel": "VERBOSE"})
    h.start()
    yield h
    h.stop()


@pytest.fixture
def proj(tmp_path, host, make_sample_app):
    """A project on that host; not set up: nothing may reach the host anyway."""
    p = Project(tmp_path / "p", host, make_sample_app())
    yield p
    p.remove()


LONG = "x" * 3000
FLAGS = [  # (args, the flag the line must name)
    (("release", "--canary", "²"), "--canary"),
    (("release", "--canary", "٣"), "--canary"),
    (("logs", "--lines", "²"), "--lines"),
    (("history", "--lines", "²"), "--lines"),
    (("history", "--lines", "9" * 5000), "--lines"),
    (("release", "--watch", "1e3"), "--watch"),
    (("release", "--watch", "nan"), "--watch"),
    (("release", "--wait-lock", "٣"), "--wait-lock"),
    (("promote", "--watch", "inf"), "--watch"),
    (("release", "--branch", LONG), "--branch"),
    (("release", "--branch", "feature.lock/x"), "--branch"),
    (("release", "--ref", LONG), "--ref"),
    (("release", "--ref", "\udcff"), "--ref"),
    (("rollback", "--to", "²" * 8), "--to"),
    (("switch", "--to", "blue", "--wait-lock", " 5"), "--wait-lock"),
    (("preview", "--local-port", "٨٠٨٠"), "--local-port"),
]
KEYS = [  # (key, value): set as BLUEGREEN_KEY in fab's environment
    ("APP_PORT", "٨٠٨٠"),
    ("HEALTH_TIMEOUT", "1e999"),
    ("HEALTH_PASSES", "9" * 5000),
    ("STOP_TIMEOUT", "²"),
    ("PROXY_READ_TIMEOUT", "٣s"),
    ("KEEPALIVE_MIN_TIMEOUT", "9" * 40 + "s"),
    ("CLIENT_MAX_BODY_SIZE", "9" * 30 + "g"),
    ("MIN_FREE_DISK", "１g"),
    ("WATCH_MAX_ERROR_RATE", "٠.٥"),
    ("BUILD_TIMEOUT", "99999h"),
    ("BIND_ADDRESS", "fe80::1%a b"),
    ("GREEN_BRANCH", LONG),
    ("GIT_REPO", "/srv/" + LONG),
    ("DEPLOY_DIR", "/srv/" + LONG),
    ("KNOWN_HOSTS", "/" + "k" * 5000),
    ("APP_CMD", "run \udcff"),
]


def sshd_log_since(host, offset):
    return host.sshd_log.read_bytes()[offset:].decode(errors="replace")


def assert_refused(result, name):
    assert result.returncode == 2, output(result)
    no_traceback(result)
    lines = error_lines(result)
    assert len(lines) == 1, f"expected one line on stderr:\n{result.stderr}"
    assert name in lines[0] and "allowed" in lines[0], lines[0]
    assert len(lines[0]) < 700, "a long value is shown cut short"


def test_bad_values_exit_2_with_one_line_and_never_log_in(proj, host):
    logged_in = proj.fab("status", timeout=120)  # the control: sshd logs a connection
    no_traceback(logged_in)
    assert wait_until(lambda: "Connection from 127.0.0.1" in sshd_log_since(host, 0), 5)
    offset = host.sshd_log.stat().st_size

    for args, flag in FLAGS:
        assert_refused(proj.fab(*args, timeout=60), flag)
    for key, value in KEYS:
        r = proj.fab("release", env={f"BLUEGREEN_{key}": value}, timeout=60)
        assert_refused(r, key)
        assert f"BLUEGREEN_{key}" in error_lines(r)[0], "the line says where the value came from"
    r = proj.fab("-H", "127.0.0.1:٢٢", "status", timeout=60)  # a port in other digits
    assert r.returncode == 2 and "-H" in error_lines(r)[0], output(r)
    no_traceback(r)

    time.sleep(0.5)  # sshd writes its line as it accepts: give a stray one time to show
    seen = sshd_log_since(host, offset)
    assert "Connection from" not in seen and "Accepted" not in seen, seen
    # The control again: the same log still records a connection.
    proj.fab("status", timeout=120)
    assert wait_until(lambda: "Connection from 127.0.0.1" in sshd_log_since(host, offset), 5)

