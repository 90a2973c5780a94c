"""Kept releases (pure): the images tagged bluegreen-APP:<commit>, which are releases,
which are protected, what KEEP_RELEASES prunes, and a commit prefix resolved.
"""

import re
from dataclasses import dataclass, field
from datetime import datetime
from ..configuration.values import Invalid
from ..errors import BAD_INPUT, FAILED, Failure
from .state import build_of, iso_utc


# Compose labels the images it builds with their project (APP_NAME): how the
# app's untagged images are told apart from every other image on the host.
PROJECT_LABEL = "com.docker.compose.project"


COMMIT_TAG_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 repos


PREFIX_RE = re.compile(r"[0-9a-fA-F]{4,64}")


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
    signed_by: str = None  # the ALLOWED_SIGNERS principal that signed it, when checked
    ever_live: bool = False  # it served everyone at some time (history, state.json)

    @property
    def newest(self):
        """When this release last became something: built or released, the later."""
        return max(self.built_at or "", self.released_at or "")

    def to_json(self, host, app):
        return {"host": host, "app": app, "commit": self.commit, "branch": self.branch,
                "ref": self.ref, "built_at": self.built_at or None,
                "released_at": self.released_at or None, "size": self.size,
                "image": self.image, "colours": self.colours, "live": self.live,
                "signed_by": self.signed_by,
                "ever_live": self.ever_live}


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


# History results of a build that passed the health gate; a watch's revert
# and a failed start or health gate say it is no release.
PASSED = ("ok", "promoted", "staged", "canary")
GATE_PHASES = ("start", "health")


def verdicts(history, state):
    """{commit: "passed" | "failed" | "reverted"}: what the newest word on each
    build says. A release (or setup) that failed to start or its health gate,
    and a release a watch reverted, are no releases; a commit that later
    passed again is. state.json's records speak last: what a colour records
    passed its gate, unless it is marked reverted."""
    found = {}
    for entry in history:
        commit, result = entry.get("commit"), entry.get("result")
        if not commit:
            continue
        if result in PASSED:
            found[commit] = "passed"
        elif result == "reverted":
            found[commit] = "reverted"
        elif (result == "failed" and entry.get("task") in ("release", "setup")
              and entry.get("phase") in GATE_PHASES):
            found[commit] = "failed"
    for record in ((state or {}).get("colours") or {}).values():
        if record.get("commit"):
            found[record["commit"]] = ("reverted" if record.get("pending") == "reverted"
                                       else "passed")
    return found


def ever_live(history, state):
    """The commits that served everyone at some time."""
    commits = {e["commit"] for e in history if e.get("commit") and went_live(e)}
    for colour, record in ((state or {}).get("colours") or {}).items():
        if record.get("commit") and not record.get("pending") and (
                (state or {}).get("live") == colour or record.get("deployed_at")):
            commits.add(record["commit"])
    return commits


def builds_of(images, app):
    """(commit, image) of every commit-tagged image of the app."""
    return [(commit, image) for image in images for commit in commit_tags(image, app)]


def not_releases(images, app, state, history):
    """{commit: "failed" | "reverted"}: commit-tagged builds that are no
    release (their gate failed, or a watch reverted them)."""
    said = verdicts(history, state)
    return {commit: said[commit] for commit, _ in builds_of(images, app)
            if said.get(commit) in ("failed", "reverted")}


def releases_of(images, app, state, containers, history):
    """Every commit-tagged image that is a release (not a build whose start or
    health gate failed, nor one a watch reverted) as a Release, most recently
    released first."""
    rejected = not_releases(images, app, state, history)
    was_live = ever_live(history, state)
    records = (state or {}).get("colours") or {}
    colours_of = {}  # commit -> the colours whose container runs it
    for colour, container in (containers or {}).items():
        if container.image and container.state in ("running", "restarting", "paused"):
            # Told by the image; a colour's image that names no commit (its tag
            # moved to a rebuild of the same commit in the other colour) runs
            # what the colour records.
            recorded = (records.get(colour) or {}).get("commit")
            commit = container.runs_commit(recorded) or recorded
            if commit:
                colours_of.setdefault(commit, []).append(colour)
    known = {}  # commit -> (branch, ref, released_at): history, then state.json
    signers = {e["commit"]: e["signer"] for e in history if e.get("commit") and e.get("signer")}
    signers.update({r["commit"]: r["signed_by"] for r in ((state or {}).get("colours") or {})
                    .values() if r.get("commit") and r.get("signed_by")})
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
    found = []
    for commit, image in builds_of(images, app):
        if commit in rejected:
            continue
        branch, ref, at = known.get(commit, (None, None, ""))
        runs = colours_of.get(commit, [])
        found.append(Release(commit=commit, image=image.id, built_at=image.created,
                             released_at=at, size=image.size, branch=branch, ref=ref,
                             colours=sorted(runs), live=live in runs,
                             ever_live=commit in was_live,
                             signed_by=signers.get(commit)))
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
    # A failed or reverted build never takes a KEEP_RELEASES slot: its tag goes
    # as soon as no colour runs or records it.
    for commit, image in builds_of(images, app):
        if (commit in not_releases(images, app, state, history)
                and image.id not in ids and commit not in commits):
            remove_tags.append(f"bluegreen-{app}:{commit}")
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


def resolve(prefix, releases, host_name, not_kept=None):
    """The one kept release whose commit starts with ``prefix``. ``not_kept``
    ({commit: why}, not_releases): builds on the host that are no release."""
    matches = {r.commit: r for r in releases if r.commit.startswith(prefix)}
    if len(matches) > 1:
        names = ", ".join(sorted(c[:12] for c in matches))
        raise Failure(f"--to {prefix} matches {len(matches)} kept releases on {host_name} "
                      f"({names}); nothing changed",
                      "give more digits of the commit (`fab releases` lists them)",
                      code=BAD_INPUT)
    if not matches:
        rejected = {c: why for c, why in (not_kept or {}).items() if c.startswith(prefix)}
        if len(rejected) == 1:
            commit, why = next(iter(rejected.items()))
            what = ("its watch reverted it" if why == "reverted"
                    else "it failed to start or its health gate")
            raise Failure(f"{commit[:12]} on {host_name} is a build that is no release "
                          f"({what}); nothing changed",
                          f"to try it again on purpose: fab -H {host_name} release --ref "
                          f"{commit}", code=FAILED)
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
