"""unlock, repair, logs and history: looking after a host."""

import sys

from ..commands import containers, host_files
from ..commands.locking import unlock_lock
from ..configuration.settings import COLOURS
from ..deploy.workers import put_right
from ..errors import FAILED, LOCKED, Failure
from ..model.pending import NOT_FAILED, history_note
from ..model.plan import require_setup
from ..model.rebuilt_state import rebuilt_state
from ..model.state import format_state, parse_history, source_of
from ..output import emit, emit_json, table


def unlock(session, force=False):
    """Show the holder and remove the lock; a task still running here keeps it."""
    session.connect()
    view = session.inspect()
    if view.holder is None:
        session.reporter.line("the lock is free; nothing to do")
        return {"host": session.name, "removed": False}
    session.reporter.line(f"lock held by {view.holder.describe()}")
    if view.holder.local_and_alive and not force:
        # Removing it would let a second task change the host under the first.
        raise Failure(
            f"{session.name} is locked by a task that is still running on this machine "
            f"(pid {view.holder.record.get('pid')}); the lock was not removed",
            f"wait for it to finish or stop it (kill {view.holder.record.get('pid')}); "
            f"`fab -H {session.name} unlock --force` removes the lock anyway", code=LOCKED)
    if view.holder.local_and_alive:
        session.reporter.line("--force: removing the lock of a task that still runs")
    session.run(unlock_lock(session.settings))
    session.reporter.line("lock removed")
    return {"host": session.name, "removed": True, "holder": view.holder.record}


def repair(session):
    """Rebuild state.json from what nginx serves and what runs."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    with session.locked() as view:
        if not view.deploy_dir:
            require_setup(view, name)
        state, found = rebuilt_state(view, s)
        line = session.history_line("ok", to_colour=state["live"])
        with rep.phase("repair") as ph:
            out = session.run(host_files.record(s, state_text=format_state(state),
                                             history_line=line))
            if out.code != 0:
                raise Failure(f"{out.values.get('error') or f'exit {out.code}'} on {name}; "
                              "state.json is as it was",
                              f"free space or fix {s.deploy_dir}, then repair again",
                              code=FAILED)
            ph.detail = f"state.json rebuilt: live {state['live'] or 'nothing'}"
        put_right(session, state, state["live"])
        for colour in COLOURS:
            record = state["colours"][colour]
            if not record:
                container = view.containers[colour]
                rep.line(f"{colour}: nothing released" + (
                    " (no container)" if container.state == "missing" else
                    f" (its container, {container.describe()}, holds a build whose "
                    "release failed)"))
                continue
            rep.line(f"{colour}: {source_of(record)} (from {found[colour]}), commit "
                     f"{(record.get('commit') or '-')[:12]}, container "
                     f"{view.containers[colour].describe()}")
        return {"host": name, "live": state["live"], "state": state}


def connect(session):
    """Connect without a phase line; say so when --accept-new-host-key trusted a key."""
    session.host.connect()
    accepted = session.host.accepted_host_key
    if accepted:
        emit(new_host_key_line(session.name, accepted), sys.stderr)


def new_host_key_line(host_name, accepted):
    """What --accept-new-host-key trusted: (known_hosts name, type, fingerprint, file)."""
    name, key_type, fingerprint, path = accepted
    return (f"{host_name}: new host key {key_type} {fingerprint} for {name} trusted on "
            f"first use and added to {path}")


def logs(session, colour, lines, follow, prefix="", process=None):
    """Stream a colour's container logs (default: the live colour); ``prefix``
    starts each line (the host's name when the task runs on several)."""
    connect(session)
    if colour is None:
        view = session.inspect()
        require_setup(view, session.name)
        colour = view.live or "blue"
    errors = []

    def show(stream, text):
        # The script's own errors (no DEPLOY_DIR...) are explained below, not leaked.
        (errors if stream == "stderr" else []).append(text)
        if stream != "stderr":
            emit(prefix + text if prefix else text)

    try:
        result = session.run(containers.logs(session.settings, colour, lines, follow,
                                             process),
                                  on_line=show)
    except KeyboardInterrupt:
        if not follow:
            raise
        # Ctrl-C is how --follow ends: no lock, nothing to record or undo.
        return {"host": session.name, "colour": colour}
    if result.code != 0:
        view = session.inspect()  # why: only on failure, the common case costs nothing
        require_setup(view, session.name)
        raise Failure(f"could not read the logs of {colour} on {session.name} "
                      f"(exit {result.code}): {(errors or ['no output'])[-1].strip()}",
                      f"`fab -H {session.name} status` shows its containers", code=FAILED)
    return {"host": session.name, "colour": colour}


def history(session, lines, json_mode):
    connect(session)
    result = session.run(host_files.history(session.settings, lines))
    entries = parse_history(result.stdout)
    if json_mode:
        for entry in entries:
            emit_json({"host": session.name, **entry})
        return None
    rows = [[e.get("time", "-"), e.get("task", "-"), e.get("result", "-"),
             f"{e.get('from') or '-'} -> {e.get('to') or '-'}",
             source_of(e) or (f"image {e['image']}" if e.get("image") else "-"),
             (e.get("commit") or "-")[:12]
             + (f" (signed {e['signer']})" if e.get("signer") else ""),
             f"{e.get('duration', 0):.1f}s",
             e.get("user", "?") + "@" + e.get("machine", "?"),
             (f"{e.get('phase')}: {e.get('error')}" if e.get("result") not in NOT_FAILED
              else history_note(e))]
            for e in entries]
    emit(f"{session.name}  history of {session.settings.app_name} (newest last)")
    if rows:
        emit(table(rows, ["time", "task", "result", "colours", "branch", "commit",
                          "took", "by", "failure or figures"]))
    else:
        emit("  no entries yet")
    return None
