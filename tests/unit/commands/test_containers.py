"""commands/containers.py: stop, drain, logs and the containers block.
"""

import os
import time

from support.script_box import settings_for, stub
from tasks.commands import containers
from tasks.commands.base import mark


def test_stop_drains_then_stops_the_colour():
    s = settings_for("normal", DRAIN_TIMEOUT="5")
    script = containers.stop(s, "blue")
    compose = "COMPOSE_BAKE=false docker compose -p shop -f /srv/shop/compose.yml"
    assert script.index(containers.drain(s, "blue")) < script.index(f"{compose} stop blue")
    assert mark("stopped", "blue") in script
    assert "green" not in script and ".lock" not in script and "state.json" not in script


def test_stop_says_stopped_only_when_compose_stopped_it(box):
    deploy = box.dir / "srv"
    deploy.mkdir()
    s = settings_for("normal", DEPLOY_DIR=str(deploy), DRAIN_TIMEOUT="0")
    assert box(containers.stop(s, "blue")).values == {"drained": "0"}  # the stub docker fails
    calls = box.dir / "calls"
    ok = stub(box.dir / "ok", "docker", f'echo "$*" >> {calls}\n')
    r = box(containers.stop(s, "blue"), extra_path=str(ok.parent))
    assert r.values == {"drained": "0", "stopped": "blue"} and r.stdout == ""
    assert calls.read_text() == f"compose -p shop -f {deploy}/compose.yml stop blue\n"


def test_logs_tail_is_a_block_of_the_colours_log(box):
    s = settings_for("normal")
    logs = stub(box.dir / "logs", "docker", 'echo "$*"; printf "last line without newline"\n')
    r = box(containers.logs_tail(s, "green", 25), extra_path=str(logs.parent))
    assert r.blocks["logs"] == ("compose -p shop -f /srv/shop/compose.yml logs --no-color "
                                "--tail 25 green\nlast line without newline\n")
    assert r.stdout == ""


# --- drain, check-out, build, start, restore ------------------------------------


def test_drain_is_bounded_by_drain_timeout(box):
    s = settings_for("normal", DRAIN_TIMEOUT="1")
    script = containers.drain(s, "green")
    assert "-lt 10 ]" in script and "dport = :8082" in script
    busy = stub(box.dir / "busy", "ss", "echo 'ESTAB 0 0 127.0.0.1:50000 127.0.0.1:8082'\n")
    start = time.monotonic()
    r = box(script, extra_path=str(busy.parent))
    assert r.values == {"drained": "timeout"}
    assert time.monotonic() - start < 8


def test_drain_returns_after_a_short_quiet_spell_or_at_once_without_ss(box):
    s = settings_for("normal")
    idle = stub(box.dir / "idle", "ss", "exit 0\n")
    # Quiet three times in a row, 0.1 s apart: two sleeps.
    assert box(containers.drain(s, "blue"), extra_path=str(idle.parent)).values == {"drained": "2"}
    os.remove(box.bin / "ss")
    assert box(containers.drain(s, "blue")).values == {"drained": "0"}


def test_drain_timeout_zero_does_not_wait():
    text = containers.drain(settings_for("normal", DRAIN_TIMEOUT="0"), "blue")
    assert "[ $n -lt 0 ]" in text
