"""Stale locks recover by themselves, and nothing waits for ever (issue 15).

One project on the current nginx for the module, under a load of 110
requests/s (fresh and keep-alive connections, several clients) through
every test: not one request may fail.

- `fab` killed (SIGKILL) in the middle of a build, or its SSH connection
  cut on the host side: the next release takes the lock over, says so,
  records it in history, stops the orphaned build, and succeeds.
- A holder that is still connected is never overridden (exit 4).
- A GIT_REPO that would wait for a password or a host key, and a build
  that hangs, end within their bounds: clear message, lock dropped,
  attempt recorded, live untouched, the build's processes stopped.
- A connection that goes silent (the sshd process serving it stopped) is
  given up within CONNECT_TIMEOUT x 3.
"""

import os
import random
import secrets
import signal
import socket
import subprocess
import threading

import pytest

import loophost as lh
from faultkit import (Background, assert_nothing_left_over, assert_status_tells_the_truth,
                      held_by, history, load_report, owner, phase_line, run_ok,
                      serving, sshd_session_of, start_load, state, wait_until)
from released import module_project
from sleepers import let_go, own_seconds, sleeping_word, unique_seconds, wait_sleeping

_versions = iter(range(2, 1000))


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, loophost_current):
    yield from module_project(request, tmp_path_factory, loophost_current, setup=True)


@pytest.fixture
def load(shared_project):
    """The load for one test; asserts at the end that no request failed."""
    running = start_load(shared_project.public_port)
    yield running
    report = load_report(running.stop())
    assert report["sent"] >= 100, report
    assert report["failed"] == 0, report


def commit(shared_project, run_line=None):
    """A new version on main; with `run_line`, a Dockerfile RUN step that
    the build goes through (e.g. a sleep). Returns its label."""
    label = f"v{next(_versions)}"
    shared_project.app.commit(label)
    if run_line:
        # A layer of its own before the RUN: BuildKit would otherwise reuse a
        # finished RUN of an earlier test session from its cache.
        (shared_project.app.work / "app" / "nonce").write_text(secrets.token_hex(8))
        dockerfile = shared_project.app.work / "Dockerfile"
        dockerfile.write_text(dockerfile.read_text().replace(
            "COPY app /app\n", f"COPY app /app\n{run_line}\n"))
        shared_project.app._git("add", "-A")
        shared_project.app._git("commit", "-q", "-m", f"{label}: {run_line}")
        shared_project.app._git("push", "-q", "origin", "HEAD:refs/heads/main")
    return label


def released(shared_project, label):
    """A release of `label` that must succeed; the colour it went into."""
    before = serving(shared_project)[0]
    r = run_ok(shared_project, "release")
    target = "green" if before == "blue" else "blue"
    assert wait_until(lambda: serving(shared_project) == (target, label), timeout=5), r.stdout
    return target, r


def sleepers(word):
    """This run's own build sleeps (``own_seconds``): a concurrent run's
    `sleep 47...` or `sleep 601` is never taken for them."""
    return sleeping_word(word)


@pytest.mark.parametrize("fault", ["kill", "cut"])
def test_a_release_killed_mid_build_leaves_a_lock_the_next_release_takes_over(shared_project, load,
                                                                              fault):
    live = serving(shared_project)
    # The next release builds this again and waits for it: under a minute,
    # with decimals no other test on the machine sleeps (a concurrent run's).
    held = own_seconds(random.randint(40, 54))
    label = commit(shared_project, run_line=f'RUN ["/bin/busybox", "sleep", "{held}"]')
    bg = Background(shared_project, "release")
    bg.wait_line(f'sleep", "{held}"')  # BuildKit's line for the RUN step: the build runs
    assert wait_until(lambda: sleepers(held), timeout=20), bg.text()
    holder = owner(shared_project)
    assert held_by(holder, bg) and holder["host_ppid"] > 1, holder
    if fault == "kill":
        bg.kill(signal.SIGKILL)
    else:
        os.kill(sshd_session_of(shared_project, bg), signal.SIGKILL)
        assert bg.wait() == 3
        assert "lost the SSH connection to testhost" in bg.text(), bg.text()
    assert "Traceback" not in bg.text()
    assert serving(shared_project) == live
    assert held_by(owner(shared_project), bg)  # the lock stays behind

    before = len(history(shared_project))
    target, r = released(shared_project, label)
    assert f"took over the lock of " in r.stdout and f"pid {bg.pid}" in r.stdout, r.stdout
    assert "its connection to testhost is gone" in r.stdout
    entries = history(shared_project)[before:]
    assert [(e["task"], e["result"]) for e in entries] == [("lock", "taken-over"), ("release", "ok")]
    assert f"pid {bg.pid}" in entries[0]["error"]
    # The build the dead task left running on the host was stopped at the takeover.
    assert wait_until(lambda: not sleepers(held), timeout=20), sleepers(held)
    assert owner(shared_project) is None
    assert_status_tells_the_truth(shared_project)
    assert_nothing_left_over(shared_project)


def test_a_holder_still_connected_is_never_overridden(shared_project, load):
    live = serving(shared_project)
    # The build's RUN sleeps until the test lets it go (sleepers.py): the
    # holder is mid-build for as long as the second release takes to try.
    hold = unique_seconds()
    label = commit(shared_project,
                   run_line=f'RUN ["/bin/busybox", "sh", "-c", "sleep {hold:g}; true"]')
    bg = Background(shared_project, "release")
    try:
        wait_sleeping(hold, timeout=120, alive=lambda: bg.proc.poll() is None)
        r = shared_project.fab("release", timeout=120)
        assert r.returncode == 4, r.stdout + r.stderr
        assert f"testhost is locked by " in r.stderr and f"pid {bg.pid}" in r.stderr, r.stderr
        assert "took over" not in r.stdout
        assert held_by(owner(shared_project), bg)
        assert serving(shared_project) == live
        assert bg.proc.poll() is None
    finally:
        let_go(hold)
        code = bg.wait()
    assert code == 0, bg.text()
    assert wait_until(lambda: serving(shared_project)[1] == label, timeout=5)


def silent_port():
    """A loopback port that accepts TCP connections and never says a word
    (an SSH server that never sends its banner)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []

    def accept():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return server, held


def assert_failed_cleanly(shared_project, r, live, before, phase):
    """Exit 1 (not a hang: fab's own timeout=120 would fail the test), lock
    dropped, live untouched, one failed history entry of `phase`."""
    text = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in text, text
    assert owner(shared_project) is None and not (shared_project.deploy_dir / ".lock").exists()
    assert serving(shared_project) == live
    [entry] = history(shared_project)[before:]
    assert (entry["result"], entry["phase"]) == ("failed", phase), entry
    return text, entry


def test_a_git_repo_that_would_wait_for_a_password_fails_within_bounds(shared_project, load):
    live = serving(shared_project)
    server, held = silent_port()
    try:
        port = server.getsockname()[1]
        before = len(history(shared_project))
        r = shared_project.fab("release", timeout=120, env={
            "BLUEGREEN_GIT_REPO": f"ssh://git@127.0.0.1:{port}/app.git",
            "BLUEGREEN_BUILD_TIMEOUT": "5s"})
        text, entry = assert_failed_cleanly(shared_project, r, live, before, "git")
        assert "git" in r.stderr and "GIT_REPO" in r.stderr, text
        # An https URL that asks for a password: git never prompts.
        before = len(history(shared_project))
        r = shared_project.fab("release", timeout=120, env={
            "BLUEGREEN_GIT_REPO": f"https://127.0.0.1:{lh.free_port()}/app.git",
            "BLUEGREEN_BUILD_TIMEOUT": "5s"})
        assert_failed_cleanly(shared_project, r, live, before, "git")
    finally:
        server.close()
        for conn in held:
            conn.close()
    released(shared_project, commit(shared_project))


def test_a_build_that_hangs_stops_at_build_timeout(shared_project, load):
    live = serving(shared_project)
    hung = own_seconds(601)
    commit(shared_project, run_line=f'RUN ["/bin/busybox", "sleep", "{hung}"]')
    before = len(history(shared_project))
    r = shared_project.fab("release", timeout=120, env={"BLUEGREEN_BUILD_TIMEOUT": "5s"})
    text, entry = assert_failed_cleanly(shared_project, r, live, before, "build")
    assert "docker build did not finish within BUILD_TIMEOUT=5s" in r.stderr, text
    assert "BUILD_TIMEOUT=5s" in entry["error"]
    assert wait_until(lambda: not sleepers(hung), timeout=20), "the hung build still runs"
    released(shared_project, commit(shared_project))
    assert_nothing_left_over(shared_project)


def test_a_silent_connection_is_given_up_within_connect_timeout_x3(shared_project, load):
    """The sshd process serving fab is stopped (SIGSTOP): the network is
    silent, nothing is closed. fab gives up within CONNECT_TIMEOUT x 3."""
    live = serving(shared_project)
    label = commit(shared_project, run_line='RUN ["/bin/busybox", "sleep", "8"]')
    bg = Background(shared_project, "release", env={"BLUEGREEN_CONNECT_TIMEOUT": "2"})
    bg.wait_line('sleep", "8"')
    session = sshd_session_of(shared_project, bg)
    os.kill(session, signal.SIGSTOP)
    try:
        code = bg.wait(timeout=60)
    finally:
        os.kill(session, signal.SIGCONT)  # it finds its client gone and ends
        try:
            os.kill(session, signal.SIGKILL)
        except ProcessLookupError:
            pass
    text = bg.text()
    assert code == 3 and "Traceback" not in text, text
    assert "no answer to keep-alives for 6s (CONNECT_TIMEOUT x 3)" in text, text
    assert serving(shared_project) == live
    target, r = released(shared_project, label)
    assert "took over the lock of " in r.stdout
