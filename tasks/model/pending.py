"""Stage, canary and promote: the decisions and the state they leave. Pure.

A colour built and health-checked but not (yet) serving everyone carries a
``pending`` word in its state.json record, beside its commit, branch and
who/when:

- ``staged``: `release --no-switch` built it; nobody is sent to it; QA
  tries it on its port or through `fab preview`.
- ``canary``: `release --canary P` sends P % of clients to it (the nginx
  file's split_clients is the truth; ``canary_percent`` repeats it).
- ``reverted``: the watch sent everyone back from it.

`promote` makes a staged or canary colour live and clears the word; a
reverted build is never promoted (the watch judged it bad: only a new
release puts that colour live again); `rollback` never goes to any of them
(never live for everyone: a rollback goes back, not forward). `status`
shows the word as the colour's role.

Such a build records nothing about the colour's source: its record keeps
the branch and ref of the colour's last release that went live (what a
plain release follows), and the build's own source sits beside them
(``state.build_of``) until `promote` records it.
"""

from dataclasses import dataclass

from ..configuration.settings import other
from ..errors import FAILED, Failure
from .access_log import OK
from .state import (build_of, build_record, recorded_release, with_build_recorded,
                    with_build_unrecorded, with_live, with_release)

# History results that record what was done, not a failed attempt.
NOT_FAILED = ("ok", "staged", "canary", "promoted", "reverted")


def canary_of(view):
    """(colour, percent) of the canary nginx runs now, or None."""
    if view.nginx is not None and view.nginx.canary:
        return view.nginx.canary, view.nginx.canary_percent
    return None


# --- the state the tasks record --------------------------------------------------


def with_pending(state, colour, pending, *, branch, commit, image, who, ref=None,
                 percent=None, deployed=None, from_image=None):
    """The state after ``colour`` was built for staging or a canary: it runs
    the new build (``branch``: what it records once promoted; ``deployed``:
    the branch checked out), its recorded branch and ref stay as they were,
    the live colour does not change. ``from_image``: the --image name it was
    released from (no branch checked out), as a plain release records it."""
    before = state["colours"].get(colour) or {}
    new = with_release(state, colour, branch=branch, commit=commit, image=image, who=who,
                       live=False, ref=ref)
    record = new["colours"][colour]
    record["build"] = build_record(branch, deployed or branch, ref, from_image)
    new = with_build_unrecorded(new, colour, before)
    new["colours"][colour]["pending"] = pending
    if percent is not None:
        new["colours"][colour]["canary_percent"] = int(percent)
    return new


def with_promoted(state, colour):
    """``colour`` serves everyone: it is live and nothing about it is pending."""
    new = with_live(state, colour)
    if new["colours"][colour].get("pending"):
        new = with_build_recorded(new, colour)
    for key in ("pending", "canary_percent"):
        new["colours"][colour].pop(key, None)
    return new


def with_withdrawn(state, colour, live, pending, before=None):
    """Everyone is back on ``live``; ``colour`` keeps its build, marked ``pending``
    (``staged`` after a rollback of a canary, ``reverted`` after the watch).

    A build that was recorded live (a full release or a promotion under
    watch) gives the colour back the record it had before (``before``):
    the branch and ref of the release before it."""
    new = with_live(state, live)
    if not new["colours"][colour].get("pending"):
        new = with_build_unrecorded(new, colour, before)
    record = new["colours"][colour]
    record.pop("canary_percent", None)
    record["pending"] = pending
    return new


def after_switch(state, to, canary):
    """The state after `rollback`/`switch` made ``to`` live; ``canary`` is the
    canary colour that ran before (or None): it is staged again."""
    if canary and canary != to:
        return with_withdrawn(state, canary, to, "staged")
    return with_promoted(state, to) if canary == to else with_live(state, to)


def stops_old(watched):
    """--stop-old stops the old colour only after a clean watch (or with no
    watch at all): too few requests to judge is not clean."""
    return watched is None or watched.get("verdict") == OK


def history_note(entry):
    """The figures of a history entry, in a few words (`fab history`)."""
    parts = []
    if entry.get("maintenance"):
        said = f": {entry['message']}" if entry.get("message") else ""
        parts.append(f"maintenance {entry['maintenance']}{said}")
    if entry.get("percent"):
        parts.append(f"{entry['percent']}% of clients")
    if entry.get("was"):
        parts.append(f"was {entry['was']}")
    watch = entry.get("watch") or {}
    mine = (watch.get("colours") or {}).get(watch.get("new")) or {}
    if watch:
        parts.append(f"watch {watch.get('verdict')}: {watch.get('new')} "
                     f"{mine.get('errors', 0)}/{mine.get('requests', 0)} 5xx")
    return ", ".join(parts)


# --- decisions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    to: str  # the colour that will serve everyone
    live: str  # the colour serving (most clients) now
    kind: str  # "canary" or the record's pending word (staged, reverted)
    percent: int = None  # the canary's share, for a canary


def plan_promote(view, host_name):
    """What `promote` switches to: the canary, else the staged idle colour.

    Nothing staged and no canary is a refusal (exit 1): nothing changed.
    """
    canary = canary_of(view)
    if canary:
        return Promotion(to=canary[0], live=view.live, kind="canary", percent=canary[1])
    live = view.live
    idle = other(live) if live else None
    pending = view.record(idle).get("pending") if idle else None
    if pending == "reverted":
        record = view.record(idle)
        raise Failure(f"{idle} on {host_name} holds {(record.get('commit') or '?')[:12]}, which "
                      "its watch reverted: a reverted build is never promoted; nothing changed",
                      f"fix it and release again: fab -H {host_name} release "
                      "(add --watch SECONDS to watch it again)", code=FAILED)
    if not pending:
        raise Failure(f"nothing is staged on {host_name} and no canary runs: there is "
                      "nothing to promote; nothing changed",
                      f"stage a release first: fab -H {host_name} release --no-switch "
                      "(or --canary PERCENT)", code=FAILED)
    return Promotion(to=idle, live=live, kind=pending)


def refuse_pending(view, to, host_name):
    """rollback and switch go back to a colour that was live, never forward to one
    that only holds a staged (or reverted) build."""
    record = view.record(to)
    pending = record.get("pending")
    if pending:
        commit = (record.get("commit") or "?")[:12]
        if pending == "reverted":
            before = previous_release(view, record.get("commit"))
            back = (f"to go back to the release before it: fab -H {host_name} rollback "
                    f"--to {before[:12]}; or fix it and release again" if before
                    else f"fix it and release again: fab -H {host_name} release")
            raise Failure(
                f"{to} on {host_name} holds {commit}, which its watch reverted: rollback "
                "and switch only go back to a release that stayed live", back, code=FAILED)
        raise Failure(
            f"{to} on {host_name} holds {commit}, {pending} and never live: rollback and "
            "switch only go back to a release that was live",
            f"to make it live: fab -H {host_name} promote", code=FAILED)


def previous_release(view, reverted):
    """The newest release in the history read that went live, other than
    what is live now and the reverted build; None when none is known."""
    live = view.live and (view.runs(view.live) or view.record(view.live).get("commit"))
    for entry in reversed(view.history):
        commit = entry.get("commit")
        if commit and commit not in (live, reverted) and recorded_release(entry):
            return commit
    return None


def pending_source(record):
    """(branch, ref, follows) of a colour's build, for history lines."""
    build = build_of(record)
    return build["branch"], build["ref"], build["follows"]


def plan_canary(view, host_name, percent):
    """A canary needs a live colour to share the traffic with."""
    if percent is not None and not view.live:
        raise Failure(f"nothing is live on {host_name} yet: a canary shares the live "
                      "colour's clients", f"release first: fab -H {host_name} release",
                      code=FAILED)


def refuse_during_canary(view, host_name):
    """A release builds into the idle colour: during a canary that colour serves clients."""
    canary = canary_of(view)
    if canary:
        raise Failure(
            f"a canary of {canary[0]} ({canary[1]}%) runs on {host_name}: a release "
            "would rebuild it under its clients; nothing changed",
            f"end it first: fab -H {host_name} promote, or fab -H {host_name} rollback",
            code=FAILED)


def qa_access(settings, host_name, colour):
    """How QA reaches a staged colour, in one sentence."""
    port = settings.port_of(colour)
    preview = f"`fab -H {host_name} preview` (a tunnel from your machine)"
    if settings.bind_address in ("0.0.0.0", "::"):
        return f"QA reaches it at http://{host_name}:{port}/ (BIND_ADDRESS opens it) or {preview}"
    where = settings.bind_address.strip("[]")
    return f"QA reaches it with {preview}, or on the host at http://{where}:{port}/"
