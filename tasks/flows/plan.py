"""fab release --plan (a dry run), and the look ahead a release takes before acting.

Both read the host and GIT_REPO and change nothing: which commit of which
branch would go into which colour, built where, what would ship and run,
and whether it would change anything at all (model/dry_run.py decides).
"""

import hashlib

from ..commands import building
from ..commands.host_reading import inspect, parse_view
from ..connection.session import app_env_bytes
from ..errors import Failure
from ..model.compose_file import render_compose
from ..model.dry_run import follow_note, nothing_to_release, outlook
from ..model.nginx_file import render_nginx
from ..model.plan import plan_release
from ..model.processes import planned_workers, processes_by_colour
from ..model.state import maintenance_of
from ..shipping.local_checkout import remote_commit


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def look_ahead(session, view, plan, request):
    """(Outlook, GIT_REPO's branches) of a release of ``plan``: one step on
    the host (`git ls-remote` there when the host builds), nothing changed."""
    s = session.settings
    made = request.made_here(s)
    result = session.run(building.resolve(s, branch=plan.branch, ref=plan.ref,
                                          remote=made is None))
    if made is None:
        commit = result.values.get("commit", "")
    elif made.image is not None:
        commit = made.image.commit
    else:
        commit = remote_commit(s, plan)
    app_env_same = True
    if s.has_app_env:  # the run's app.env: APP_ENV_FILE and SECRETS_CMD (cli/secrets.py)
        data = session.app_env if session.app_env is not None else app_env_bytes(s)
        app_env_same = sha256(data) == view.app_env_hash
    nginx_same = bool(view.live) and view.nginx_text == render_nginx(
        s, view.live, nginx_version=view.nginx_version or None,
        maintenance=maintenance_of(view.state))
    ahead = outlook(view, commit, app_env_same=app_env_same,
                    # As the host's compose file is now, with each colour's
                    # recorded processes: a changed setting renders another.
                    compose_same=result.values.get("compose", "") == sha256(
                        render_compose(s, processes_by_colour(view.state)).encode()),
                    nginx_same=nginx_same)
    return ahead, result.values.get("branches", "").split()


def unchanged(session, plan, ahead):
    """A release that would change nothing: said, nothing touched (exit 0)."""
    session.reporter.line(nothing_to_release(plan.live, ahead.commit, session.name,
                                             plan.target))
    return session.summary("unchanged", live=plan.live, commit=ahead.commit,
                           branch=plan.branch, ref=plan.ref)


def build_place(settings, request):
    """Where the image would be made, in words."""
    made = request.made_here(settings)
    if made is not None and made.image is not None:
        return f"--image {made.image.name} (made on this machine; no git, no build)"
    if made is not None:
        return "on this machine (BUILD_ON=local), then shipped: only the layers the host lacks"
    return "on the host (git checkout of GIT_REPO, docker compose build)"


def show_plan(session, request):
    """fab release --plan on one host: read, decide, say; nothing changes, no lock."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    view = session.view = parse_view(session.run(inspect(
        s, history_lines=20, app_env=bool(s.app_env_file), listening=True)), s)
    out = [f"plan for {name} (a dry run: nothing changes, no lock taken)"]
    try:
        plan = plan_release(view, s, name, branch=request.branch, ref=request.ref)
    except Failure as exc:
        out.append(f"  a release would stop here: {exc.message}")
        if exc.hint:
            out.append(f"  then: {exc.hint}")
        for text in out:
            rep.line(text)
        return session.summary("plan", timed=False, refused=exc.message)
    ahead, _ = look_ahead(session, view, plan, request)
    live = (f"{plan.live} runs {(ahead.running or '?')[:12]} "
            f"(follows {view.record(plan.live).get('branch') or '-'})"
            if plan.live else "nothing yet")
    source = f"ref {plan.ref}" if plan.ref else f"branch {plan.branch}"
    note = follow_note(view, plan, request.branch is not None or request.ref is not None)
    kind = ("canary of {}%".format(request.percent) if request.percent
            else "staged (no switch)" if request.no_switch else "switch everyone")
    out += [
        f"  live:       {live}",
        f"  target:     {plan.target} ({kind})",
        f"  deploys:    {source} @ {(ahead.commit or 'resolved at the checkout')[:12]}",
        f"  follows:    {plan.record_branch} afterwards (a plain release into "
        f"{plan.target} deploys it)",
        f"  build:      {build_place(s, request)}",
        f"  ships:      {', '.join(ahead.changes) or 'nothing new'}",
        "  pre-switch: "
        + (f"PRE_SWITCH_CMD `{s.pre_switch_cmd}` in {plan.target} before the switch"
           if s.pre_switch_cmd else "none (PRE_SWITCH_CMD is empty)"),
        "  workers:    " + planned_workers(view.state, plan.live, plan.target, s,
                                            ahead.commit, switches=kind == "switch everyone"),
    ]
    if note:
        out.append(f"  {note}")
    if plan.drift:
        out.append(f"  warning: {plan.drift}; a release trusts nginx")
    if maintenance_of(view.state):
        out.append("  maintenance is on: the public keeps getting the 503 page after it")
    if ahead.unchanged and not request.force and not (request.percent or request.no_switch):
        out.append("  outcome:    " + nothing_to_release(plan.live, ahead.commit, name,
                                                         plan.target))
    else:
        out.append(f"  outcome:    a release into {plan.target}")
    for text in out:
        rep.line(text)
    return session.summary("plan", timed=False, live=plan.live, target=plan.target,
                           branch=plan.branch, ref=plan.ref, commit=ahead.commit or None,
                           changes=list(ahead.changes), unchanged=ahead.unchanged)
