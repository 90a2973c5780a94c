"""state.json and history.jsonl: what is deployed where, and what was tried.

Pure functions over plain data; the remote scripts read and write the files.
"""

import json
from datetime import datetime, timezone

from ..configuration.settings import COLOURS
from ..errors import FAILED, Failure

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


def build_of(record):
    """Where the build a colour runs came from: {"branch", "ref", "follows"}.

    A colour's record has two sources. ``branch`` and ``ref`` are what its
    last release that went live recorded: ``branch`` is what a plain release
    into it follows. ``build``, present when it differs, is the source of the
    build it runs now: a staged, canary or reverted build (never live, or
    sent back: it records nothing), or a release whose BLUEGREEN_<COLOUR>_BRANCH
    won for its run only. ``follows`` is the branch the build records once it
    goes live (`promote`).
    """
    build = record.get("build")
    if isinstance(build, dict):
        out = {"branch": build.get("branch"), "ref": build.get("ref"),
               "follows": build.get("follows")}
        if build.get("image"):  # released from --image: no branch was checked out
            out["image"] = build["image"]
        return out
    return {"branch": record.get("branch"), "ref": record.get("ref"),
            "follows": record.get("branch")}


def source_of(record):
    """What a colour runs (or a history entry deployed), in words: `ref v1.2`
    after a --ref release, else its branch."""
    build = build_of(record)
    if build.get("image"):
        return f"image {build['image']}"
    if build["ref"]:
        return f"ref {build['ref']}"
    return build["branch"] or None


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


def build_record(follows, deployed, ref, from_image=None):
    """A record's "build": what was checked out (``deployed``, ``ref``), or the
    --image released (no branch checked out), and the branch it ``follows``."""
    if from_image:
        return {"branch": None, "ref": None, "image": from_image, "follows": follows}
    return {"branch": deployed, "ref": ref, "follows": follows}


def with_release(state, colour, *, branch, commit, image, who, live, at=None, ref=None,
                 deployed=None, from_image=None):
    """A new state after ``colour`` was released (and made live if ``live``).

    ``branch`` is the branch the colour follows from now on; ``ref``, for a
    --ref release, is what was deployed (then the commit need not be on
    ``branch``). ``deployed``: the branch checked out, when it was not
    ``branch`` (a BLUEGREEN_<COLOUR>_BRANCH for this run only). ``from_image``:
    the --image name it was released from (no branch was checked out; the
    colour still follows ``branch``).
    """
    at = at or now_iso()
    new = json.loads(json.dumps(state))
    record = new["colours"][colour] = {"branch": branch, "commit": commit, "image": image,
                                       "deployed_at": at, "deployed_by": who}
    if ref:
        record["ref"] = ref
    if from_image or (deployed and deployed != branch):
        record["build"] = build_record(branch, deployed, ref, from_image)
    if live:
        new["live"] = colour
    new["updated_at"] = at
    return new


def with_build_unrecorded(state, colour, before):
    """``colour`` keeps the build it runs, but its recorded branch and ref go
    back to ``before`` (its record before the attempt): a build that did not
    go live for good (staged, canary, reverted) records nothing."""
    new = json.loads(json.dumps(state))
    record = new["colours"][colour]
    build = build_of(record)
    for key in ("branch", "ref"):
        record.pop(key, None)
        if (before or {}).get(key):
            record[key] = before[key]
    record["build"] = build
    return new


def with_build_recorded(state, colour):
    """``colour``'s build went live for everyone (promote): its source is
    now the colour's recorded branch and ref."""
    new = json.loads(json.dumps(state))
    record = new["colours"][colour]
    build = build_of(record)
    record.pop("build", None)
    record.pop("ref", None)
    record["branch"] = build["follows"] or build["branch"]
    if build["ref"]:
        record["ref"] = build["ref"]
    # From --image, or off another branch: as a plain release of it records.
    if build.get("image") or (build["branch"] and build["branch"] != record["branch"]):
        record["build"] = build_record(record["branch"], build["branch"], build["ref"],
                                       build.get("image"))
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


def with_signer(state, colour, principal):
    """``state`` with who signed the colour's commit (ALLOWED_SIGNERS), if known."""
    if principal:
        state["colours"][colour]["signed_by"] = principal
    return state


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


# History results that put a colour live for everyone (its `to`).
WENT_LIVE = ("ok", "promoted", "reverted")


def last_failure(entries, colour):
    """The failed release into ``colour`` that nothing has made good since, or None.

    A later release into the colour (staged, canary and reverted ones too)
    replaced what failed; a colour that has gone live since (rollback,
    switch, promote, a watch that sent everyone back to it) served everyone
    after the failure: neither is a failed colour any more.
    """
    for entry in reversed(entries):
        if entry.get("to") != colour:
            continue
        result, task = entry.get("result"), entry.get("task")
        if task in ("release", "setup"):
            return None if result in WENT_LIVE + ("staged", "canary") else entry
        if result in WENT_LIVE:
            return None
    return None


def recorded_release(entry):
    """Whether a history entry put a build live that the colour then recorded:
    a release, a promotion (a canary promoted by its watch is a `release`
    entry `promoted`), or `rollback --to` a kept release. Not a plain
    rollback or switch: those go back to what was recorded before."""
    task, result = entry.get("task"), entry.get("result")
    return ((task in ("release", "setup") and result in ("ok", "promoted"))
            or (task == "promote" and result == "promoted")
            or (task == "rollback" and result == "ok" and bool(entry.get("kept"))))


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
        if entry.get("to") == colour and entry.get("branch") and recorded_release(entry):
            return entry.get("follows") or entry["branch"], ref_of(entry), "history.jsonl"
    return default, None, f"{colour.upper()}_BRANCH: no record of an earlier branch"
