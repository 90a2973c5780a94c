"""Sample output of the remote fact-gathering script (containers, state.json,
the nginx file, the lock) and the HostView read from it."""

import json

from support.local_step import M, read_step
from tasks.commands.host_reading import parse_view
from tasks.model.compose_file import INSPECT_FORMAT
from tasks.model.state import empty_state, format_state, with_release


NOW = 1_700_000_000
SHA_BLUE = "a" * 40
SHA_GREEN = "b" * 40


def container_line(settings, colour, state="running", exit_code=0, restarts=0,
                   image="sha256:" + "c" * 64, started="2024-05-01T10:00:00.123456789Z"):
    """One line as `docker inspect --format INSPECT_FORMAT` prints it."""
    assert INSPECT_FORMAT.startswith('{"name":')  # the shape this line imitates
    return json.dumps({"name": f"/{settings.app_name}-{colour}-1", "state": state,
                       "exit": exit_code, "restarts": restarts, "image": image,
                       "started": started}, separators=(",", ":"))


def released_state(settings, live="blue", colours=("blue",), branch="main"):
    """state.json after releases into ``colours``, ``live`` serving."""
    state = empty_state(settings.app_name)
    for colour in colours:
        state = with_release(state, colour, branch=branch,
                             commit=SHA_BLUE if colour == "blue" else SHA_GREEN,
                             image="sha256:" + "c" * 64, who={"user": "ana"},
                             live=colour == live, at="2024-05-01T10:00:00+00:00")
    return state


def host_output(settings, *, now=NOW, deploy_dir=True, lock=None, owner=None,
                state=None, nginx=None, containers=None, history=None, app_env=None,
                listening=None, nginx_version=None, stale_owner=None):
    """What `commands.host_reading.inspect` prints for a host in the given condition.

    ``state`` is a dict (written with format_state) or raw text; ``nginx`` the
    file's text; ``containers`` {colour: inspect line}; ``None`` means the
    file is absent. Markers carry the test token (support.local_step.M); each block
    ends with the newline the script's end marker starts with. read_step
    turns the text into the step's result.
    """
    def block(name, text):
        return f"{M} begin {name}\n{text or ''}\n{M} end {name}\n"

    if isinstance(state, dict):
        state = format_state(state)
    out = f"{M} now {now}\n{M} deploy_dir {'yes' if deploy_dir else 'no'}\n"
    if stale_owner is not None:
        out += block("stale_owner", stale_owner)
    if lock:
        out += f"{M} lock {lock}\n"
    out += block("owner", owner)
    out += block("state", state)
    out += block("nginx", nginx)
    lines = "".join(line + "\n" for line in (containers or {}).values())
    out += block("containers", lines)
    if history is not None:
        out += block("history", "".join(line + "\n" for line in history))
    if nginx_version is not None:
        out += f"{M} nginx_version {nginx_version}\n"
    if app_env is not None:
        out += f"{M} app_env {app_env}\n"
    if listening is not None:
        out += block("listening", "".join(line + "\n" for line in listening))
    return out


def view_of(text, settings, code=0):
    """The HostView of an inspect step that printed ``text``."""
    return parse_view(read_step(text, code), settings)
