"""fab exec's remote script (commands/one_off.py): the app.env it is fed on
stdin, run by a real local `sh`, and --reuse's look only after a failure."""

import os
import subprocess

from support.plain_settings import make_settings
from tasks.commands.one_off import app_env_from_stdin, one_off


def feed(directory, data):
    return subprocess.run(["sh", "-c", app_env_from_stdin(len(data)) + " && echo done"],
                          cwd=directory, input=data, capture_output=True, timeout=30)


def test_app_env_is_written_only_when_it_differs(tmp_path):
    env = tmp_path / "app.env"
    env.write_bytes(b"A=1\n")
    inode = env.stat().st_ino
    assert feed(tmp_path, b"A=1\n").stdout == b"done\n"
    assert env.stat().st_ino == inode  # the same file: not rewritten
    assert feed(tmp_path, b"A=2\nSECRET=x\n").stdout == b"done\n"
    assert env.read_bytes() == b"A=2\nSECRET=x\n"
    assert env.stat().st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["app.env"]  # no temporary file left


def test_app_env_first_time_and_never_in_the_command_line(tmp_path):
    assert feed(tmp_path, b"K=v\n").stdout == b"done\n"
    assert (tmp_path / "app.env").read_bytes() == b"K=v\n"
    s = make_settings(APP_NAME="shop")
    script = one_off(s, "true", name="x", history_head="{", history_tail="}", app_env_size=4)
    assert "head -c 4" in script and "K=v" not in script
    assert "head -c" not in one_off(s, "true", name="x", history_head="{", history_tail="}")


def test_reuse_looks_at_the_web_container_only_after_a_failure():
    s = make_settings(APP_NAME="shop")
    script = one_off(s, "true", reuse=True, name="x", history_head="{", history_tail="}")
    assert script.index('docker exec "shop-$colour-1" sh -c true') < script.index(
        "docker container inspect")
    assert "[ $code -eq 0 ] ||" in script
