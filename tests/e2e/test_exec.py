"""fab exec: a one-off command in the live release: output, exit codes, stdin,
a real terminal (a pty), --reuse, and a killed fab that leaves no container."""

import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest

from released import REPO_ROOT, fab, fab_background, history_json, module_project, output, \
    wait_until


@pytest.fixture(scope="module")
def proj(request, tmp_path_factory, loophost):
    yield from module_project(request, tmp_path_factory, loophost, setup=True)


def oneoffs(project):
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=bluegreen.app={project.name}",
                          "--filter", "label=bluegreen.process=oneoff"],
                         capture_output=True, text=True, check=True).stdout
    return out.split()


def test_output_exit_code_env_and_history(proj):
    r = fab(proj, "exec", "echo hello from $BLUEGREEN_COLOUR $BLUEGREEN_PROCESS; cat /app/VERSION")
    assert "hello from blue oneoff" in r.stdout and "v1" in r.stdout
    r = fab(proj, "exec", "echo oops >&2; exit 7", code=7)
    assert "oops" in r.stderr
    entries = [e for e in history_json(proj) if e.get("task") == "exec"]
    assert [e["exit_code"] for e in entries[-2:]] == [0, 7]
    assert not oneoffs(proj)


def test_reuse_runs_in_the_live_web_container(proj):
    r = fab(proj, "exec", "--reuse", "cat /www/version; echo $BLUEGREEN_PROCESS")
    assert r.stdout.split() == ["v1", "web"]
    fab(proj, "exec", "--reuse", "exit 3", code=3)


def test_stdin_from_a_pipe_without_a_terminal(proj):
    cmd = [str(os.path.join(os.path.dirname(sys.executable), "fab")), "-r", str(REPO_ROOT),
           "exec", "-i", "wc -l"]
    r = subprocess.run(cmd, cwd=proj.dir, env=proj.child_env(), input="a\nb\nc\n",
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "3"


def test_a_terminal_gets_a_pty_and_ctrl_c_reaches_the_command(proj):
    cmd = [str(os.path.join(os.path.dirname(sys.executable), "fab")), "-r", str(REPO_ROOT),
           "exec", "-i", "tty; trap 'echo got-INT; exit 5' INT; read line; echo read:$line; "
           "sleep 60"]
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(proj.dir)
        os.execve(cmd[0], cmd, proj.child_env())
    seen = b""

    def until(word, timeout=60):
        nonlocal seen
        deadline = time.monotonic() + timeout
        while word not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
        return word in seen

    assert until(b"/dev/pts/"), seen
    os.write(fd, b"typed\r")
    assert until(b"read:typed"), seen
    os.write(fd, b"\x03")
    assert until(b"got-INT"), seen
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 5, seen
    assert wait_until(lambda: not oneoffs(proj), timeout=30)


def test_a_killed_fab_leaves_no_container(proj, tmp_path):
    log = tmp_path / "exec.log"
    run = fab_background(proj, "exec", "echo started; sleep 300", log=log)
    try:
        assert wait_until(lambda: "started" in log.read_text(), timeout=60), log.read_text()
        assert oneoffs(proj)
        run.send_signal(signal.SIGKILL)
        run.wait()
        assert wait_until(lambda: not oneoffs(proj), timeout=30), "the one-off outlived fab"
    finally:
        if run.poll() is None:
            run.kill()


def test_one_host_unless_all_hosts_and_a_bad_colour(proj):
    r = fab(proj, "exec", "--colour", "red", "true", code=2)
    assert "--colour" in output(r)
    r = fab(proj, "exec", code=2)
    assert "command" in output(r)


def test_several_hosts_need_all_hosts(proj):
    """Two names for the same loopback host stand in for two hosts."""
    import yaml
    original = proj.hosts_file.read_text()
    entry = proj.host.hosts_entry("one")["one"]
    proj.hosts_file.write_text(yaml.safe_dump({"hosts": {"one": entry, "two": dict(entry)},
                                               "default_hosts": ["one", "two"]}))
    try:
        r = fab(proj, "exec", "echo hi", code=2)
        assert "--all-hosts" in output(r), output(r)
        r = fab(proj, "exec", "--all-hosts", "echo hi from $BLUEGREEN_COLOUR")
        assert r.stdout.count("hi from blue") == 2, r.stdout
    finally:
        proj.hosts_file.write_text(original)


def test_this_runs_app_env_is_written_only_when_it_changed(proj, tmp_path):
    """exec sends the run's app.env on the command's stdin (no upload); the
    host's file is replaced only when it differs."""
    env_file = tmp_path / "exec-app.env"
    env_file.write_text("EXEC_SECRET=one\n")
    proj.set(APP_ENV_FILE=env_file)
    app_env = proj.deploy_dir / "app.env"
    try:
        assert fab(proj, "exec", "echo $EXEC_SECRET").stdout.strip() == "one"
        inode = app_env.stat().st_ino
        assert fab(proj, "exec", "--reuse", "true").returncode == 0
        assert app_env.stat().st_ino == inode  # unchanged: not written again
        env_file.write_text("EXEC_SECRET=two\n")
        assert fab(proj, "exec", "echo $EXEC_SECRET").stdout.strip() == "two"
        assert app_env.stat().st_mode & 0o777 == 0o600 and app_env.read_text() == \
            "EXEC_SECRET=two\n"
    finally:
        proj.set(APP_ENV_FILE=None)
