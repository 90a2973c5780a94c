"""The kept releases' images on the host: list them (with history), remove the pruned."""

import shlex
from ..model.kept_releases import PROJECT_LABEL
from .base import block, mark, side_by_side
from .host_reading import inspect_containers


q = shlex.quote


INSPECT_IMAGE = "{{.Id}}|{{.Created}}|{{.Size}}|{{range .RepoTags}}{{.}} {{end}}"


HISTORY_LINES = 2000


def list_script(settings, history_lines=HISTORY_LINES):
    """The app's images (commit-tagged, colour-tagged, untagged), its containers'
    images, and the history that names each commit's branch."""
    repo = q(f"bluegreen-{settings.app_name}")
    label = q(f"label={PROJECT_LABEL}={settings.app_name}")
    # Both listings at once (each docker call ~17 ms here); sort merges their lines.
    ids = (f"{{ docker images -q --no-trunc {repo} & docker images -q --no-trunc "
           f"--filter dangling=true --filter {label}; wait; }} 2>/dev/null | sort -u")
    start, finish = side_by_side({
        "images": f'ids=$({ids}); [ -z "$ids" ] || docker image inspect --format '
                  f'{q(INSPECT_IMAGE)} $ids 2>/dev/null',
        "containers": inspect_containers(settings),
    })
    return "\n".join([
        start,
        block("history", f"tail -n {int(history_lines)} "
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
        start, finish = side_by_side({"cache": (
            f"docker builder prune --force --filter until={int(cache_age)}s 2>&1 "
            "| tail -n 1")})
    lines = ["set -u", start]
    for ref in list(tags) + list(ids):
        lines.append(f"if out=$(docker rmi {q(ref)} 2>&1); then {mark('removed', q(ref))}; "
                     f"else echo \"$M not_removed \"{q(ref)}\" $(printf '%s' \"$out\" | "
                     "tail -n 1)\"; fi")
    lines.append(finish)
    return "\n".join(lines) + "\n"
