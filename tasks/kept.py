"""Kept releases: the app's images tagged by commit, pruned, listed, rolled back to.

Every release tags its image ``bluegreen-APP:<commit>`` (build_scripts.build).
After a successful release (and ``rollback --to``) the KEEP_RELEASES newest
of them stay, with every image a colour runs or state.json records; older
commit tags, the app's untagged images and stale build cache go. ``fab
releases`` lists what is kept; ``fab rollback --to COMMIT`` starts one of
them in the idle colour with no git and no build.

The scripts only gather and remove; which images go is decided here by pure
functions over what they gathered (``prune_plan``, ``kept_releases``).
"""

import re
import shlex
import time
from dataclasses import dataclass, field
from datetime import datetime

from . import build_scripts, health, scripts
from .validate import Invalid
from .compose import parse_inspect
from .config import other
from .errors import BAD_INPUT, FAILED, Failure
from .lock import describe_who
from .output import emit, emit_json, table
from .plan import require_setup
from .stage import refuse_during_canary
from .state import build_of, iso_utc, parse_history, with_release
from .steps import Attempt, go_live, step_bound

q = shlex.quote

# Compose labels the images it builds with their project (APP_NAME): how the
# app's untagged images are told apart from every other image on the host.
PROJECT_LABEL = "com.docker.compose.project"
COMMIT_TAG_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 repos
PREFIX_RE = re.compile(r"[0-9a-fA-F]{4,64}")
INSPECT_IMAGE = "{{.Id}}|{{.Created}}|{{.Size}}|{{range .RepoTags}}{{.}} {{end}}"
HISTORY_LINES = 2000


@dataclass(frozen=True)
class Image:
    id: str
    created: str  # ISO time, UTC; '' when unknown
    size: int  # bytes, with the layers it shares
    tags: tuple  # repo:tag names


@dataclass
class Release:
    """One kept release: a commit-tagged image of this app."""

    commit: str
    image: str
    built_at: str  # the image's creation time
    released_at: str  # the newest successful release of the commit ('' if none recorded)
    size: int
    branch: str = None
    ref: str = None
    colours: list = field(default_factory=list)  # colours running this image now
    live: bool = False

    @property
    def newest(self):
        """When this release last became something: built or released, the later."""
        return max(self.built_at or "", self.released_at or "")

    def to_json(self, host, app):
        return {"host": host, "app": app, "commit": self.commit, "branch": self.branch,
                "ref": self.ref, "built_at": self.built_at or None,
                "released_at": self.released_at or None, "size": self.size,
                "image": self.image, "colours": self.colours, "live": self.live}


# --- the scripts ---------------------------------------------------------------------


def list_script(settings, history_lines=HISTORY_LINES):
    """The app's images (commit-tagged, colour-tagged, untagged), its containers'
    images, and the history that names each commit's branch."""
    repo = q(f"bluegreen-{settings.app_name}")
    label = q(f"label={PROJECT_LABEL}={settings.app_name}")
    # Both listings at once (each docker call ~17 ms here); sort merges their lines.
    ids = (f"{{ docker images -q --no-trunc {repo} & docker images -q --no-trunc "
           f"--filter dangling=true --filter {label}; wait; }} 2>/dev/null | sort -u")
    start, finish = scripts.side_by_side({
        "images": f'ids=$({ids}); [ -z "$ids" ] || docker image inspect --format '
                  f'{q(INSPECT_IMAGE)} $ids 2>/dev/null',
        "containers": scripts.inspect_containers(settings),
    })
    return "\n".join([
        start,
        scripts.block("history", f"tail -n {int(history_lines)} "
                                 f"{q(settings.deploy_dir + '/history.jsonl')} 2>/dev/null"),
        finish,
    ]) + "\n"


def prune_script(tags, ids, cache_age=None):
    """Remove image tags and untagged images one by one (each reports); build
    cache unused for ``cache_age`` seconds goes meanwhile, side by side."""
    start, finish = "", ""
    if cache_age is not None:
        # Docker 20.10's build cache carries no app label: `until` is the one
        # filter that spares what recent builds (this app's kept ones) used.
        start, finish = scripts.side_by_side({"cache": (
            f"docker builder prune --force --filter until={int(cache_age)}s 2>&1 "
            "| tail -n 1")})
    lines = ["set -u", start]
    for ref in list(tags) + list(ids):
        lines.append(f"if out=$(docker rmi {q(ref)} 2>&1); then {scripts.mark('removed', q(ref))}; "
                     f"else echo \"$M not_removed \"{q(ref)}\" $(printf '%s' \"$out\" | "
                     "tail -n 1)\"; fi")
    lines.append(finish)
    return "\n".join(lines) + "\n"


# --- pure decisions ------------------------------------------------------------------


def parse_images(text):
    images = []
    for line in (text or "").splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) < 3 or not parts[0].startswith("sha256:"):
            continue
        tags = tuple(parts[3].split()) if len(parts) > 3 else ()
        size = int(parts[2]) if parts[2].isascii() and parts[2].isdigit() else 0
        images.append(Image(id=parts[0], created=iso_utc(parts[1]) or "", size=size, tags=tags))
    return images


def commit_tags(image, app):
    """The commits an image is tagged with (bluegreen-APP:<commit>)."""
    repo = f"bluegreen-{app}:"
    return [t[len(repo):] for t in image.tags
            if t.startswith(repo) and COMMIT_TAG_RE.fullmatch(t[len(repo):])]


def releases_of(images, app, state, containers, history):
    """Every commit-tagged image as a Release, newest first."""
    colours_of = {}
    for colour, container in (containers or {}).items():
        if container.image and container.state in ("running", "restarting", "paused"):
            colours_of.setdefault(container.image, []).append(colour)
    known = {}  # commit -> (branch, ref, released_at): history, then state.json
    for entry in history:
        if entry.get("commit") and went_live(entry):
            known[entry["commit"]] = (entry.get("branch"), entry.get("ref"),
                                      iso_utc(entry.get("time", "")) or "")
    for record in ((state or {}).get("colours") or {}).values():
        if record.get("commit"):
            branch, ref, at = known.get(record["commit"], (None, None, ""))
            build = build_of(record)  # the source of what it runs, not what it follows
            known[record["commit"]] = (build["branch"] or branch, build["ref"] or ref,
                                       max(at, iso_utc(record.get("deployed_at", "")) or ""))
    live = (state or {}).get("live")
    live_container = (containers or {}).get(live)
    live_image = live_container.image if live_container else None
    found = []
    for image in images:
        for commit in commit_tags(image, app):
            branch, ref, at = known.get(commit, (None, None, ""))
            found.append(Release(commit=commit, image=image.id, built_at=image.created,
                                 released_at=at, size=image.size, branch=branch, ref=ref,
                                 colours=sorted(colours_of.get(image.id, [])),
                                 live=bool(live_image) and image.id == live_image))
    found.sort(key=lambda r: (r.newest, r.commit), reverse=True)
    return found


def went_live(entry):
    """A history entry that put its commit live for everyone: a release, a
    promotion (by hand or a canary's watch), a rollback or a switch. Kept
    releases are ordered by when they last did."""
    return entry.get("result") in ("ok", "promoted") and entry.get("task") in (
        "release", "setup", "promote", "rollback", "switch")


def protected(state, containers):
    """(image ids, commits) that are never removed: what a colour runs (its
    container, even stopped) and what state.json records."""
    ids, commits = set(), set()
    for container in (containers or {}).values():
        if container.image:
            ids.add(container.image)
    for record in ((state or {}).get("colours") or {}).values():
        if record.get("image"):
            ids.add(record["image"])
        if record.get("commit"):
            commits.add(record["commit"])
    return ids, commits


@dataclass(frozen=True)
class PrunePlan:
    keep: list  # Releases kept, newest first
    remove_tags: list  # bluegreen-APP:<commit> names
    remove_ids: list  # untagged images of this app
    cache_age: int  # seconds: build cache unused for longer goes; None: keep it all


def prune_plan(images, app, keep_releases, state, containers, history, now):
    """What to remove so that KEEP_RELEASES releases (and what runs) remain."""
    releases = releases_of(images, app, state, containers, history)
    ids, commits = protected(state, containers)
    keep, remove_tags = [], []
    for rank, release in enumerate(releases):
        if rank < keep_releases or release.image in ids or release.commit in commits:
            keep.append(release)
        else:
            remove_tags.append(f"bluegreen-{app}:{release.commit}")
    remove_ids = [i.id for i in images if not i.tags and i.id not in ids]
    oldest = min((r.built_at for r in keep if r.built_at), default=None)
    cache_age = None
    if oldest and remove_tags:
        when = datetime.fromisoformat(oldest).timestamp()
        cache_age = max(int(now - when), 3600)  # never the cache of the last hour
    return PrunePlan(keep=keep, remove_tags=remove_tags, remove_ids=remove_ids,
                     cache_age=cache_age)


def check_commit_prefix(value):
    """`rollback --to`: a commit or a unique prefix of it (4 or more hex digits)."""
    if not PREFIX_RE.fullmatch(value or ""):
        raise Invalid("allowed: a commit of a kept release, or a unique prefix of it "
                      "(4 to 64 hex digits); `fab releases` lists them")
    return value.lower()


def resolve(prefix, releases, host_name):
    """The one kept release whose commit starts with ``prefix``."""
    matches = {r.commit: r for r in releases if r.commit.startswith(prefix)}
    if len(matches) > 1:
        names = ", ".join(sorted(c[:12] for c in matches))
        raise Failure(f"--to {prefix} matches {len(matches)} kept releases on {host_name} "
                      f"({names}); nothing changed",
                      "give more digits of the commit (`fab releases` lists them)",
                      code=BAD_INPUT)
    if not matches:
        raise Failure(f"{prefix} is not a kept release on {host_name}; nothing changed",
                      f"`fab -H {host_name} releases` lists the kept ones; "
                      f"`fab -H {host_name} release --ref {prefix}` rebuilds it from git",
                      code=FAILED)
    return next(iter(matches.values()))


def human_size(n):
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000.0


# --- steps and tasks -----------------------------------------------------------------


def gather(session, state=None, listing=None):
    """(images, releases, containers, history) as the host has them now
    (or as ``listing``, the result of list_script, found them)."""
    s = session.settings
    result = listing if listing is not None else session.run(list_script(s))
    images = parse_images(result.blocks.get("images", ""))
    containers = parse_inspect(result.blocks.get("containers", ""), s)
    history = parse_history(result.blocks.get("history", ""))
    state = state if state is not None else session.view.state
    return images, releases_of(images, s.app_name, state, containers, history), \
        containers, history


def prune_releases(session, state, listing=None):
    """After a release: keep KEEP_RELEASES images, remove the rest. Never raises:
    a release that is recorded does not fail over housekeeping. ``listing``:
    list_script's result, when the release read it already (while verify waited)."""
    s, rep = session.settings, session.reporter
    try:
        with rep.phase("prune") as ph:
            images, _, containers, history = gather(session, state, listing)
            plan = prune_plan(images, s.app_name, s.keep_releases, state, containers,
                              history, time.time())
            if not (plan.remove_tags or plan.remove_ids):
                ph.detail = f"{len(plan.keep)} kept (KEEP_RELEASES={s.keep_releases})"
                return plan
            result = session.run(prune_script(plan.remove_tags, plan.remove_ids,
                                              plan.cache_age), timeout=300)
            removed = [v for k, v in result.marks if k == "removed"]
            failed = [v for k, v in result.marks if k == "not_removed"]
            ph.detail = (f"{len(plan.keep)} kept (KEEP_RELEASES={s.keep_releases}), "
                         f"{len(removed)} removed")
            cache = result.blocks.get("cache", "")
            if "reclaimed" in cache.lower():
                ph.detail += f"; build cache: {cache.strip()}"
        for text in failed:
            rep.line(f"warning: could not remove {text}")
        return plan
    except Exception as exc:  # housekeeping after the record: a warning, never a failure
        why = exc.message if isinstance(exc, Failure) else f"{type(exc).__name__}: {exc}"
        rep.line(f"warning: pruning old releases failed: {why}; the release stands")
        return None


def releases(session, json_mode):
    """fab releases: the kept releases, newest first."""
    s, name = session.settings, session.name
    session.connect()
    view = session.inspect()
    require_setup(view, name)
    _, found, _, _ = gather(session)
    if json_mode:
        for release in found:
            emit_json(release.to_json(name, s.app_name))
        return None
    emit(f"{name}  kept releases of {s.app_name} (newest first; KEEP_RELEASES="
         f"{s.keep_releases})")
    if not found:
        emit("  none yet")
        return None
    rows = [[r.commit[:12], r.ref and f"ref {r.ref}" or r.branch or "-",
             r.built_at or "-", human_size(r.size),
             ", ".join(r.colours) + (" (live)" if r.live else "") if r.colours else "-"]
            for r in found]
    emit(table(rows, ["commit", "branch", "built at", "size", "runs in"]))
    return None


def rollback_to(session, prefix, *, wait_lock=0.0):
    """Start a kept release's image in the idle colour, health gate, switch,
    verify, record: a release without git or a build."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    with session.locked(wait=wait_lock, ports=False) as view:
        require_setup(view, name)
        # The idle colour it starts the release in serves a canary's clients.
        refuse_during_canary(view, name)
        _, kept, _, _ = gather(session)
        release = resolve(prefix, kept, name)
        live_commit = view.record(view.live).get("commit") if view.live else None
        if release.commit == live_commit:
            raise Failure(f"{release.commit[:12]} is already live on {name} ({view.live}); "
                          "nothing changed", "`fab releases` lists the other kept ones",
                          code=FAILED)
        target = other(view.live) if view.live else "blue"
        commit = release.commit
        with Attempt(session, live=view.live, fields={
            "from_colour": view.live, "to_colour": target, "branch": release.branch,
            "commit": commit, "ref": release.ref, "kept": True}) as attempt:
            attempt.rebuilt, attempt.before = target, view.containers[target]
            with attempt.step("start") as ph:
                result = session.run(build_scripts.restore(s, target, commit),
                                     timeout=step_bound(s))
                if result.code != 0:
                    why = result.values.get("error") or "see the output above"
                    raise Failure(f"could not start the kept release {commit[:12]} in "
                                  f"{target}: {why}; nothing live changed",
                                  f"`fab -H {name} logs --colour {target}` shows why",
                                  code=FAILED)
                ph.detail = f"{target} runs kept image of {commit[:12]} (no build)"

            with attempt.step("health") as ph:
                ph.detail = health.gate(session.host, s, target, rep)

            branch = release.branch or view.record(target).get("branch") or s.branch_of(target)
            state = with_release(view.state, target, branch=branch, commit=commit,
                                 image=release.image, who=describe_who(session.who),
                                 live=True, ref=release.ref)
            go_live(session, attempt, target, state)
        prune_releases(session, state)
    summary = session.summary("ok", live=target, previous=view.live, commit=commit,
                              branch=branch, image=release.image)
    keep = f"; {view.live} keeps running" if view.live else ""
    rep.line(f"rolled back to {commit[:12]} ({branch}) in {target} in "
             f"{summary['seconds']:.1f}s{keep}")
    return summary
