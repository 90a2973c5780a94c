"""What the task that takes a dead holder's lock over records of the colour nginx
serves (tasks/model/takeover.py): a task killed between its switch and its record."""

from support.host_output import SHA_BLUE, SHA_GREEN, released_state
from support.plain_settings import make_settings
from tasks.model.compose_file import Container
from tasks.model.host_view import HostView
from tasks.model.nginx_file import read_nginx, render_nginx
from tasks.model.pending import with_pending
from tasks.model.processes import with_processes
from tasks.model.takeover import RECORDED_BY, served_unrecorded, with_served

NEW = "f" * 40
WEB = {"web": "sh /app/start.sh", "worker": "sh /app/worker.sh"}


def settings(tmp_path):
    return make_settings(APP_NAME="shop", GIT_REPO="/r", DEPLOY_DIR=str(tmp_path))


def view(s, state, served, runs, canary=None):
    """nginx serves ``served``; ``runs``: {colour: commit its container's image names}."""
    containers = {c: Container(c, "running", image=f"sha256:{c}", commits=(commit,),
                               started_at="2026-12-07T10:00:00.123456789Z")
                  for c, commit in runs.items()}
    for c in ("blue", "green"):
        containers.setdefault(c, Container(c, "missing"))
    return HostView(now=0, deploy_dir=True, lock="taken", holder=None, state=state,
                    state_error=None, nginx_text="", containers=containers,
                    nginx=read_nginx(render_nginx(s, served, canary=canary), s))


def test_a_release_killed_after_its_switch_is_recorded_from_what_runs(tmp_path):
    s = settings(tmp_path)
    state = with_processes(released_state(s, "blue", ("blue", "green")), "blue", WEB, SHA_BLUE,
                           workers="blue")
    v = view(s, state, "green", {"blue": SHA_BLUE, "green": NEW})
    served = served_unrecorded(v)
    assert (served.colour, served.commit, served.unrecorded) == ("green", NEW, True)
    new = with_served(state, served, image="sha256:green", started_at="2026-12-07T10:00:00Z",
                      history=[], default_branch="main", processes=WEB)
    green = new["colours"]["green"]
    assert new["live"] == "green" and new["workers"] == "green"
    assert (green["commit"], green["image"], green["branch"]) == (NEW, "sha256:green", "main")
    assert green["deployed_by"] == RECORDED_BY and green["processes"] == WEB
    assert new["colours"]["blue"] == state["colours"]["blue"]  # the rollback target stays
    # Its Procfile unknown (built elsewhere): the colour's own processes stand.
    guess = with_served(state, served, image="sha256:green", started_at="",
                        history=[], default_branch="main")
    assert guess["colours"]["green"]["processes"] == state["colours"]["green"].get(
        "processes", {})


def test_a_promote_killed_after_its_switch_is_promoted(tmp_path):
    s = settings(tmp_path)
    base = released_state(s, "blue", ("blue", "green"))
    state = with_pending(base, "green", "staged", branch="side", commit=NEW,
                         image="sha256:green", who="bo", deployed="side")
    v = view(s, state, "green", {"blue": SHA_BLUE, "green": NEW})
    served = served_unrecorded(v)
    assert (served.colour, served.unrecorded) == ("green", False)
    green = with_served(state, served, image=None, started_at="", history=[],
                        default_branch="main")["colours"]["green"]
    assert "pending" not in green and green["branch"] == "side" and green["commit"] == NEW


def test_nothing_to_record_when_state_json_agrees_or_cannot_tell(tmp_path):
    s = settings(tmp_path)
    state = released_state(s, "blue", ("blue", "green"))
    assert served_unrecorded(view(s, state, "blue", {"blue": SHA_BLUE, "green": SHA_GREEN})) \
        is None
    # A killed rollback: nginx serves green, whose container runs its record.
    served = served_unrecorded(view(s, state, "green", {"blue": SHA_BLUE, "green": SHA_GREEN}))
    assert (served.colour, served.commit, served.unrecorded) == ("green", SHA_GREEN, False)
    assert with_served(state, served, image=None, started_at="", history=[],
                       default_branch="main")["live"] == "green"
    # A canary's nginx file: its own record stands.
    assert served_unrecorded(view(s, state, "blue", {"blue": SHA_BLUE, "green": NEW},
                                  canary=("green", 20))) is None
    assert served_unrecorded(view(s, None, "green", {"green": NEW})) is None
