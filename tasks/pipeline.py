"""The pipeline: release, switch, rollback and setup on one host.

Each task is its steps, in order, in one function; each step is a plain
call from steps.py that runs one script in the task's remote shell (or
probes over the connection) and returns what it found. Decisions come from
plan.py, scripts from scripts.py. A task's steps run in one ``with
session.locked() as view:`` block, which releases the lock however it ends.
On any failure in a task's ``with Attempt(...)`` block, one place
(``Attempt.fail``) switches nginx back if this task had switched it, puts
the idle colour back as it was, and records the attempt with its phase.
"""

from . import scripts, ship
from .preflight import tool_problems, tools_script
from .errors import FAILED, Failure
from .lock import describe_who
from .plan import plan_release, plan_switch
from .promote import watch_release
from .kept import list_script, prune_releases
from .stage import after_switch, canary_of
from .state import build_of, empty_state, format_state, source_of, with_release
from .steps import (Attempt, bring_up, built_fields, go_live, healthy_now, pre_switch,
                    stop_old_colour, switch_nginx)


def release(session, *, branch=None, ref=None, stop_old=False, wait_lock=0.0,
            force_unlock=False, first=False, watch_seconds=0):
    """Steps 1-9 of a release. Returns the summary dict; raises Failure.
    ``first``: setup's first release, run inside setup's block (connected,
    the lock held and released by setup)."""
    s, rep, name = session.settings, session.reporter, session.name
    if not first:
        session.connect()
    with session.locked(wait=wait_lock, force_unlock=force_unlock) as view:
        with Attempt(session, live=view.live, fields={"from_colour": view.live}) as attempt:
            plan = plan_release(view, s, name, branch=branch, ref=ref)
            target = plan.target
            attempt.fields.update(to_colour=target, **plan.history_fields)
            if plan.drift:
                rep.line(f"warning: {plan.drift}; trusting nginx: {plan.live or 'nothing'} "
                         "is live")
            session.upload_app_env()

            commit, image = bring_up(session, attempt, plan)

            pre_switch(session, attempt, target)

            state = with_release(view.state, target, branch=plan.record_branch,
                                 commit=commit, image=image, who=describe_who(session.who),
                                 live=True, ref=plan.ref, deployed=plan.branch)
            # The kept releases are read while nginx reloads; pruned once recorded.
            kept = go_live(session, attempt, target, state, read_meanwhile=list_script(s))
        prune_releases(session, state, kept)  # KEEP_RELEASES; a warning at worst
        watched = None
        if watch_seconds and not plan.live:
            rep.line("watch: nothing was live before this release, so nothing to go back "
                     "to: not watched")
        if watch_seconds and plan.live:  # --watch: revert by itself (raises), or keep
            watched = watch_release(session, state, new=target, old=plan.live,
                                    seconds=watch_seconds, fields=attempt.fields,
                                    before=view.record(target))
        stopped = stop_old_colour(session, plan.live, stop_old, watched)
    summary = session.summary("ok", live=target, previous=plan.live, branch=plan.branch,
                              ref=plan.ref, commit=commit, image=image,
                              **built_fields(attempt), **({"watch": watched} if watched else {}))
    keep = (f"; {plan.live} keeps running for `fab -H {name} rollback`"
            if plan.live and not stopped else "")
    rep.line(f"released {target}: {commit[:12]} ({ship.source_note(attempt.fields, plan.source)})"
             f" in {summary['seconds']:.1f}s{keep}")
    return summary


def switch(session, to=None, *, wait_lock=0.0):
    """rollback (to=None: the other colour) and switch --to: steps 7-9 after
    one good health answer from the colour switched to."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    with session.locked(wait=wait_lock, ports=False) as view:
        with Attempt(session, live=view.live, fields={"from_colour": view.live}) as attempt:
            to = plan_switch(view, s, name, to)
            record = view.record(to)
            canary = canary_of(view)
            if canary and to == view.live:
                # Everyone back from the canary: history says from which colour.
                attempt.fields.update(from_colour=canary[0], was="canary", percent=canary[1])
            build = build_of(record)
            attempt.fields.update(to_colour=to, branch=build["branch"], ref=build["ref"],
                                  commit=record.get("commit"))

            healthy_now(session, attempt, to)

            go_live(session, attempt, to, after_switch(view.state, to, canary and canary[0]),
                    unlock=True)  # the record step drops the lock too
    summary = session.summary("ok", live=to, previous=view.live, commit=record.get("commit"),
                              branch=build["branch"])
    rest = (f"the {canary_of(view)[0]} canary serves nobody now (staged: `fab -H {name} "
            "promote` still can)" if to == view.live else f"{view.live} keeps running")
    rep.line(f"{session.task}: {to} is live ({(record.get('commit') or '?')[:12]} "
             f"{source_of(record) or ''}) in {summary['seconds']:.1f}s; {rest}")
    return summary


def setup(session):
    """Check the host, create what is missing, first release into blue."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    with rep.phase("tools") as ph:
        result = session.run(tools_script(s))
        problems = tool_problems(result.values, need_git=session.artifacts is None)
        if problems:
            raise Failure(f"{name}: {'; '.join(problems)}",
                          "install them on the host (Debian: apt-get install git docker.io "
                          "nginx; Compose v2 as a docker CLI plugin), then run setup again",
                          code=FAILED)
        ph.detail = ", ".join(f"{t} {result.values[t]}"
                              for t in ("git", "docker", "compose", "nginx"))
    with rep.phase("dirs") as ph:
        result = session.run(scripts.setup(s, format_state(empty_state(s.app_name))))
        if result.code != 0:
            raise Failure(f"could not create {s.deploy_dir} on {name}: "
                          f"{result.values.get('error', result.stderr.strip())}",
                          "create it for the deploy user, or set DEPLOY_DIR", code=FAILED)
        created = [value for key, value in result.marks if key == "created"]
        ph.detail = ("created " + ", ".join(created)) if created else "all present"
    with session.locked() as view:
        if not view.live:  # the first release, in this block: it holds the lock
            summary = release(session, first=True)
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
