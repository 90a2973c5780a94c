"""A non-root deploy user with USE_SUDO=true and sudo limited to what the tool runs.

The user is made for the test: a system account in the docker group, with
its own key in ~/.ssh/authorized_keys, owning DEPLOY_DIR. Its sudo rights (a
file in /etc/sudoers.d, checked with `visudo -cf`) are exactly the commands
tasks/commands/ runs with USE_SUDO: the nginx test and reload commands and
tee/mv/rm of this app's nginx file. NGINX_CONF_DIR belongs to root, so the
nginx file can only be written through sudo.

It gets a host of its own (scripts/loophost/: sshd reading keys from each
user's home, nginx) under a directory the user may traverse: pytest's own
temporary directories are private to root.
"""

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from hostile import fab, lh, output, serving, serving_after_switch, snapshot, state
from support.project import Project

pytestmark = pytest.mark.e2e

# sudo looks commands up along its secure_path (Debian's /etc/sudoers).
SECURE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def run(*cmd, check=True, **kwargs):
    return subprocess.run(cmd, check=check, capture_output=True, text=True, **kwargs)


def which(name):
    path = shutil.which(name, path=SECURE_PATH)
    assert path, f"{name} is not installed. Run scripts/setup-host.sh as root first."
    return path


def sudoers_text(user, host, nginx_file):
    """Only what USE_SUDO=true runs (tasks/commands/ switch, check)."""
    def cmd(words):
        # Characters sudoers treats specially in arguments; none is in our paths.
        assert not any(c in w for w in words for c in ",:=\\\"'# "), words
        return " ".join(words)

    nginx = [which("nginx"), "-p", str(host.prefix), "-c", str(host.nginx_conf)]
    f, tmp = str(nginx_file), f"{nginx_file}.tmp"
    allowed = [
        cmd(nginx + ["-t"]),
        cmd(nginx + ["-s", "reload"]),
        cmd([which("tee"), tmp]),
        cmd([which("mv"), "-f", tmp, f]),
        cmd([which("rm"), "-f", f]),
    ]
    return ("# bluegreen e2e test (tests/e2e/test_sudo_user.py): the nginx commands and\n"
            "# the nginx file of one app, nothing else. Removed by the test.\n"
            f"# owner pid {os.getpid()}\n"
            f"{user} ALL=(root) NOPASSWD: " + ", ".join(allowed) + "\n")


USER_PREFIX = "bgdeploy"


def remove_abandoned_users():
    """Users and sudoers files left by a test session that was killed (its pid is gone)."""
    for sudoers in Path("/etc/sudoers.d").glob(f"{USER_PREFIX}*"):
        owner = None
        for line in sudoers.read_text(errors="replace").splitlines():
            if line.startswith("# owner pid "):
                owner = int(line.split()[-1])
        if owner is None or lh.pid_alive(owner):
            continue
        run("userdel", "--remove", "--force", sudoers.name, check=False)
        sudoers.unlink(missing_ok=True)


@pytest.fixture
def sudo_project():
    """A Project whose host logs in as a fresh non-root user with limited sudo."""
    for tool in ("sudo", "visudo", "useradd", "userdel"):
        which(tool)
    run("getent", "group", "docker")  # the group that may use the Docker daemon
    remove_abandoned_users()
    base = Path(tempfile.mkdtemp(prefix="bgt-sudo-"))
    base.chmod(0o755)
    user = f"{USER_PREFIX}{secrets.token_hex(3)}"
    sudoers = Path("/etc/sudoers.d") / user  # no '.' in the name, or sudo skips it
    host = project = None
    created = False
    try:
        # '*' (not '!'): no password, but not a locked account sshd would refuse.
        run("useradd", "--system", "--create-home", "--shell", "/bin/sh", "--password", "*",
            "--groups", "docker", user)
        created = True
        pw = pwd.getpwnam(user)
        home = Path(pw.pw_dir)

        host = lh.LoopHost(base / "host", user=user, sshd_options={
            "AuthorizedKeysFile": ".ssh/authorized_keys", "AllowUsers": user})
        host.start()
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700)
        (ssh / "authorized_keys").write_text(host.client_key.with_suffix(".pub").read_text())
        (ssh / "authorized_keys").chmod(0o600)
        app = lh.SampleApp(base / "app")
        app.commit("v1")
        # The repository belongs to root; git refuses another user's repository
        # unless that user names it as safe (git >= 2.35.2).
        run("runuser", "-u", user, "--", "git", "config", "--global", "--add",
            "safe.directory", str(app.repo), cwd="/")
        for path in (ssh, ssh / "authorized_keys"):
            os.chown(path, pw.pw_uid, pw.pw_gid)

        project = Project(base / "p", host, app)
        project.deploy_dir.mkdir()
        os.chown(project.deploy_dir, pw.pw_uid, pw.pw_gid)
        project.set(USE_SUDO="true")

        sudoers.write_text(sudoers_text(user, host, project.nginx_file))
        sudoers.chmod(0o440)
        check = run("visudo", "-cf", str(sudoers), check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        project.user, project.uid = user, pw.pw_uid
        yield project
    finally:
        if project is not None:
            project.remove()
        if host is not None:
            host.stop()
        sudoers.unlink(missing_ok=True)
        if created:
            run("userdel", "--remove", "--force", user, check=False)
        shutil.rmtree(base, ignore_errors=True)


def test_release_as_a_non_root_user_with_limited_sudo(sudo_project):
    p = sudo_project
    conf_dir = Path(p.host.conf_dir)
    assert conf_dir.stat().st_uid == 0
    # Without sudo the user cannot write there, and sudo grants nothing else.
    assert run("runuser", "-u", p.user, "--", "test", "-w", str(conf_dir),
               check=False).returncode != 0
    assert run("runuser", "-u", p.user, "--", "sudo", "-n", "true",
               check=False).returncode != 0

    r = fab(p, "setup")
    assert serving_after_switch(p, ("blue", "v1")) == ("blue", "v1"), output(r)
    assert p.nginx_file.stat().st_uid == 0, "the nginx file was written through sudo"
    for name in ("state.json", "history.jsonl", "compose.yml", "blue"):
        assert (p.deploy_dir / name).stat().st_uid == p.uid, name

    # The same release without sudo cannot put the nginx file in place:
    # it fails before the switch, and live is untouched.
    p.app.commit("v2")
    before = snapshot(p)
    r = fab(p, "release", env={"BLUEGREEN_USE_SUDO": "false"}, code=1)
    assert f"could not write {p.nginx_file} on testhost (USE_SUDO=false)" in r.stderr, output(r)
    assert "Permission denied" in r.stderr and "failed `nginx" not in r.stderr
    assert serving(p) == ("blue", "v1")
    assert snapshot(p)["nginx"] == before["nginx"]
    assert state(p)["live"] == "blue"

    r = fab(p, "release")
    assert serving_after_switch(p, ("green", "v2")) == ("green", "v2"), output(r)
    assert "nginx -> green (tested, reloaded)" in r.stdout
    assert state(p)["live"] == "green"
    r = fab(p, "rollback")
    assert serving_after_switch(p, ("blue", "v1")) == ("blue", "v1"), output(r)
    fab(p, "check")
