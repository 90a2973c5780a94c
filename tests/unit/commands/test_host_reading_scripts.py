"""commands/host_reading.py: the inspect script, run as a step of a local
`sh -s` in a directory laid out like the host.
"""

import os
import shlex
import subprocess

import pytest

from support.nginx_binaries import current_nginx, debian_nginx, nginx_version_of
from support.script_box import holder, lock_box, settings_for
from tasks.commands import host_reading, locking
from tasks.model.compose_file import INSPECT_FORMAT


def test_inspect_with_the_lock_reads_what_it_locked(box):
    deploy, s = lock_box(box)
    (deploy / "state.json").write_text("{}\n")
    owner = holder(4242, 77)
    r = box(host_reading.inspect(s, owner_json=owner))
    assert r.values["lock"] == "taken" and r.values["deploy_dir"] == "yes"
    assert r.blocks["owner"] == owner + "\n" and r.blocks["state"] == "{}\n"
    assert r.blocks["containers"] == "" and r.blocks["nginx"] == ""


@pytest.mark.parametrize("with_mktemp", [True, False])
def test_inspect_reads_the_version_of_the_nginx_that_tests_the_file(box, with_mktemp):
    """nginx -v runs beside the docker call (or in turn without mktemp);
    its version comes out as the same marker either way."""
    tools = box.dir / "tools"
    tools.mkdir()
    for tool in ("head",) + (("mktemp",) if with_mktemp else ()):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True,
                               text=True).stdout.strip()
        os.symlink(found, tools / tool)
    deploy, _ = lock_box(box)
    for binary in (debian_nginx(), current_nginx()):
        s = settings_for("normal", DEPLOY_DIR=str(deploy), NGINX_TEST_CMD=f"{binary} -t")
        r = box(host_reading.inspect(s, owner_json=holder(4242, 77)), extra_path=str(tools))
        assert r.values["nginx_version"] == nginx_version_of(binary), r.stdout
        assert r.values["lock"] == "taken"
        box(locking.unlock_lock(s))


def test_inspect_without_a_deploy_dir_takes_no_lock(box):
    s = settings_for("normal", DEPLOY_DIR=str(box.dir / "gone"))
    r = box(host_reading.inspect(s, owner_json="{}"))
    assert r.values["deploy_dir"] == "no" and "lock" not in r.values
    assert not (box.dir / "gone").exists()


def test_inspect_reads_everything_in_one_script():
    s = settings_for("normal")
    text = host_reading.inspect(s, history_lines=7)
    for needle in ('"$M now', '"$M deploy_dir', "cat /srv/shop/.lock/owner.json",
                   "cat /srv/shop/state.json", "cat /etc/nginx/conf.d/shop.conf",
                   f"docker container inspect --format {shlex.quote(INSPECT_FORMAT)} "
                   "shop-blue-1 shop-green-1", "tail -n 7 /srv/shop/history.jsonl",
                   '"$M nginx_version'):
        assert needle in text
    assert "mkdir" not in text and "app_env" not in text and "ss -H" not in text
    locked = host_reading.inspect(s, owner_json="{}", app_env=True, listening=True)
    assert "mkdir /srv/shop/.lock" in locked and "sha256sum /srv/shop/app.env" in locked
    assert "ss -Htlnp" in locked
    # The lock is taken before anything is read.
    assert locked.index("mkdir") < locked.index("cat /srv/shop/state.json")
    for read in ("docker container inspect", "ss -Htlnp", "nginx -v", "date +%s"):
        assert locked.index("mkdir") < locked.index(read), read
