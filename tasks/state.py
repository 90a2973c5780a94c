"""state.json and history.jsonl: what is deployed where, and what was tried.

Pure functions over plain data; the remote scripts read and write the files.
"""

import json
from datetime import datetime, timezone

from .config import COLOURS
from .errors import FAILED, Failure

STATE_VERSION = 1


def now_iso():
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class StateError(Failure):
    """state.json is missing or unreadable: releases stop until `repair`."""

    def __init__(self, why, path):
        super().__init__(
            f"{path} {why}", "run `fab repair` to rebuild it from the nginx file "
            "and the running containers, then release again", code=FAILED)


def empty_state(app):
    return {"version": STATE_VERSION, "app": app, "live": None,
            "colours": {c: {} for c in COLOURS}, "updated_at": None}


def parse_state(text, path="state.json"):
    """The state of a host, checked enough that later code can trust it."""
    if text is None or not text.strip():
        raise StateError("is missing", path)
    try:
        data = json.loads(text)
    except ValueError:
        raise StateError("is not valid JSON (corrupted?)", path) from None
    if not isinstance(data, dict) or not isinstance(data.get("colours"), dict):
        raise StateError("has no 'colours' record (corrupted?)", path)
    if data.get("live") not in (None, *COLOURS):
        raise StateError(f"names an unknown live colour {data.get('live')!r}", path)
    colours = data["colours"]
    for colour in COLOURS:
        record = colours.get(colour) or {}
        if not isinstance(record, dict):
            raise StateError(f"has a broken record for {colour}", path)
        colours[colour] = record
    return data


def format_state(state):
    return json.dumps(state, indent=2, sort_keys=True) + "\n"


def with_release(state, colour, *, branch, commit, image, who, live, at=None):
    """A new state after ``colour`` was released (and made live if ``live``)."""
    at = at or now_iso()
    new = json.loads(json.dumps(state))
    new["colours"][colour] = {"branch": branch, "commit": commit, "image": image,
                              "deployed_at": at, "deployed_by": who}
    if live:
        new["live"] = colour
    new["updated_at"] = at
    return new


def with_live(state, colour, at=None):
    """A new state after a switch or rollback to ``colour``."""
    new = json.loads(json.dumps(state))
    new["live"] = colour
    new["updated_at"] = at or now_iso()
    return new


def history_entry(*, host, app, task, who, result, duration, from_colour=None,
                  to_colour=None, branch=None, commit=None, phase=None, error=None,
                  at=None):
    """One line of history.jsonl: every attempt, failures included."""
    entry = {"time": at or now_iso(), "host": host, "app": app, "task": task,
             "result": result, "from": from_colour, "to": to_colour,
             "branch": branch, "commit": commit, "duration": round(duration, 2),
             **who}
    if phase:
        entry["phase"] = phase
    if error:
        entry["error"] = error
    return entry


def format_history_line(entry):
    # One line, always: a newline inside a value would split the record.
    return json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"


def parse_history(text):
    """History entries, oldest first; lines that are not JSON are skipped."""
    entries = []
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def last_attempt(entries, colour):
    """The newest release attempt into ``colour``, or None."""
    for entry in reversed(entries):
        if entry.get("task") in ("release", "setup") and entry.get("to") == colour:
            return entry
    return None
