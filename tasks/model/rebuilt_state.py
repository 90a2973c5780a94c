"""state.json rebuilt from what nginx serves and what runs (pure): what
`fab repair` records."""

from ..configuration.settings import COLOURS
from ..errors import FAILED, Failure
from .lock_owner import describe_who
from .processes import has_workers, procfile_of_commit
from .state import (empty_state, iso_utc, maintenance_of, now_iso, recorded_release,
                    recover_branch)

UNKNOWN = "unknown (rebuilt by repair)"


def last_release(entries, colour, commit):
    """The newest history.jsonl entry that put ``commit`` into ``colour`` and
    recorded it (a release, a promotion, `rollback --to`), or None."""
    return next((e for e in reversed(entries or []) if e.get("to") == colour
                 and e.get("commit") == commit and recorded_release(e)), None)


def failed_build(entries, colour, commit):
    """Whether the newest attempt history.jsonl tells of to put ``commit`` into
    ``colour`` failed: a stopped container holding it is that failed build
    (a colour with no release before keeps it, stopped, for its logs)."""
    for e in reversed(entries or []):
        if e.get("to") != colour or e.get("commit") != commit:
            continue
        if recorded_release(e):
            return False
        if e.get("task") in ("release", "setup") and e.get("result") == "failed":
            return True
    return False


def rebuilt_state(view, s):
    """(state, found): the state the host's nginx file and containers tell;
    ``found`` {colour: where its branch came from}, for the operator."""
    state = empty_state(s.app_name)
    old = view.state or {}
    if maintenance_of(old):  # the nginx file still serves the page: keep it on
        state["maintenance"] = old["maintenance"]
    elif view.nginx is not None and view.nginx.maintenance:
        # state.json is unreadable, but nginx serves the page: it stays on,
        # with the token the file checks (a new one would lock our probes out).
        # Its message and page kind too, as the file says them (older files: none).
        state["maintenance"] = {"message": "", "page": "file", **view.nginx.maintenance,
                                "by": UNKNOWN}
    found = {}  # colour -> where its branch came from, for the operator
    for colour in COLOURS:
        container = view.containers[colour]
        recorded = (old.get("colours") or {}).get(colour) or {}
        # What the container runs (its image's tag or label), never the
        # colour's checkout: after a failed release that holds the failed build.
        # A stopped one runs nothing: its record stands, else its image's,
        # unless that image is a build whose release failed: no release at all.
        commit = view.runs(colour) or recorded.get("commit")
        if not commit and not failed_build(view.history, colour, container.runs_commit()):
            commit = container.runs_commit()
        if not commit:
            continue
        same = recorded.get("commit") == commit  # the record still tells of it
        branch, ref, found[colour] = recover_branch(
            colour, recorded, view.history, commit, s.branch_of(colour))
        # Who released it and when: the record, else the history line of that
        # release, else the container's start (a Docker restart moves it).
        told = recorded if same else {}
        released = last_release(view.history, colour, commit) or {}
        record = {
            "branch": branch, "commit": commit, "image": container.image or None,
            # One time format in state.json: Docker's StartedAt has nanoseconds and Z.
            "deployed_at": (iso_utc(told.get("deployed_at") or "")
                            or iso_utc(released.get("time") or "")
                            or iso_utc(container.started_at)),
            "deployed_by": (told.get("deployed_by")
                            or (describe_who(released) if released.get("user") else UNKNOWN))}
        if ref:
            record["ref"] = ref
        processes = (recorded.get("processes") if recorded.get("commit") == commit
                     else procfile_of_commit(old, commit))
        if processes:
            record["processes"] = processes
        state["colours"][colour] = record
    if view.nginx is not None and view.nginx.served is None:
        raise Failure(f"{s.nginx_file} proxies to port {view.nginx.port}, which is "
                      "neither colour's port: cannot tell which colour is live",
                      "fix the nginx file or BLUE_PORT/GREEN_PORT, then repair again",
                      code=FAILED)
    state["live"] = view.nginx.served if view.nginx is not None else None
    if old.get("procfiles"):
        state["procfiles"] = old["procfiles"]
    if has_workers(state):  # workers follow the colour nginx serves
        state["workers"] = state["live"]
    state["updated_at"] = now_iso()
    return state, found
