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


def iso_utc(text):
    """Any ISO 8601 time (Docker's `2025-03-02T10:15:43.123456789Z` too) in
    the one format state.json and history use (`2025-03-02T10:15:43+00:00`);
    None when it is not a time (Docker's zero time `0001-01-01T00:00:00Z`)."""
    if not text or text.startswith("0001-"):
        return None
    head, _, rest = text.partition(".")
    zone = ""
    if rest:  # drop the fraction (Docker gives nanoseconds), keep the zone
        digits = len(rest) - len(rest.lstrip("0123456789"))
        zone = rest[digits:]
    else:
        for sign in ("Z", "+", "-"):
            at = head.rfind(sign)
            if at > 10:  # past the date's own dashes
                head, zone = head[:at], head[at:]
                break
    try:
        when = datetime.fromisoformat(head + ("+00:00" if zone in ("", "Z") else zone))
    except ValueError:
        return None
    return when.astimezone(timezone.utc).replace(microsecond=0).isoformat()


def source_of(record):
    """What a colour runs, in words: `ref v1.2` after a --ref release, else its branch."""
    if record.get("ref"):
        return f"ref {record['ref']}"
    return record.get("branch") or None


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


def with_release(state, colour, *, branch, commit, image, who, live, at=None, ref=None):
    """A new state after ``colour`` was released (and made live if ``live``).

    ``branch`` is the branch the colour follows from now on; ``ref``, for a
    --ref release, is what was deployed (then the commit need not be on
    ``branch``).
    """
    at = at or now_iso()
    new = json.loads(json.dumps(state))
    new["colours"][colour] = {"branch": branch, "commit": commit, "image": image,
                              "deployed_at": at, "deployed_by": who}
    if ref:
        new["colours"][colour]["ref"] = ref
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


def maintenance_of(state):
    """The record of `fab maintenance on` in state.json, or None when it is off.

    Every render of the nginx file reads it, so a release, promote, rollback
    or switch keeps the maintenance page on until a person turns it off.
    """
    record = (state or {}).get("maintenance")
    return record if isinstance(record, dict) and record.get("token") else None


def bypass_headers(state):
    """The header that lets bluegreen's own checks through a maintenance page."""
    record = maintenance_of(state)
    return {BYPASS_HEADER: record["token"]} if record else {}


# nginx reads it as $http_x_bluegreen_bypass (templates/nginx.conf.j2).
BYPASS_HEADER = "X-Bluegreen-Bypass"


def history_entry(*, host, app, task, who, result, duration, from_colour=None,
                  to_colour=None, branch=None, commit=None, phase=None, error=None,
                  at=None, ref=None):
    """One line of history.jsonl: every attempt, failures included."""
    entry = {"time": at or now_iso(), "host": host, "app": app, "task": task,
             "result": result, "from": from_colour, "to": to_colour,
             "branch": branch, "commit": commit, "duration": round(duration, 2),
             **who}
    if ref:
        entry["ref"] = ref
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


def recover_branch(colour, old_record, entries, commit, default):
    """(branch, ref, where from) for repair: what a colour followed before.

    The old state.json's record when it could be read, else the newest
    successful release into the colour in history.jsonl, else ``default``
    (BLUE_BRANCH/GREEN_BRANCH). A --ref is kept only while the colour still
    runs that release's commit.
    """
    def ref_of(record):
        return record.get("ref") if record.get("ref") and record.get("commit") == commit else None

    if old_record.get("branch"):
        return old_record["branch"], ref_of(old_record), "state.json"
    for entry in reversed(entries):
        if (entry.get("task") in ("release", "setup") and entry.get("to") == colour
                and entry.get("result") == "ok" and entry.get("branch")):
            return entry["branch"], ref_of(entry), "history.jsonl"
    return default, None, f"{colour.upper()}_BRANCH: no record of an earlier branch"
