"""plan_release refuses a target whose port another program holds, before building.

Data: the inspect script's output with a `listening` block as `ss -Htlnp`
prints it, and the plan or the refusal.
"""

import pytest

from support.host_output import container_line, host_output, released_state, view_of
from support.plain_settings import make_settings
from tasks.errors import FAILED, Failure
from tasks.model.nginx_file import render_nginx
from tasks.model.plan import plan_release

HOST = "prod"


@pytest.fixture
def s():
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git")


def ss_line(port, program=None):
    users = f' users:(("{program}",pid=4242,fd=3))' if program else ""
    return f"LISTEN 0      128        127.0.0.1:{port}      0.0.0.0:*{users}"


def view_with(s, listening, containers):
    out = host_output(s, state=released_state(s, "blue"), nginx=render_nginx(s, "blue"),
                      containers=containers, listening=listening)
    return view_of(out, s)


def test_a_program_on_the_target_port_stops_the_release(s):
    view = view_with(s, [ss_line(8080, "nginx"), ss_line(8081, "docker-proxy"),
                         ss_line(8082, "python3")],
                     {"blue": container_line(s, "blue")})
    with pytest.raises(Failure) as info:
        plan_release(view, s, HOST)
    exc = info.value
    assert exc.code == FAILED
    assert exc.message.startswith("GREEN_PORT 8082 on prod is in use by python3, not by "
                                  "green's container (no container)")
    assert "nothing was built" in exc.message and "GREEN_PORT" in exc.hint


def test_unknown_program_is_named_as_such(s):
    view = view_with(s, [ss_line(8082)], {"blue": container_line(s, "blue")})
    with pytest.raises(Failure, match="in use by another program"):
        plan_release(view, s, HOST)


@pytest.mark.parametrize("state", ["exited", "restarting", "created"])
def test_a_stopped_target_container_does_not_excuse_the_port(s, state):
    view = view_with(s, [ss_line(8082, "python3")],
                     {"blue": container_line(s, "blue"),
                      "green": container_line(s, "green", state=state, exit_code=1)})
    with pytest.raises(Failure, match="GREEN_PORT 8082"):
        plan_release(view, s, HOST)


def test_the_target_running_on_its_own_port_is_fine(s):
    view = view_with(s, [ss_line(8081, "busybox"), ss_line(8082, "busybox")],
                     {"blue": container_line(s, "blue"), "green": container_line(s, "green")})
    assert plan_release(view, s, HOST).target == "green"


def test_the_live_port_and_other_ports_do_not_matter(s):
    view = view_with(s, [ss_line(8080, "nginx"), ss_line(8081, "busybox"), ss_line(22, "sshd")],
                     {"blue": container_line(s, "blue")})
    assert plan_release(view, s, HOST).target == "green"


def test_no_listening_block_means_nothing_to_refuse(s):
    # A host without `ss`, or a view read without asking for ports.
    out = host_output(s, state=released_state(s, "blue"), nginx=render_nginx(s, "blue"),
                      containers={"blue": container_line(s, "blue")})
    assert plan_release(view_of(out, s), s, HOST).target == "green"
