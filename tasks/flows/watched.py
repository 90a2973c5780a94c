"""What a --watch leads to: revert (exit 1), promote a clean canary, or keep.

After the record, the switch is done and stays recorded: a watch that
reverts records that as one more entry, and a Ctrl-C during a watch
records nothing more; either way the task's block releases the lock.
"""

import time
from ..deploy.fleet_switch import SOLO
from ..deploy.steps import Attempt, stop_colour, switch_everyone, switch_nginx, verify
from ..deploy.watch import watch
from ..deploy.workers import hand_over
from ..errors import FAILED, Failure
from ..model.access_log import OK, REVERT, TOO_FEW
from ..model.pending import with_withdrawn
from ..model.processes import with_workers
from ..model.state import format_state


INTERRUPTED = 130  # the shell's code for Ctrl-C, as runner.operator_task uses


def watch_release(session, state, *, new, old, seconds, fields, before, fleet=SOLO):
    """A full release (or promotion) under watch: revert (raises) or keep.
    ``before``: the new colour's record before the task (what a revert puts back).
    ``fleet``: over several hosts each watches its own access log, and a
    revert on any host reverts every host (deploy/fleet_switch.py)."""
    outcome = watched(session, new=new, old=old, seconds=seconds, canary=False)
    s, rep = session.settings, session.reporter
    reverted = fleet.reverted_by_watch(outcome.verdict == REVERT)
    if reverted:
        revert(session, state, outcome, fields, before,
               cause=None if outcome.verdict == REVERT else reverted[0])
    line = outcome.sentence(s.watch_max_error_rate, s.watch_min_requests)
    rep.line(f"watch ended clean: {line}; {new} stays live" if outcome.verdict == OK
             else f"watch: {line}; {new} stays live")
    return outcome.as_dict(s.watch_max_error_rate, s.watch_min_requests)


def watch_batch(session, *, new, old, seconds):
    """--batch with --watch: this host's batch switched and is watched before
    the next starts, unrecorded; a revert verdict raises, so every host of
    the run switches back as after a failed release."""
    outcome = watched(session, new=new, old=old, seconds=seconds, canary=False)
    s = session.settings
    line = outcome.sentence(s.watch_max_error_rate, s.watch_min_requests)
    if outcome.verdict == REVERT:
        raise Failure(f"the watch of {session.name}'s batch calls for a revert: {line}; "
                      "every host switches back", f"fab -H {session.name} logs --colour "
                      f"{new} shows why; fix it and release again", code=FAILED)
    session.reporter.line(f"watch of this batch ended: {line}")


def watch_canary(session, state, *, new, old, seconds, fields, stop_old=False, before=None):
    """A canary under watch: revert (raises), promote when clean, or leave it
    for a person when too few requests came to judge."""
    outcome = watched(session, new=new, old=old, seconds=seconds, canary=True)
    s, rep, name = session.settings, session.reporter, session.name
    if outcome.verdict == REVERT:
        revert(session, state, outcome, fields, before)
    line = outcome.sentence(s.watch_max_error_rate, s.watch_min_requests)
    figures = outcome.as_dict(s.watch_max_error_rate, s.watch_min_requests)
    if outcome.verdict == TOO_FEW:
        rep.line(f"watch: {line}; the canary is NOT promoted and keeps running: "
                 f"fab -H {name} promote, or fab -H {name} rollback")
        figures["promoted"] = False
        return figures
    rep.line(f"watch ended clean: {line}; promoting {new}")
    with Attempt(session, live=old, fields={**fields, "from_colour": old, "to_colour": new,
                                            "was": "canary", "watch": figures}) as attempt:
        promoted = switch_everyone(session, attempt, state, new,
                                   nginx_version=session.view.nginx_version)
        hand_over(session, promoted, new, old, before=state)
    figures["promoted"] = True
    if stop_old:
        stop_colour(session, old)
    return figures


def watched(session, *, new, old, seconds, canary):
    """The watch; Ctrl-C leaves the switch as recorded (the task's block then
    releases the lock)."""
    try:
        return watch(session, new=new, old=old, seconds=seconds)
    except KeyboardInterrupt:
        name = session.name
        raise Failure(f"watch interrupted: what was recorded before it stands ({new} "
                      f"serves as recorded; `fab -H {name} status` shows it); the lock "
                      "was released",
                      (f"watch by hand, then fab -H {name} promote or fab -H {name} rollback"
                       if canary else f"watch by hand; to go back to {old}: "
                       f"fab -H {name} rollback"),
                      code=INTERRUPTED) from None


def revert(session, state, outcome, fields, before, cause=None):
    """Everyone back to the old colour at once; record `reverted` with the figures;
    exit 1 (the task's block then releases the lock, as it does if this fails).
    ``cause``: the host whose watch reverted, when it was another (a fleet)."""
    s, rep, name = session.settings, session.reporter, session.name
    new, old = outcome.new, outcome.old
    why = outcome.sentence(s.watch_max_error_rate, s.watch_min_requests)
    if cause:
        why = f"{cause}'s watch reverted (here: {why})"
    figures = outcome.as_dict(s.watch_max_error_rate, s.watch_min_requests)
    rep.line(f"watch: {why}: switching everyone back to {old}")
    started = time.monotonic()
    switch_nginx(session, old, nginx_version=session.view.nginx_version)
    verify(session, old)
    if outcome.detected_after_first_5xx is not None:
        # The first 5xx to everyone back on the old colour: detection on
        # the host's clock, the switch and its verification on ours.
        figures["reverted_after_first_5xx"] = round(
            outcome.detected_after_first_5xx + time.monotonic() - started, 2)
    back = with_workers(with_withdrawn(state, new, old, "reverted", before), old)
    with rep.phase("record") as ph:
        session.record(format_state(back),
                       session.history_line("reverted", **{
                           **fields, "from_colour": new, "to_colour": old,
                           "watch": figures, **({"caused_by": cause} if cause else {})}))
        ph.detail = "state.json, history (reverted)"
    hand_over(session, back, old, new, before=state, undo=False)  # a release's go back
    raise Failure(f"reverted by the watch: {why}; {old} serves everyone again",
                  f"{new} keeps the release for a look: fab -H {name} logs --colour {new}; "
                  "fix it and release again", code=FAILED,
                  extra={"result": "reverted", "live": old, "reverted": new, "watch": figures})
