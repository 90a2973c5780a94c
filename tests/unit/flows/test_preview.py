"""flows/preview.py: which colour a preview opens, what it refuses, and the
port it falls back to; the session, host and tunnel are fakes (no SSH)."""

import threading

import pytest

from support.host_output import SHA_GREEN, container_line, host_output, released_state, view_of
from support.plain_settings import make_settings
from tasks.errors import FAILED, Failure
from tasks.flows import preview
from tasks.model.nginx_file import render_nginx
from tasks.output import Reporter


class FakeTunnel:
    def __init__(self, local_port):
        self.local_port, self.closed = local_port or 40000, False
        self.url = f"http://127.0.0.1:{self.local_port}/"

    def close(self):
        self.closed = True


class FakeHost:
    """forward() refuses the ports in ``busy``, as a bound port does."""

    def __init__(self, busy=()):
        self.busy, self.forwards, self.tunnels = set(busy), [], []

    def forward(self, remote_port, local_port, remote_host):
        self.forwards.append((remote_port, local_port, remote_host))
        if local_port in self.busy:
            raise Failure(f"cannot listen on 127.0.0.1:{local_port}: in use", "pick another")
        self.tunnels.append(FakeTunnel(local_port))
        return self.tunnels[-1]


class FakeSession:
    def __init__(self, view, settings, host):
        self.view, self.settings, self.host = view, settings, host
        self.name, self.reporter = "prod", Reporter("prod")

    def connect(self):
        pass

    def inspect(self):
        return self.view


@pytest.fixture
def s():
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git")


@pytest.fixture(autouse=True)
def healthy(monkeypatch):
    monkeypatch.setattr(preview, "describe_probe", lambda host, s, colour: (True, "HTTP 200"))


def both_running(s, green="running"):
    out = host_output(s, state=released_state(s, "blue", ("blue", "green")),
                      nginx=render_nginx(s, "blue"),
                      containers={"blue": container_line(s, "blue"),
                                  "green": container_line(s, "green", state=green)})
    return view_of(out, s)


def opened(session, colour=None, local_port=None):
    stop = threading.Event()
    stop.set()  # serve no time at all: the tunnel opens and closes
    return preview.open_preview(session, colour, local_port, stop=stop)


def test_the_idle_colour_is_previewed_on_its_own_port_number(s, capsys):
    host = FakeHost()
    result = opened(FakeSession(both_running(s), s, host))
    assert result == {"host": "prod", "colour": "green", "port": s.green_port, "healthy": True}
    assert host.forwards == [(s.green_port, s.green_port, "127.0.0.1")]
    assert host.tunnels[0].closed
    out = capsys.readouterr().out
    assert f"preview of green: {SHA_GREEN[:12]} main, health now: HTTP 200" in out
    assert f"open http://127.0.0.1:{s.green_port}/  (Ctrl-C closes the tunnel)" in out


def test_the_live_colour_may_be_asked_for_and_says_so(s, capsys):
    result = opened(FakeSession(both_running(s), s, FakeHost()), colour="blue")
    assert result["colour"] == "blue"
    assert "preview of blue (live):" in capsys.readouterr().out


def test_a_colour_port_in_use_here_falls_back_to_any_free_port(s):
    host = FakeHost(busy={s.green_port})
    assert opened(FakeSession(both_running(s), s, host))["port"] == 40000
    assert [local for _, local, _ in host.forwards] == [s.green_port, 0]


def test_a_local_port_asked_for_and_in_use_is_not_replaced(s):
    host = FakeHost(busy={9999})
    with pytest.raises(Failure):
        opened(FakeSession(both_running(s), s, host), local_port=9999)
    assert [local for _, local, _ in host.forwards] == [9999]


def test_a_colour_that_is_not_running_is_refused_before_any_tunnel(s):
    host = FakeHost()
    with pytest.raises(Failure) as exc:
        opened(FakeSession(both_running(s, green="exited"), s, host))
    assert exc.value.code == FAILED and exc.value.message.startswith("green is not running on prod")
    assert exc.value.hint == "release into it first: fab -H prod release"
    assert host.forwards == []
