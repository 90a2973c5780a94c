"""commands/switching.py: the nginx switch that puts the old file back when
`nginx -t` or the reload fails.
"""

from support.script_box import NGINX_TEXT, settings_for
from tasks.commands import base, switching
from tasks.commands.base import NGINX_RELOAD_FAILED, NGINX_TEST_FAILED


# --- switch -------------------------------------------------------------------


def switch_box(box, test_cmd="true", reload_cmd="true", old="old file\n", conf_exists=True):
    conf, deploy = box.dir / "conf.d", box.dir / "srv"
    if conf_exists:
        conf.mkdir()
    deploy.mkdir()
    if old is not None and conf_exists:
        (conf / "shop.conf").write_text(old)
    s = settings_for("normal", NGINX_CONF_DIR=str(conf), DEPLOY_DIR=str(deploy),
                     NGINX_TEST_CMD=test_cmd, NGINX_RELOAD_CMD=reload_cmd)
    r = box(switching.switch(s, NGINX_TEXT))
    current = conf / "shop.conf"
    return r, (current.read_text() if current.exists() else None), deploy


def test_switch_puts_the_file_in_place_and_keeps_the_old_one(box):
    r, current, deploy = switch_box(box)
    r.blocks.pop("nginx-workers")  # this machine's nginx processes: handover.py's
    assert (r.code, r.values, r.blocks) == (0, {}, {}), r.stderr
    assert current == NGINX_TEXT
    assert (deploy / "nginx.previous.conf").read_text() == "old file\n"


def test_switch_puts_the_old_file_back_when_nginx_t_fails(box):
    r, current, _ = switch_box(box, test_cmd="sh -c 'echo \"[emerg] unknown directive\"; exit 1'")
    assert r.code == NGINX_TEST_FAILED
    assert current == "old file\n"
    assert r.blocks["output"] == "[emerg] unknown directive\n"


def test_switch_removes_a_first_file_that_fails_nginx_t(box):
    r, current, _ = switch_box(box, test_cmd="false", old=None)
    assert r.code == NGINX_TEST_FAILED and current is None
    assert r.blocks["output"] == ""


def test_switch_puts_the_old_file_back_when_the_reload_fails(box):
    r, current, _ = switch_box(box, reload_cmd="sh -c 'echo not running; exit 1'")
    assert r.code == NGINX_RELOAD_FAILED
    assert current == "old file\n" and r.blocks["output"] == "not running\n"


def test_switch_that_cannot_write_the_file_is_not_an_nginx_verdict(box):
    # NGINX_WRITE_FAILED (permissions, sudo) is its own code: nginx -t never ran.
    r, current, _ = switch_box(box, test_cmd="sh -c 'echo tested >&2'", conf_exists=False)
    assert r.code == base.NGINX_WRITE_FAILED
    assert base.NGINX_WRITE_FAILED != NGINX_TEST_FAILED
    assert r.values["error"] == f"could not write {box.dir}/conf.d/shop.conf"
    # What tee said reaches the step's stderr (release.switch_nginx shows it
    # when the output block is empty).
    assert "shop.conf.tmp" in r.blocks["output"] + r.stderr
    assert "tested" not in r.stderr and current is None


def test_a_lost_connection_never_stops_a_switch_half_way(box):
    """Between the file and the reload a hang-up, a broken pipe or the next
    task's SIGTERM would leave nginx serving one colour under a file that
    names the other: the step ignores them (its own subshell only)."""
    s = settings_for("normal")
    script = switching.switch(s, NGINX_TEXT)
    assert script.splitlines()[:2] == ["set -u", "trap '' HUP TERM PIPE"]
    # In a real shell: a TERM or HUP sent to the step's own (sub)shell while it
    # runs is ignored; $PPID of a child is that subshell.
    r = box("trap '' HUP TERM PIPE\nme=$(sh -c 'echo $PPID')\nkill -TERM \"$me\"\n"
            "kill -HUP \"$me\"\necho \"$M survived\"")
    assert r.values.get("survived") == "" and r.code == 0, r
