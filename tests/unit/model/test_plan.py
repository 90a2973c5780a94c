"""plan_release and plan_switch: which colour a task targets, and what it deploys.

Each test is data: what the host looks like (a HostView parsed from a sample
of the inspect script's output), the settings, and the plan or the refusal.
"""

import pytest

from support.host_output import container_line, host_output, released_state, view_of
from support.plain_settings import make_settings
from tasks.configuration.env_layers import Layer
from tasks.configuration.settings import load_settings
from tasks.errors import FAILED, Failure
from tasks.model.nginx_file import render_nginx
from tasks.model.plan import ReleasePlan, plan_release, plan_switch
from tasks.model.state import StateError, empty_state

HOST = "prod"


@pytest.fixture
def s():
    return make_settings(APP_NAME="shop", GIT_REPO="/srv/repo.git")


def host_view(settings, **kw):
    return view_of(host_output(settings, **kw), settings)


def running(settings, *colours, **kw):
    return {c: container_line(settings, c, **kw) for c in colours}


def settings_from(tmp_path, env_text, environ=None, host_env=None):
    """Settings loaded the real way: .env < hosts.yml env: < BLUEGREEN_* environment."""
    env_file = tmp_path / ".env"
    env_file.write_text("GIT_REPO=/srv/repo.git\nAPP_NAME=shop\n" + env_text)
    host_layer = Layer("hosts.yml host 'prod' env (hosts.yml)", host_env) if host_env else None
    return load_settings(env_file=str(env_file), host_layer=host_layer,
                         environ=environ or {})


# --- plan_release -------------------------------------------------------------


def test_first_release_targets_blue(s):
    view = host_view(s, state=empty_state("shop"))
    assert plan_release(view, s, HOST) == ReleasePlan(
        live=None, target="blue", branch="main", ref=None, drift=None, record_branch="main")


def test_live_blue_targets_green(s):
    view = host_view(s, state=released_state(s, "blue"), nginx=render_nginx(s, "blue"),
                   containers=running(s, "blue"))
    plan = plan_release(view, s, HOST, ref="abc1234")
    assert (plan.live, plan.target, plan.ref, plan.drift) == ("blue", "green", "abc1234", None)


def test_live_green_targets_blue(s):
    view = host_view(s, state=released_state(s, "green", ("blue", "green")),
                   nginx=render_nginx(s, "green"))
    plan = plan_release(view, s, HOST)
    assert (plan.live, plan.target) == ("green", "blue")


def test_nginx_truth_wins_over_state_json_with_a_drift_warning(s):
    # state.json says blue, nginx serves green: building into green would
    # rebuild the colour that serves every client.
    view = host_view(s, state=released_state(s, "blue", ("blue", "green")),
                   nginx=render_nginx(s, "green"))
    plan = plan_release(view, s, HOST)
    assert (plan.live, plan.target) == ("green", "blue")
    assert plan.drift == "state.json says blue is live but nginx serves green"


def test_a_hand_edited_nginx_file_is_trusted_for_what_it_proxies_to(s):
    edited = render_nginx(s, "green").replace("127.0.0.1:8082", "127.0.0.1:8081")
    view = host_view(s, state=released_state(s, "green", ("blue", "green")), nginx=edited)
    plan = plan_release(view, s, HOST)
    assert (plan.live, plan.target) == ("blue", "green")
    assert "header says green but it proxies to blue" in plan.drift


def test_without_an_nginx_file_state_json_says_what_is_live(s):
    view = host_view(s, state=released_state(s, "blue"))
    plan = plan_release(view, s, HOST)
    assert (plan.live, plan.target) == ("blue", "green")
    assert plan.drift == "state.json says blue is live but the nginx file is missing"


def test_first_release_of_a_colour_follows_dotenv(tmp_path):
    s = settings_from(tmp_path, "BLUE_BRANCH=stable\nGREEN_BRANCH=develop\n")
    view = host_view(s, state=released_state(s, "blue", branch="stable"),
                   nginx=render_nginx(s, "blue"))
    assert plan_release(view, s, HOST).branch == "develop"


def test_recorded_branch_wins_over_dotenv(tmp_path):
    s = settings_from(tmp_path, "BLUE_BRANCH=stable\nGREEN_BRANCH=develop\n")
    state = released_state(s, "green", ("blue", "green"), branch="feature/x")
    view = host_view(s, state=state, nginx=render_nginx(s, "green"))
    plan = plan_release(view, s, HOST)
    assert (plan.target, plan.branch) == ("blue", "feature/x")


def test_recorded_branch_wins_over_hosts_yml_env(tmp_path):
    s = settings_from(tmp_path, "", host_env={"GREEN_BRANCH": "from-hosts-yml"})
    state = released_state(s, "blue", ("blue", "green"), branch="feature/x")
    view = host_view(s, state=state, nginx=render_nginx(s, "blue"))
    assert plan_release(view, s, HOST).branch == "feature/x"


def test_bluegreen_branch_from_the_environment_wins_over_the_recorded_one(tmp_path):
    # `BLUEGREEN_GREEN_BRANCH=hotfix fab -H prod release` in a CI job.
    s = settings_from(tmp_path, "GREEN_BRANCH=develop\n",
                      environ={"BLUEGREEN_GREEN_BRANCH": "hotfix"})
    state = released_state(s, "blue", ("blue", "green"), branch="feature/x")
    view = host_view(s, state=state, nginx=render_nginx(s, "blue"))
    plan = plan_release(view, s, HOST)
    assert (plan.target, plan.branch) == ("green", "hotfix")
    # For this run only (docs/ci.md): green keeps following its own branch.
    assert plan.record_branch == "feature/x"
    assert plan.source == "hotfix"


def test_an_environment_branch_on_a_colour_never_released_starts_it(tmp_path):
    s = settings_from(tmp_path, "", environ={"BLUEGREEN_GREEN_BRANCH": "hotfix"})
    view = host_view(s, state=released_state(s, "blue"), nginx=render_nginx(s, "blue"))
    plan = plan_release(view, s, HOST)
    assert (plan.target, plan.branch, plan.record_branch) == ("green", "hotfix", "hotfix")


def test_a_ref_release_keeps_the_colours_branch_and_says_ref(tmp_path):
    s = settings_from(tmp_path, "GREEN_BRANCH=develop\n")
    state = released_state(s, "blue", ("blue", "green"), branch="feature/x")
    view = host_view(s, state=state, nginx=render_nginx(s, "blue"))
    plan = plan_release(view, s, HOST, ref="0319b3ec71a5")
    assert (plan.ref, plan.record_branch, plan.source) == (
        "0319b3ec71a5", "feature/x", "ref 0319b3ec71a5")
    # --branch with --ref: deploy the ref, follow the branch from now on.
    plan = plan_release(view, s, HOST, branch="release/2.0", ref="v2.0.1")
    assert (plan.record_branch, plan.source) == ("release/2.0", "ref v2.0.1")


def test_the_environment_names_only_its_own_colour(tmp_path):
    s = settings_from(tmp_path, "", environ={"BLUEGREEN_GREEN_BRANCH": "hotfix"})
    state = released_state(s, "green", ("blue", "green"), branch="feature/x")
    view = host_view(s, state=state, nginx=render_nginx(s, "green"))
    assert plan_release(view, s, HOST).branch == "feature/x"  # target is blue


def test_plain_green_branch_in_the_environment_is_ignored(tmp_path):
    s = settings_from(tmp_path, "", environ={"GREEN_BRANCH": "not-ours"})
    state = released_state(s, "blue", ("blue", "green"), branch="feature/x")
    view = host_view(s, state=state, nginx=render_nginx(s, "blue"))
    assert plan_release(view, s, HOST).branch == "feature/x"


def test_the_branch_flag_wins_over_everything(tmp_path):
    s = settings_from(tmp_path, "GREEN_BRANCH=develop\n",
                      environ={"BLUEGREEN_GREEN_BRANCH": "hotfix"})
    state = released_state(s, "blue", ("blue", "green"), branch="feature/x")
    view = host_view(s, state=state, nginx=render_nginx(s, "blue"))
    plan = plan_release(view, s, HOST, branch="release/2.0")
    assert (plan.branch, plan.record_branch) == ("release/2.0", "release/2.0")


def test_missing_deploy_dir_points_at_setup(s):
    with pytest.raises(Failure) as exc:
        plan_release(host_view(s, deploy_dir=False), s, HOST)
    assert exc.value.code == FAILED
    assert "prod is not set up" in exc.value.message and "DEPLOY_DIR" in exc.value.message
    assert exc.value.hint == "run: fab -H prod setup"


@pytest.mark.parametrize("state", [None, "{{{", '{"live": "red", "colours": {}}'])
def test_unreadable_state_points_at_repair(s, state):
    view = host_view(s, state=state, nginx=render_nginx(s, "blue"))
    with pytest.raises(StateError) as exc:
        plan_release(view, s, HOST)
    assert exc.value.code == FAILED
    assert exc.value.message.startswith("/srv/shop/state.json ")
    assert "fab repair" in exc.value.hint


def test_nginx_pointing_at_a_foreign_port_stops(s):
    foreign = render_nginx(s, "blue").replace("127.0.0.1:8081", "127.0.0.1:3000")
    view = host_view(s, state=released_state(s, "blue"), nginx=foreign)
    with pytest.raises(Failure) as exc:
        plan_release(view, s, HOST)
    assert exc.value.code == FAILED
    assert exc.value.message == ("/etc/nginx/conf.d/shop.conf on prod proxies to port 3000, "
                                 "which is neither BLUE_PORT nor GREEN_PORT")
    assert "fab -H prod repair" in exc.value.hint


# --- plan_switch and rollback -------------------------------------------------


def both_released(s, live="blue", **container_kw):
    return host_view(s, state=released_state(s, live, ("blue", "green")),
                   nginx=render_nginx(s, live),
                   containers={"blue": container_line(s, "blue"),
                               "green": container_line(s, "green", **container_kw)})


def test_rollback_goes_to_the_other_colour(s):
    assert plan_switch(both_released(s, "blue"), s, HOST, None) == "green"
    assert plan_switch(both_released(s, "green"), s, HOST, None) == "blue"


def test_switch_to_the_idle_colour(s):
    assert plan_switch(both_released(s, "blue"), s, HOST, "green") == "green"


def refusal(view, s, to):
    with pytest.raises(Failure) as exc:
        plan_switch(view, s, HOST, to)
    assert exc.value.code == FAILED
    return exc.value


def test_rollback_with_nothing_live(s):
    view = host_view(s, state=empty_state("shop"))
    err = refusal(view, s, None)
    assert err.message == "nothing is live on prod yet: there is nothing to roll back"
    assert "fab -H prod release" in err.hint


def test_switch_refuses_the_colour_that_is_already_live(s):
    err = refusal(both_released(s, "blue"), s, "blue")
    assert err.message == "blue is already live on prod"


def test_switch_refuses_a_colour_whose_container_is_gone(s):
    view = host_view(s, state=released_state(s, "blue", ("blue", "green")),
                   nginx=render_nginx(s, "blue"), containers=running(s, "blue"))
    err = refusal(view, s, "green")
    assert err.message.startswith("green on prod is not running (no container)")
    assert "take the app down" in err.message


def test_switch_refuses_a_stopped_colour(s):
    err = refusal(both_released(s, "blue", state="exited", exit_code=2), s, None)
    assert err.message.startswith("green on prod is not running (")
    assert "exit code 2" in err.message or "code 2" in err.message


@pytest.mark.parametrize("kw", [{"state": "restarting", "restarts": 4, "exit_code": 1},
                                {"state": "running", "restarts": 4, "exit_code": 1}])
def test_switch_refuses_a_crash_looping_colour(s, kw):
    # "running" with restarts is between two crashes: not something to switch to.
    err = refusal(both_released(s, "blue", **kw), s, "green")
    assert "crash-looping" in err.message and "restarted 4 times" in err.message


def test_switch_refuses_a_colour_never_released(s):
    # A container runs (started by hand?) but state.json has no release for it.
    view = host_view(s, state=released_state(s, "blue"), nginx=render_nginx(s, "blue"),
                   containers=running(s, "blue", "green"))
    err = refusal(view, s, "green")
    assert err.message == "green on prod has never been released"
    assert "fab -H prod release" in err.hint


def test_switch_needs_setup_and_a_readable_state(s):
    with pytest.raises(Failure) as exc:
        plan_switch(host_view(s, deploy_dir=False), s, HOST, "green")
    assert exc.value.hint == "run: fab -H prod setup"
    with pytest.raises(StateError):
        plan_switch(host_view(s, state="nope", nginx=render_nginx(s, "blue")), s, HOST, None)
