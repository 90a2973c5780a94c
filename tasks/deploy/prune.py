"""Pruning kept releases after a release: KEEP_RELEASES images and old build cache."""

import time
from ..commands.kept_images import list_script, prune_script
from ..errors import Failure
from ..model.compose_file import parse_inspect
from ..model.kept_releases import parse_images, prune_plan, releases_of
from ..model.state import parse_history


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
