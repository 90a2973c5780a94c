"""fab setup: check the host's tools, create DEPLOY_DIR, the first release (idempotent)."""

from ..commands import host_files
from ..deploy.steps import switch_nginx
from ..errors import FAILED, Failure
from ..model.state import empty_state, format_state
from .check import tool_problems, tools_script
from .release import ReleaseRequest, release_live


def setup(session, artifacts):
    """Check the host, create what is missing, first release into blue.
    ``artifacts``: the run's shipping.local_build.Artifacts (BUILD_ON=local)."""
    s, rep, name = session.settings, session.reporter, session.name
    first = ReleaseRequest(artifacts=artifacts)
    session.connect()
    with rep.phase("tools") as ph:
        result = session.run(tools_script(s))
        problems = tool_problems(result.values, need_git=first.made_here(s) is None)
        if problems:
            raise Failure(f"{name}: {'; '.join(problems)}",
                          "install them on the host (Debian: apt-get install git docker.io "
                          "nginx; Compose v2 as a docker CLI plugin), then run setup again",
                          code=FAILED)
        ph.detail = ", ".join(f"{t} {result.values[t]}"
                              for t in ("git", "docker", "compose", "nginx"))
    with rep.phase("dirs") as ph:
        result = session.run(host_files.setup(s, format_state(empty_state(s.app_name))))
        if result.code != 0:
            raise Failure(f"could not create {s.deploy_dir} on {name}: "
                          f"{result.values.get('error', result.stderr.strip())}",
                          "create it for the deploy user, or set DEPLOY_DIR", code=FAILED)
        created = [value for key, value in result.marks if key == "created"]
        ph.detail = ("created " + ", ".join(created)) if created else "all present"
    with session.locked() as view:
        if not view.live:  # the first release, in this block: it holds the lock
            summary = release_live(session, first, first=True)
        else:
            session.upload_app_env()
            if view.nginx is None:
                switch_nginx(session, view.live, nginx_version=view.nginx_version)
    if not view.live:
        # Its seconds, phases and round trips counted to the lock's release,
        # as every release's are.
        return {**summary, **session.summary("ok"), "released": True}
    rep.line(f"already set up: {view.live} is live; created what was missing, "
             "released nothing (use `fab release`)")
    return session.summary("ok", timed=False, live=view.live, released=False)
