"""What the task that takes a dead holder's lock over puts back (tasks/deploy/recover.py)."""

from support.host_output import container_line, host_output, released_state, view_of
from support.plain_settings import make_settings
from tasks.deploy.recover import unrecorded_idle
from tasks.model.nginx_file import render_nginx


def view(s, state, containers):
    return view_of(host_output(s, state=state, nginx=render_nginx(s, "blue"),
                               containers=containers), s)


def test_an_idle_colour_running_another_image_than_recorded_is_restored(tmp_path):
    s = make_settings(APP_NAME="shop", GIT_REPO="/r", DEPLOY_DIR=str(tmp_path))
    state = released_state(s, "blue", ("blue", "green"))
    same = {c: container_line(s, c, image=state["colours"][c]["image"]) for c in ("blue", "green")}
    assert unrecorded_idle(view(s, state, same)) == []
    other = dict(same, green=container_line(s, "green", image="sha256:" + "9" * 64))
    [drift] = unrecorded_idle(view(s, state, other))
    assert (drift.colour, drift.commit) == ("green", state["colours"]["green"]["commit"])
    # The live colour is never touched, whatever it runs.
    live_other = dict(same, blue=container_line(s, "blue", image="sha256:" + "9" * 64))
    assert unrecorded_idle(view(s, state, live_other)) == []


def test_a_never_released_colour_running_something_is_stopped(tmp_path):
    s = make_settings(APP_NAME="shop", GIT_REPO="/r", DEPLOY_DIR=str(tmp_path))
    state = released_state(s, "blue", ("blue",))
    running = {c: container_line(s, c) for c in ("blue", "green")}
    [drift] = unrecorded_idle(view(s, state, running))
    assert (drift.colour, drift.commit) == ("green", None)
    assert unrecorded_idle(view(s, state, {"blue": container_line(s, "blue")})) == []
