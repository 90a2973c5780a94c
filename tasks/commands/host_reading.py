"""Reading the host in one step: the script, and the parse of what it prints into a HostView.

As a pyinfra fact: ``inspect`` is the command (state.json, the nginx file,
the lock, the containers, nginx's version, history, listening ports),
``parse_view`` its process.
"""

from ..model.compose_file import IMAGE_FORMAT, INSPECT_FORMAT, container_name, parse_inspect
from ..model.host_view import HostView
from ..model.lock_owner import parse_holder
from ..model.nginx_file import read_nginx
from ..model.state import StateError, parse_history, parse_state
from .base import block, first_command, mark, q, side_by_side, sudo
from .locking import take_lock
from .workers import list_workers_command, parse_workers
import re


def inspect_containers(settings, colours=("blue", "green")):
    """The colours' containers, one INSPECT_FORMAT line each, then one
    IMAGE_FORMAT line per image they run: what runs is told by the image
    (its commit tag or revision label), never by a colour's checkout.
    `docker container inspect`, not `docker inspect`: for a name with no
    container (a colour never started) the latter goes on to look for an
    image, network, volume and plugin of that name, with a `docker info` on
    the way (6 API calls instead of 1)."""
    names = " ".join(q(container_name(settings, c)) for c in colours)
    pick_images = r"""sed -n 's/.*"image":"\(sha256:[0-9a-f]*\)".*/\1/p' | sort -u"""
    return (f"bg_cs=$(docker container inspect --format {q(INSPECT_FORMAT)} {names} "
            f"2>/dev/null); [ -z \"$bg_cs\" ] || {{ echo \"$bg_cs\"; "
            f"bg_ims=$(echo \"$bg_cs\" | {pick_images}); [ -z \"$bg_ims\" ] || "
            f"docker image inspect --format {q(IMAGE_FORMAT)} $bg_ims 2>/dev/null; }}")


def inspect(settings, *, owner_json=None, history_lines=0, app_env=False, listening=False,
            workers=False):
    """What is on the host: state, nginx file, lock, containers, nginx version.

    With ``owner_json`` the lock is taken first, so what is read cannot change
    underneath the task. With ``listening``, the TCP ports something listens
    on (``ss``; with the program's name when the login user may see it: that
    walks every process's files, ~15 ms of the host's CPU, so only the tasks
    that decide on ports ask for it).
    """
    d = settings.deploy_dir
    slow = {"containers": inspect_containers(settings)}
    if workers:  # status, logs: the worker containers of both colours
        slow["workers"] = list_workers_command(settings)
    if listening:
        slow["listening"] = "ss -Htlnp 2>/dev/null || ss -Htln 2>/dev/null"
    start, finish = side_by_side(slow, values={"nginx_version": nginx_version(settings)})
    lines = [
        f"if [ -d {q(d)} ]; then {mark('deploy_dir', 'yes')}; else {mark('deploy_dir', 'no')}; fi",
    ]
    if owner_json is not None:
        lines.append(f"if [ -d {q(d)} ]; then\n{take_lock(settings, owner_json)}\nfi")
    lines += [
        start,  # the slow reads, right after the lock: nothing changes under them
        mark("now", "$(date +%s)"),
        block("owner", f"cat {q(d + '/.lock/owner.json')} 2>/dev/null"),
        block("state", f"cat {q(d + '/state.json')} 2>/dev/null"),
        block("nginx", f"cat {q(settings.nginx_file)} 2>/dev/null"),
    ]
    if history_lines:
        lines.append(block("history", f"tail -n {int(history_lines)} "
                                      f"{q(d + '/history.jsonl')} 2>/dev/null"))
    if app_env:
        lines.append(mark("app_env", f"$(sha256sum {q(d + '/app.env')} 2>/dev/null "
                                     "| cut -d' ' -f1)"))
    lines.append(finish)
    return "\n".join(lines) + "\n"


def nginx_version(settings):
    """The version of the nginx that NGINX_TEST_CMD runs ('' when unknown)."""
    binary = first_command(settings.nginx_test_cmd) or "nginx"
    return (f"PATH=\"$PATH:/usr/sbin:/sbin\" {sudo(settings)}{q(binary)} -v 2>&1 "
            "| sed -n 's|.*nginx/\\([0-9.]*\\).*|\\1|p' | head -n 1")


def parse_view(result, settings):
    """A HostView from the inspect step's result (its values and blocks)."""
    values, blocks = result.values, result.blocks
    state, state_error = None, None
    path = f"{settings.deploy_dir}/state.json"
    if values.get("deploy_dir") == "yes":
        try:
            state = parse_state(blocks.get("state"), path)
        except StateError as exc:
            state_error = exc
    now = float(values.get("now") or 0)
    owner = blocks.get("owner", "")
    holder = parse_holder(owner, now) if owner.strip() or values.get("lock") == "held" else None
    nginx_text = blocks.get("nginx", "")
    return HostView(
        now=now,
        deploy_dir=values.get("deploy_dir") == "yes",
        lock="taken" if values.get("lock") == "taken-over" else values.get("lock", ""),
        holder=holder,
        state=state,
        state_error=state_error,
        nginx_text=nginx_text,
        nginx=read_nginx(nginx_text.strip() and nginx_text, settings),
        containers=parse_inspect(blocks.get("containers", ""), settings),
        history=parse_history(blocks.get("history", "")),
        app_env_hash=values.get("app_env", ""),
        listening=parse_listening(blocks.get("listening", "")),
        nginx_version=values.get("nginx_version", ""),
        workers=parse_workers(blocks.get("workers", "")),
        lock_taken_over=(parse_holder(blocks.get("stale_owner", ""), now)
                         if values.get("lock") == "taken-over" else None),
    )


def parse_listening(text):
    """{port: process name or ''} from `ss -Htln[p]` lines."""
    ports = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        local = parts[3]
        port = local.rsplit(":", 1)[-1]
        if not (port.isascii() and port.isdigit()):
            continue
        proc = re.search(r'users:\(\("([^"]+)"', line)
        ports.setdefault(int(port), proc.group(1) if proc else "")
    return ports
