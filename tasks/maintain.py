"""unlock, repair, logs and history: looking after a host."""

from . import scripts
from .config import COLOURS
from .errors import FAILED, Failure
from .output import emit, emit_json, table
from .plan import require_setup
from .state import (empty_state, format_state, iso_utc, parse_history, recover_branch,
                    source_of)


def unlock(session):
    """Show the holder and remove the lock."""
    session.connect()
    view = session.inspect()
    if view.holder is None:
        session.reporter.line("the lock is free; nothing to do")
        return {"host": session.name, "removed": False}
    session.reporter.line(f"lock held by {view.holder.describe()}")
    session.host.run(scripts.unlock_lock(session.settings))
    session.reporter.line("lock removed")
    return {"host": session.name, "removed": True, "holder": view.holder.record}


def repair(session):
    """Rebuild state.json from what nginx serves and what runs."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    view = session.lock()
    try:
        if not view.deploy_dir:
            require_setup(view, name)
        result = session.host.run(scripts.repair_facts(s))
        values, _ = scripts.parse_output(result.stdout)
        state = empty_state(s.app_name)
        old = view.state or {}
        found = {}  # colour -> where its branch came from, for the operator
        for colour in COLOURS:
            commit = values.get(f"{colour}_commit") or None
            container = view.containers[colour]
            recorded = (old.get("colours") or {}).get(colour) or {}
            if not commit and container.state == "missing":
                continue
            branch, ref, found[colour] = recover_branch(
                colour, recorded, view.history, commit, s.branch_of(colour))
            record = {
                "branch": branch, "commit": commit, "image": container.image or None,
                # One time format in state.json: Docker's StartedAt has nanoseconds and Z.
                "deployed_at": (iso_utc(recorded.get("deployed_at") or "")
                                or iso_utc(container.started_at)),
                "deployed_by": recorded.get("deployed_by") or "unknown (rebuilt by repair)"}
            if ref:
                record["ref"] = ref
            state["colours"][colour] = record
        if view.nginx is not None and view.nginx.served is None:
            raise Failure(f"{s.nginx_file} proxies to port {view.nginx.port}, which is "
                          "neither colour's port: cannot tell which colour is live",
                          "fix the nginx file or BLUE_PORT/GREEN_PORT, then repair again",
                          code=FAILED)
        state["live"] = view.nginx.served if view.nginx is not None else None
        line = session.history_line("ok", to_colour=state["live"])
        with rep.phase("repair") as ph:
            out = session.host.run(scripts.finish(s, state_text=format_state(state),
                                                  history_line=line))
            if out.code != 0:
                values, _ = scripts.parse_output(out.stdout)
                raise Failure(f"{values.get('error') or f'exit {out.code}'} on {name}; "
                              "state.json is as it was",
                              f"free space or fix {s.deploy_dir}, then repair again",
                              code=FAILED)
            session.locked = False
            ph.detail = f"state.json rebuilt: live {state['live'] or 'nothing'}"
        for colour in COLOURS:
            record = state["colours"][colour]
            if not record:
                rep.line(f"{colour}: nothing deployed (no checkout, no container)")
                continue
            rep.line(f"{colour}: {source_of(record)} (from {found[colour]}), commit "
                     f"{(record.get('commit') or '-')[:12]}, container "
                     f"{view.containers[colour].describe()}")
        return {"host": name, "live": state["live"], "state": state}
    finally:
        session.unlock()


def logs(session, colour, lines, follow):
    """Stream a colour's container logs (default: the live colour)."""
    session.host.connect()
    if colour is None:
        view = session.inspect()
        colour = view.live or "blue"
    try:
        result = session.host.run(
            scripts.logs(session.settings, colour, lines, follow),
            on_line=lambda _, text: emit(text))
    except KeyboardInterrupt:
        if not follow:
            raise
        # Ctrl-C is how --follow ends: no lock, nothing to record or undo.
        return {"host": session.name, "colour": colour}
    if result.code != 0:
        raise Failure(f"could not read the logs of {colour} on {session.name} "
                      f"(exit {result.code})", "is the app set up? `fab status`",
                      code=FAILED)
    return {"host": session.name, "colour": colour}


def history(session, lines, json_mode):
    session.host.connect()
    result = session.host.run(scripts.history(session.settings, lines))
    entries = parse_history(result.stdout)
    if json_mode:
        for entry in entries:
            emit_json({"host": session.name, **entry})
        return None
    rows = [[e.get("time", "-"), e.get("task", "-"), e.get("result", "-"),
             f"{e.get('from') or '-'} -> {e.get('to') or '-'}", source_of(e) or "-",
             (e.get("commit") or "-")[:12], f"{e.get('duration', 0):.1f}s",
             e.get("user", "?") + "@" + e.get("machine", "?"),
             (f"{e.get('phase')}: {e.get('error')}" if e.get("result") != "ok" else "")]
            for e in entries]
    emit(f"{session.name}  history of {session.settings.app_name} (newest last)")
    if rows:
        emit(table(rows, ["time", "task", "result", "colours", "branch", "commit",
                          "took", "by", "failure"]))
    else:
        emit("  no entries yet")
    return None

