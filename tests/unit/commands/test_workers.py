"""The hand-over's script and the parse of the worker listing (strings, as Kamal's tests)."""

import subprocess

import pytest

from tasks.commands.one_off import one_off
from tasks.commands.workers import READY_AWK, hand_over, parse_workers, put_back
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
    wait = script.index("sleep 1")
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


# --- readiness: stay up WORKER_READY_SECONDS, or Docker-healthy within it ---

READY_CASES = [
    # (READY_FORMAT lines, elapsed, verdict) with keep "worker clock", wanted 2, ready 5
    (["green worker running 0 /w1 none", "green clock running 0 /c1 none"], 0, "wait"),
    (["green worker running 0 /w1 none", "green clock running 0 /c1 none"], 5, "ok"),
    (["green worker exited 0 /w1 none", "green clock running 0 /c1 none"], 1, "bad"),
    (["green worker running 1 /w1 none", "green clock running 0 /c1 none"], 1, "bad"),
    (["green worker running 0 /w1 none"], 5, "bad"),  # fewer than wanted
    # with a HEALTHCHECK: healthy is ready at once, starting waits, unhealthy fails
    (["green worker running 0 /w1 healthy", "green clock running 0 /c1 healthy"], 0, "ok"),
    (["green worker running 0 /w1 starting", "green clock running 0 /c1 healthy"], 4, "wait"),
    (["green worker running 0 /w1 starting", "green clock running 0 /c1 healthy"], 5, "bad"),
    (["green worker running 0 /w1 unhealthy", "green clock running 0 /c1 healthy"], 1, "bad"),
    # one with a check, one without: the plain one still stays up the whole time
    (["green worker running 0 /w1 healthy", "green clock running 0 /c1 none"], 2, "wait"),
    (["green worker running 0 /w1 healthy", "green clock running 0 /c1 none"], 5, "ok"),
    # a type no longer handed over does not count
    (["green worker running 0 /w1 none", "green clock running 0 /c1 none",
      "green mailer exited 0 /m1 none"], 5, "ok"),
]


ZERO_CASES = [  # WORKER_READY_SECONDS=0: no wait, health not awaited, a dead one fails
    (["green worker running 0 /w1 starting", "green clock running 0 /c1 none"], 0, "ok"),
    (["green worker exited 1 /w1 starting", "green clock running 0 /c1 none"], 0, "bad"),
]


@pytest.mark.parametrize("lines,elapsed,verdict,ready",
                         [c + (5,) for c in READY_CASES] + [c + (0,) for c in ZERO_CASES])
def test_the_readiness_verdict_on_the_host(lines, elapsed, verdict, ready):
    awk = subprocess.run(
        ["awk", "-v", "keep= worker clock ", "-v", "wanted=2", "-v", f"t={elapsed}",
         "-v", f"ready={ready}", READY_AWK], input="\n".join(lines) + "\n",
        capture_output=True, text=True, check=True)
    assert awk.stdout.strip() == verdict


def test_the_hand_over_reads_health_each_second_and_stops_old_only_when_told(tmp_path):
    s = settings(tmp_path)
    plan = plan_hand_over("green", "blue", {"worker": "w", "clock": "c"}, s)
    script = hand_over(s, plan, 5)
    assert "{{.State.Health.Status}}" in script and "sleep 1" in script
    assert "-v ready=5" in script and "-v wanted=2" in script
    kept = hand_over(s, plan, 5, stop_old=False)
    assert "stopped blue" not in kept and "first $(echo $first)" in kept


def test_parse_workers_counts_unhealthy_and_not_yet_healthy():
    text = ("green worker running 0 /w1 unhealthy\ngreen worker running 0 /w2 starting\n"
            "green clock running 0 /c1 healthy\n")
    found = parse_workers(text)["green"]
    assert found["worker"]["unhealthy"] == 1 and found["worker"]["starting"] == 1
    assert "unhealthy" not in found["clock"]


def test_put_back_stops_the_new_and_starts_the_old_stop_first_ones(tmp_path):
    s = settings(tmp_path)
    script = put_back(s, "green", "c1 c2")
    assert "label=bluegreen.colour=green" in script and "docker start c1 c2" in script
    assert "docker start" not in put_back(s, "green", "")
