"""Workers through switch, rollback --to, --stop-old and a fab killed mid-hand-over
(the next task's takeover puts them right); bad worker settings are exit 2."""

import re
import signal
import subprocess

import pytest

from released import fab, fab_background, history_json, output, serves, state_file, wait_until
from support.project import Project
from workerkit import PROCFILE, assert_one_clock, assert_promise, commit, worker_project, workers


@pytest.fixture(scope="module")
def proj(request, tmp_path_factory, loophost):
    base = tmp_path_factory.mktemp("worker-tasks")
    yield from worker_project(base, lambda app: Project(base / "p", loophost, app),
                              then=release_v2, WORKER_READY_SECONDS=1, WORKER_STOP_TIMEOUT=5)


def release_v2(project):
    commit(project.app, "v2")
    fab(project, "release")


def test_bad_worker_settings_are_exit_2_before_connecting(proj, tmp_path):
    for key, value in (("SCALE", "worker=x"), ("SCALE", "worker=-1"),
                       ("WORKER_STOP_TIMEOUT", "ten")):
        r = fab(proj, "release", env={f"BLUEGREEN_{key}": value}, code=2)
        assert key in output(r) and value in output(r), output(r)
    override = tmp_path / "override.yml"
    override.write_text("ports: ['1:1']\n")
    r = fab(proj, "release", env={"BLUEGREEN_COMPOSE_OVERRIDE_FILE": str(override)}, code=2)
    assert "COMPOSE_OVERRIDE_FILE" in output(r) and "'ports'" in output(r)


def phase_ran(r, phase):
    return re.search(rf"^\S+\s+{phase}\s+\d", output(r), re.M) is not None


def test_a_bad_procfile_costs_no_local_build_and_an_image_no_connection(proj):
    """BUILD_ON=local: checked once fetched, before the build; --image: read
    from the image and checked before connecting. Exit 2 naming the line."""
    good = state_file(proj)
    proj.app.commit("bad", procfile="web: sh /app/start.sh\nworker sh /app/worker.sh\n",
                    files={})
    proj.set(BUILD_ON="local")
    try:
        r = fab(proj, "release", code=2)
    finally:
        proj.set(BUILD_ON="host")
    assert "Procfile line 2" in output(r) and "this machine's checkout" in output(r), output(r)
    assert phase_ran(r, "git") and not phase_ran(r, "build"), output(r)

    name = f"{proj.name}-bad:1"
    text = (proj.app.work / "Dockerfile").read_text() + "COPY Procfile /Procfile\n"
    built = subprocess.run(["docker", "build", "-q", "-t", name, "-f", "-", str(proj.app.work)],
                           input=text, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    try:
        r = fab(proj, "release", "--image", name, code=2)
    finally:
        subprocess.run(["docker", "rmi", name], capture_output=True)
    assert "Procfile line 2" in output(r) and f"in the image {name}" in output(r), output(r)
    assert not phase_ran(r, "connect"), output(r)
    assert state_file(proj) == good


def test_a_bad_procfile_line_or_unknown_scale_type_is_exit_2_naming_it(proj):
    good = state_file(proj)
    proj.app.commit("bad", procfile="web: sh /app/start.sh\nworker sh /app/worker.sh\n",
                    files={})
    r = fab(proj, "release", code=2)
    assert "Procfile line 2" in output(r), output(r)
    commit(proj.app, "v3")
    r = fab(proj, "release", env={"BLUEGREEN_SCALE": "wroker=2"}, code=2)
    assert "wroker" in output(r)
    assert state_file(proj)["live"] == good["live"]
    assert_promise(proj)


def test_switch_and_rollback_to_hand_workers_over(proj):
    live = state_file(proj)["live"]
    other = "blue" if live == "green" else "green"
    fab(proj, "switch", "--to", other)
    assert_promise(proj)
    kept = proj.app.commits["v2"]
    fab(proj, "release")  # v3 into the idle colour
    assert_promise(proj)
    fab(proj, "rollback", "--to", kept[:12])
    serves(proj, "v2")
    assert_promise(proj)
    entries = [e for e in history_json(proj) if e.get("task") == "release" and
               e.get("result") == "ok"]
    assert entries and entries[-1].get("workers") == ["worker", "clock"], entries[-1]
    assert_one_clock(proj.jobs)


def test_stop_old_stops_the_old_colours_workers_with_its_web(proj):
    commit(proj.app, "v4")
    fab(proj, "release", "--stop-old")
    assert_promise(proj)
    live = state_file(proj)["live"]
    assert not [w for w in workers(proj) if w[0] != live and w[2] == "running"]


def test_a_fab_killed_mid_hand_over_is_put_right_by_the_next_task(proj, tmp_path):
    proj.set(WORKER_READY_SECONDS=30)
    commit(proj.app, "v5")
    live = state_file(proj)["live"]
    new = "blue" if live == "green" else "green"
    log = tmp_path / "release.log"
    run = fab_background(proj, "release", log=log)
    try:
        # The new colour's workers started: both colours run workers now.
        assert wait_until(lambda: any(w[0] == new and w[2] == "running" for w in workers(proj)),
                          timeout=180), log.read_text()
        run.send_signal(signal.SIGKILL)
        run.wait()
    finally:
        if run.poll() is None:
            run.kill()
    proj.set(WORKER_READY_SECONDS=1)
    r = fab(proj, "maintenance", "off")
    assert "took over the lock" in output(r), output(r)
    assert_promise(proj)
    assert_one_clock(proj.jobs)


def worker_starts(project):
    """{container: when it started} of the running workers."""
    names = [c["name"] for c in project.containers()
             if "-" in (c.get("service") or "") and c["state"] == "running"]
    out = subprocess.run(["docker", "inspect", "--format", "{{.Name}} {{.State.StartedAt}}",
                          *names], capture_output=True, text=True, check=True).stdout
    return sorted(out.split("\n"))


def test_a_rollback_of_a_canary_leaves_the_serving_workers_alone(proj):
    commit(proj.app, "v6")
    before = worker_starts(proj)
    fab(proj, "release", "--canary", "50")
    assert_promise(proj)
    fab(proj, "rollback")
    assert_promise(proj)
    assert worker_starts(proj) == before, "the serving colour's workers were restarted"


def test_the_procfile_of_a_local_build_and_of_an_image(proj):
    """BUILD_ON=local reads the Procfile from this machine's checkout; --image from
    the image's working directory (here /, where the Dockerfile copies it)."""
    proj.set(BUILD_ON="local", WORKER_READY_SECONDS=1)
    try:
        commit(proj.app, "v8", procfile=PROCFILE.replace("clock: sh /app/clock.sh\n", ""))
        fab(proj, "release")
        assert_promise(proj, types=("worker",))  # the clock went with the Procfile line
        commit(proj.app, "v9")
        name = f"{proj.name}-ci:9"
        dockerfile = proj.app.work / "Dockerfile"
        text = dockerfile.read_text() + "COPY Procfile /Procfile\n"
        r = subprocess.run(["docker", "build", "-q", "-t", name, "-f", "-",
                            str(proj.app.work)], input=text, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        try:
            fab(proj, "release", "--image", name)
        finally:
            subprocess.run(["docker", "rmi", name], capture_output=True)
        serves(proj, "v9")
        assert_promise(proj)
    finally:
        proj.set(BUILD_ON="host")
    assert_one_clock(proj.jobs)


def test_the_procfiles_release_runs_before_the_switch_unless_pre_switch_cmd(proj):
    procfile = PROCFILE + "release: sh -c 'echo $BLUEGREEN_COLOUR >> /jobs/release.log'\n"
    live = state_file(proj)["live"]
    target = "blue" if live == "green" else "green"
    commit(proj.app, "v10", procfile=procfile)
    r = fab(proj, "release")
    assert "the Procfile's release ran" in output(r), output(r)
    assert (proj.jobs / "release.log").read_text().split() == [target]
    commit(proj.app, "v11", procfile=procfile)
    fab(proj, "release", env={"BLUEGREEN_PRE_SWITCH_CMD": "true"})
    assert (proj.jobs / "release.log").read_text().split() == [target]  # not again
    assert_promise(proj)


def test_a_watchs_revert_hands_the_workers_back(proj):
    import threading
    import urllib.request
    proj.set(WATCH_MIN_REQUESTS=5)
    commit(proj.app, "v12", kind="pages500")
    stop = threading.Event()

    def traffic():
        while not stop.is_set():
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{proj.public_port}/x", timeout=2)
            except Exception:
                pass
            stop.wait(0.05)

    t = threading.Thread(target=traffic, daemon=True)
    t.start()
    try:
        r = fab(proj, "release", "--watch", "6", code=1)
    finally:
        stop.set()
        t.join()
    assert "reverted by the watch" in output(r), output(r)
    assert_promise(proj)
    assert_one_clock(proj.jobs)
