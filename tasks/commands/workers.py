"""The scripts that move worker containers between colours, and the parse of
what they print. Containers are found by label (bluegreen.app, .colour,
.process), so a type the Procfile no longer has is still found and stopped.
Stops are `docker stop` (SIGTERM, WORKER_STOP_TIMEOUT, SIGKILL): a stopped
container stays stopped across a Docker restart, while `restart:
unless-stopped` brings the running ones back.
"""

from .base import NO_DEPLOY_DIR, block, compose, mark, q

WORKER_FORMAT = ('{{index .Config.Labels "bluegreen.colour"}} '
                 '{{index .Config.Labels "bluegreen.process"}} '
                 '{{.State.Status}} {{.RestartCount}} {{.Name}}')


def ids(settings, colour=None, kinds=None, running=True):
    """Shell text: the ids of the app's worker containers (never web)."""
    filters = f"--filter label=bluegreen.app={q(settings.app_name)}"
    if colour:
        filters += f" --filter label=bluegreen.colour={q(colour)}"
    listing = f"docker ps -q{'' if running else 'a'} {filters}"
    if kinds is not None:
        return " ".join(f"$({listing} --filter label=bluegreen.process={q(k)})" for k in kinds)
    fmt = q('{{.ID}} {{.Label "bluegreen.process"}}')
    return (f"$(docker ps{'' if running else ' -a'} {filters} --format {fmt} | "
            "awk '$2 != \"web\" && $2 != \"\" && $2 != \"oneoff\" {print $1}')")


def stop_ids(settings, id_text):
    return (f'set -- {id_text}; if [ $# -gt 0 ]; then docker stop -t '
            f'{int(settings.worker_stop_timeout)} "$@" >/dev/null 2>&1; fi')


def list_workers_command(settings):
    """Every worker container of the app, one WORKER_FORMAT line each."""
    return (f"set -- {ids(settings, running=False)}; [ $# -eq 0 ] || docker container "
            f"inspect --format {q(WORKER_FORMAT)} \"$@\" 2>/dev/null")


def parse_workers(text):
    """{colour: {type: {"running": n, "restarts": n, "containers": n}}}."""
    found = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[3].isdigit():
            continue
        colour, kind, status, restarts = parts[:4]
        entry = found.setdefault(colour, {}).setdefault(
            kind, {"running": 0, "restarts": 0, "containers": 0, "restarting": 0})
        entry["containers"] += 1
        entry["restarts"] += int(restarts)
        if status == "running":
            entry["running"] += 1
        if status == "restarting":
            entry["restarting"] += 1
    return found


def hand_over(settings, plan, ready_seconds):
    """Stop-first types stop in the old colour, the new colour's workers start,
    stay up ``ready_seconds``, then the old colour's stop; one step.

    A new worker that exits or restarts meanwhile: the new ones stop, the old
    stop-first ones start again, and the step says `ready failed`; the old
    colour's other workers were never touched.
    """
    new, old = plan.new, plan.old
    services = " ".join(q(w.service(new)) for w in plan.workers)
    lines = ["set -u", f"cd {q(settings.deploy_dir)} || exit {NO_DEPLOY_DIR}"]
    kinds = [w.kind for w in plan.stop_first]
    if old and kinds:
        lines += [f"first=\"{ids(settings, old, kinds)}\"",
                  stop_ids(settings, '$first')]
    else:
        lines.append('first=""')
    # What the new colour runs of types it no longer has (or scaled to 0) stops.
    keep = " ".join(q(w.kind) for w in plan.workers) or '""'
    lines.append(
        f"for id in {ids(settings, new)}; do "
        f"k=$(docker inspect --format '{{{{index .Config.Labels \"bluegreen.process\"}}}}' "
        f"$id); case \" {keep} \" in *\" $k \"*) ;; *) docker stop -t "
        f"{int(settings.worker_stop_timeout)} $id >/dev/null 2>&1;; esac; done")
    if services:
        lines += [
            f"{compose(settings)} up -d --no-deps --no-build --force-recreate {services} 2>&1 "
            f"|| {mark('start', 'failed')}",
            f"sleep {int(ready_seconds)}",
            block("new", f"set -- {ids(settings, new, running=False)}; [ $# -eq 0 ] || "
                         f"docker container inspect --format {q(WORKER_FORMAT)} \"$@\""),
        ]
        wanted = sum(w.scale for w in plan.workers)
        # Only the types handed over count: a stopped container of a type the
        # Procfile no longer has is no failure.
        lines.append(
            f"n=0; bad=0; for id in {ids(settings, new, running=False)}; do "
            f"set -- $(docker inspect --format '{{{{index .Config.Labels \"bluegreen.process\"}}}} "
            f"{{{{.State.Status}}}} {{{{.RestartCount}}}}' $id); "
            f"case \" {keep} \" in *\" $1 \"*) n=$((n+1)); "
            f"[ \"$2 $3\" = 'running 0' ] || bad=1;; esac; done; [ $n -ge {wanted} ] || bad=1")
        lines.append(
            f"if [ $bad -ne 0 ]; then {stop_ids(settings, ids(settings, new))}; "
            f"[ -z \"$first\" ] || docker start $first >/dev/null 2>&1; "
            f"{mark('ready', 'failed')}; exit 1; fi")
    lines.append(mark("ready", "ok"))
    if old:
        lines.append(stop_ids(settings, ids(settings, old)))
        lines.append(mark("stopped", old))
    return "\n".join(lines) + "\n"


def stop_workers(settings, colour=None):
    """Stop the app's workers of ``colour`` (None: every colour)."""
    return (f"{stop_ids(settings, ids(settings, colour))}\n"
            f"{mark('stopped', colour or 'all')}\n")


def start_workers(settings, colour, plan):
    """Start ``colour``'s workers as the compose file has them (no wait)."""
    services = " ".join(q(w.service(colour)) for w in plan.workers)
    if not services:
        return "true\n"
    return (f"cd {q(settings.deploy_dir)} || exit {NO_DEPLOY_DIR}\n"
            f"{compose(settings)} up -d --no-deps --no-build {services} 2>&1\n")
