"""The hand-over's script and the parse of the worker listing (strings, as Kamal's tests)."""

from tasks.commands.one_off import one_off
from tasks.commands.workers import hand_over, parse_workers
from tasks.configuration.settings import load_settings
from tasks.model.processes import plan_hand_over


def settings(tmp_path, text=""):
    env = tmp_path / ".env"
    env.write_text("APP_NAME=shop\nWORKER_STOP_TIMEOUT=40\nVOLUMES=jobs:/jobs\n" + text)
    return load_settings(env_file=str(env), environ={}, require_repo=False)


def test_the_hand_over_stops_the_clock_first_starts_new_then_stops_old(tmp_path):
    s = settings(tmp_path)
    plan = plan_hand_over("green", "blue", {"worker": "w", "clock": "c"}, s)
    script = hand_over(s, plan, 5)
    stop_clock = script.index("label=bluegreen.process=clock")
    start = script.index("up -d --no-deps --no-build --force-recreate green-clock green-worker")
    wait = script.index("sleep 5")
    stop_old = script.rindex("label=bluegreen.colour=blue")
    assert stop_clock < start < wait < stop_old
    assert "docker stop -t 40" in script
    assert "docker start $first" in script  # a failed start brings the old clock back


def test_the_first_hand_over_stops_nothing(tmp_path):
    s = settings(tmp_path)
    script = hand_over(s, plan_hand_over("blue", None, {"worker": "w"}, s), 5)
    assert "label=bluegreen.colour=green" not in script


def test_parse_workers_counts_running_and_restarts():
    text = ("blue worker running 0 /shop-blue-worker-1\n"
            "blue worker restarting 3 /shop-blue-worker-2\n"
            "green clock exited 0 /shop-green-clock-1\n")
    assert parse_workers(text) == {
        "blue": {"worker": {"running": 1, "restarts": 3, "containers": 2, "restarting": 1}},
        "green": {"clock": {"running": 0, "restarts": 0, "containers": 1, "restarting": 0}}}


def test_a_one_off_has_the_apps_env_volumes_labels_and_is_removed_when_the_session_goes(
        tmp_path):
    s = settings(tmp_path)
    script = one_off(s, "manage.py migrate", name="shop-oneoff-1", history_head="{",
                     history_tail="}")
    assert "docker run --rm --init --name shop-oneoff-1" in script
    assert "--label bluegreen.process=oneoff" in script
    assert "-v shop_jobs:/jobs" in script and "--network shop_default" in script
    assert "sh -c 'manage.py migrate'" in script
    assert "kill -0 $session" in script and "docker rm -f shop-oneoff-1" in script
    reuse = one_off(s, "true", reuse=True, name="x", history_head="{", history_tail="}")
    assert 'docker exec "shop-$colour-1" sh -c true' in reuse


def test_the_hand_over_first_removes_one_offs_whose_session_is_gone(tmp_path):
    from tasks.deploy.workers import sync_compose
    s = settings(tmp_path)
    script = sync_compose(s, {"colours": {"blue": {"processes": {"worker": "w"}}}})
    assert "label=bluegreen.process=oneoff" in script and "[ -d /proc/$p ]" in script
    one = one_off(s, "true", name="x", history_head="{", history_tail="}")
    assert '--label bluegreen.session="$PPID"' in one
