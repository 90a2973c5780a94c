"""What one inspection of the host found, parsed from the script's output.

``scripts.inspect`` prints it; ``parse_view`` turns the step's markers into
a HostView; the decisions in plan.py read the view. No I/O here.
"""

import re
from dataclasses import dataclass, field

from .compose import parse_inspect
from .lock import parse_holder
from .nginx import read_nginx
from .state import StateError, parse_history, parse_state


@dataclass
class HostView:
    now: float
    deploy_dir: bool
    lock: str  # "taken" (by us), "held" (by someone else), "" (not asked)
    holder: object  # lock.Holder, or None when nobody holds the lock
    state: dict  # None when missing or unreadable (then state_error says why)
    state_error: object
    nginx_text: str
    nginx: object  # nginx.NginxView, or None when the file is absent
    containers: dict  # colour -> compose.Container
    history: list = field(default_factory=list)
    app_env_hash: str = ""
    listening: dict = field(default_factory=dict)  # port -> process name ('' if unknown)
    nginx_version: str = ""  # of the nginx NGINX_TEST_CMD runs; '' when unknown
    lock_taken_over: object = None  # lock.Holder of a stale lock this task took over

    @property
    def live(self):
        """The colour nginx actually serves; what state.json says when nginx is silent."""
        if self.nginx is not None and self.nginx.served:
            return self.nginx.served
        if self.nginx is None and self.state:
            return self.state.get("live")
        return None

    @property
    def drift(self):
        """A sentence when state.json and nginx disagree, else None."""
        if not self.state:
            return None
        recorded = self.state.get("live")
        if self.nginx is None:
            if recorded:
                return (f"state.json says {recorded} is live but the nginx file is "
                        "missing")
            return None
        if self.nginx.served is None:
            return (f"the nginx file proxies to port {self.nginx.port}, which is "
                    "neither colour's port")
        if self.nginx.drift:
            return (f"the nginx file's header says {self.nginx.header_live} but it "
                    f"proxies to {self.nginx.served} (edited by hand?)")
        if recorded != self.nginx.served:
            return f"state.json says {recorded or 'nothing'} is live but nginx serves {self.nginx.served}"
        return None

    def record(self, colour):
        if not self.state:
            return {}
        return self.state["colours"].get(colour) or {}


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
