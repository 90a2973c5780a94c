"""model/host_view.py: which colour is live and the drift between state.json and
the nginx file, read from hand-built samples of the inspect script's output.
"""


import pytest

from support.host_output import host_output, released_state, view_of
from support.plain_settings import make_settings
from tasks.model.nginx_file import render_nginx


@pytest.fixture
def s():
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git")


def test_a_missing_nginx_file_leaves_state_json_to_say_what_is_live(s):
    view = view_of(host_output(s, state=released_state(s, "green", ("blue", "green"))), s)
    assert view.nginx_text.strip() == "" and view.nginx is None
    assert view.live == "green"
    assert view.drift == "state.json says green is live but the nginx file is missing"


def test_nginx_wins_over_state_json_and_the_drift_is_named(s):
    out = host_output(s, state=released_state(s, "blue", ("blue", "green")),
                      nginx=render_nginx(s, "green"))
    view = view_of(out, s)
    assert view.live == "green"
    assert view.drift == "state.json says blue is live but nginx serves green"


def test_a_hand_edited_nginx_file_is_read_by_its_upstream_not_its_header(s):
    edited = render_nginx(s, "blue").replace("127.0.0.1:8081", "127.0.0.1:8082")
    view = view_of(host_output(s, state=released_state(s, "blue"), nginx=edited), s)
    assert (view.nginx.header_live, view.nginx.served) == ("blue", "green")
    assert view.live == "green"
    assert view.drift == ("the nginx file's header says blue but it proxies to green "
                          "(edited by hand?)")


def test_an_nginx_file_proxying_to_a_foreign_port(s):
    foreign = render_nginx(s, "blue").replace("127.0.0.1:8081", "127.0.0.1:9000")
    view = view_of(host_output(s, state=released_state(s, "blue"), nginx=foreign), s)
    assert view.nginx.port == 9000 and view.nginx.served is None
    assert view.live is None
    assert view.drift == "the nginx file proxies to port 9000, which is neither colour's port"
