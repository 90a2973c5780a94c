"""Secrets: APP_ENV_FILE reaches the container and nothing else; DEPLOY_SSH_KEY is never shown.

How "never on a command line" is proved: `fab` runs with a sitecustomize
module (on PYTHONPATH for that process only) that wraps paramiko's
Channel.exec_command, sendall (the steps written to the task's remote
shell, and the probes' requests), set_environment_variable and
SFTPClient.open and appends each call to a log. Those are the only ways
anything reaches a command line, a shell or an environment on the host over
SSH, so the log holds every command the real `fab` sent. The secret must be in none of them, and the
upload must show up as an SFTP open of a temp file beside app.env.
"""

import json
import secrets
import stat

import pytest

from hostile import fab, lh, output

pytestmark = pytest.mark.e2e

WIRE_RECORDER = '''\
"""Test hook (tests/e2e/test_secrets.py): log what fab sends over SSH."""
import json
import os

_log = os.environ.get("BGTEST_WIRE_LOG")
if _log:
    import paramiko

    def _record(kind, text):
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        with open(_log, "a") as f:
            f.write(json.dumps({"kind": kind, "text": text}) + "\\n")

    def _wrap(cls, name, describe):
        original = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            _record(name, describe(*args, **kwargs))
            return original(self, *args, **kwargs)

        setattr(cls, name, wrapper)

    _wrap(paramiko.Channel, "exec_command", lambda command: command)
    _wrap(paramiko.Channel, "sendall", lambda data: data)
    _wrap(paramiko.Channel, "set_environment_variable", lambda name, value: f"{name}={value}")
    _wrap(paramiko.Channel, "update_environment", lambda env: repr(env))
    _wrap(paramiko.SFTPClient, "open", lambda filename, mode="r", bufsize=-1: f"{mode} {filename}")
'''


@pytest.fixture
def wire(tmp_path):
    """(env for fab, function returning the recorded calls)."""
    hook = tmp_path / "wirehook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(WIRE_RECORDER)
    log = tmp_path / "wire.jsonl"
    env = {"PYTHONPATH": str(hook), "BGTEST_WIRE_LOG": str(log)}

    def calls():
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    return env, calls


def container_env(project, colour):
    r = lh.docker("exec", f"{project.name}-{colour}-1", "/bin/busybox", "env")
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_app_env_file_reaches_the_container_and_nothing_else(project, tmp_path, wire):
    env, calls = wire
    first, second = (f"sentinel-{secrets.token_hex(12)}" for _ in range(2))
    env_file = tmp_path / "app-secrets.env"
    env_file.write_text(f"APP_SECRET={first}\nPLAIN=visible\n")
    project.set(APP_ENV_FILE=env_file)
    app_env = project.deploy_dir / "app.env"
    results = []

    results.append(fab(project, "setup", env=env))
    assert "app.env uploaded (mode 0600)" in results[-1].stdout
    assert stat.S_IMODE(app_env.stat().st_mode) == 0o600 and app_env.stat().st_uid == 0
    assert app_env.read_text() == env_file.read_text()
    assert f"APP_SECRET={first}" in container_env(project, "blue")

    # A changed secret goes up again with the next release, and only then.
    env_file.write_text(f"APP_SECRET={second}\nPLAIN=visible\n")
    project.app.commit("v2")
    results.append(fab(project, "release", env=env))
    assert stat.S_IMODE(app_env.stat().st_mode) == 0o600
    assert app_env.read_text() == env_file.read_text()
    assert f"APP_SECRET={second}" in container_env(project, "green")
    results.append(fab(project, "release", "--json", env=env))
    assert "app.env uploaded" not in output(results[-1]), "an unchanged file is not sent again"

    for args in (("status",), ("status", "--json"), ("history",), ("history", "--json"),
                 ("logs",), ("logs", "--colour", "blue"), ("check",), ("render",)):
        results.append(fab(project, *args, env=env))
    for r in results:
        for value in (first, second):
            assert value not in output(r), f"`{' '.join(r.args[3:])}` printed the secret"

    sent = calls()
    commands = [c["text"] for c in sent if c["kind"] != "open"]
    assert len(commands) > 10, "the recorder saw fab's commands"
    for value in (first, second):
        assert not any(value in c for c in commands), "the secret was on a command line"
    uploads = [c["text"] for c in sent if c["kind"] == "open"]
    assert len(uploads) == 2 and all(
        u.startswith(f"wbx {project.deploy_dir}/.app.env.tmp-") for u in uploads), uploads

    for name in ("history.jsonl", "state.json", "compose.yml"):
        text = (project.deploy_dir / name).read_text()
        assert first not in text and second not in text, name
    assert "- path: app.env\n        format: raw" in (project.deploy_dir / "compose.yml").read_text()
    assert first not in project.nginx_file.read_text()


def test_deploy_ssh_key_is_never_shown(project, loophost):
    key = loophost.client_key.read_text()
    body = key.splitlines()[1]
    # Not a key at all: the line names the key, never the value.
    marker = f"sentinel{secrets.token_hex(8)}"
    r = project.fab("status", env={"BLUEGREEN_DEPLOY_SSH_KEY": marker}, timeout=60)
    assert r.returncode == 2 and "DEPLOY_SSH_KEY" in r.stderr and "<hidden>" in r.stderr
    assert marker not in output(r)
    # Damaged key text: refused before connecting, none of it shown.
    broken = key.replace(body, body[:20] + marker + body[40:])
    r = project.fab("status", env={"BLUEGREEN_DEPLOY_SSH_KEY": broken}, timeout=60)
    assert r.returncode == 2 and "DEPLOY_SSH_KEY" in r.stderr, output(r)
    assert marker not in output(r) and body[:20] not in output(r)
    # A good key: used, and still not shown anywhere.
    r = fab(project, "status", "--json", env={"BLUEGREEN_DEPLOY_SSH_KEY": key}, timeout=60)
    assert body not in output(r)
    assert json.loads(r.stdout)["set_up"] is False
