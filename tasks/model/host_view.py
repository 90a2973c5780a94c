"""HostView: what one reading of the host found (pure; commands/host_reading.py reads it)."""

from dataclasses import dataclass, field


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
    workers: dict = field(default_factory=dict)  # colour -> type -> counts (status)
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

    def runs(self, colour):
        """The commit ``colour``'s container runs, told by its image ('' when
        no container runs there, or its image names no commit); never the
        colour's checkout, which may hold a failed build. A stopped
        container runs nothing (after a failed release into a stopped
        colour it holds the failed build)."""
        container = self.containers[colour]
        if container.state not in ("running", "restarting", "paused"):
            return ""
        return container.runs_commit(self.record(colour).get("commit"))

    def colour_drift(self, colour):
        """A sentence when ``colour``'s container runs another commit than
        state.json records for it (a killed task, a hand-made change), else None."""
        recorded, running = self.record(colour).get("commit"), self.runs(colour)
        if not running or running == recorded:
            return None
        return (f"{colour} runs {running[:12]} but state.json records "
                f"{(recorded or 'nothing')[:12]} for it")

    def record(self, colour):
        if not self.state:
            return {}
        return self.state["colours"].get(colour) or {}
