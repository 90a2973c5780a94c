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
    """{colour: {type: {"running": n, "restarts": n, "containers": n, ...}}};
    READY_FORMAT lines also count "unhealthy" and "starting" (not yet healthy)."""
    found = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) < 4 or not parts[3].isdigit():
            continue
        colour, kind, status, restarts = parts[:4]
        entry = found.setdefault(colour, {}).setdefault(
            kind, {"running": 0, "restarts": 0, "containers": 0, "restarting": 0})
        health = parts[5] if len(parts) > 5 else ""
        if health in ("unhealthy", "starting"):
            entry[health] = entry.get(health, 0) + 1
        entry["containers"] += 1
        entry["restarts"] += int(restarts)
        if status == "running":
            entry["running"] += 1
        if status == "restarting":
            entry["restarting"] += 1
    return found


# What the hand-over reads of each new worker: WORKER_FORMAT and its Docker
# health ("none": its image has no HEALTHCHECK).
READY_FORMAT = WORKER_FORMAT + ' {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}'

# The hand-over's verdict over READY_FORMAT lines, run on the host each
# second: "bad" once a worker of the types handed over is not running,
# restarted or is unhealthy, or fewer than wanted run; "ok" once every one
# with a health check is healthy and those without stayed up READY seconds;
# "bad" when one with a health check is not healthy by then (READY 0: no
# wait at all, health not awaited); else "wait". Variables: keep
# (" type type "), wanted, t (seconds), ready.
READY_AWK = (
    'index(keep, " " $2 " ") == 0 { next } '
    '{ n++ } '
    '$3 != "running" || $4 != "0" || $6 == "unhealthy" { bad = 1 } '
    '$6 == "starting" { starting = 1 } '
    '$6 == "none" || $6 == "" { plain = 1 } '
    'END { if (bad || n < wanted) print "bad"; '
    'else if (starting && ready > 0) print (t >= ready ? "bad" : "wait"); '
    'else if (plain && t < ready) print "wait"; else print "ok" }')


def hand_over(settings, plan, ready_seconds, stop_old=True):
    """Stop-first types stop in the old colour, the new colour's workers start
    and must be ready (stay up ``ready_seconds``, or report Docker-healthy
    within it when their image has a HEALTHCHECK), then the old colour's stop;
    one step. ``stop_old`` False (several hosts): the old ones keep running,
    and the step prints the stop-first ones it stopped (``first``) for
    ``put_back`` or ``stop_old_colour``.

    A new worker that exits, restarts or turns unhealthy meanwhile: the new
    ones stop, the old stop-first ones start again, and the step says `ready
    failed`; the old colour's other workers were never touched.
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
        wanted = sum(w.scale for w in plan.workers)
        ready = int(ready_seconds)
        # Only the types handed over count: a stopped container of a type the
        # Procfile no longer has is no failure. Read each second, so a worker
        # that dies (or turns healthy) is known at once.
        read = (f"set -- {ids(settings, new, running=False)}; [ $# -eq 0 ] || "
                f"docker container inspect --format {q(READY_FORMAT)} \"$@\" 2>/dev/null")
        lines += [
            f"{compose(settings)} up -d --no-deps --no-build --force-recreate {services} 2>&1 "
            f"|| {mark('start', 'failed')}",
            f"t=0; while :; do seen=$({read}); verdict=$(printf '%s\\n' \"$seen\" | awk "
            f"-v keep=\" {keep} \" -v wanted={wanted} -v t=$t -v ready={ready} "
            f"{q(READY_AWK)}); [ \"$verdict\" = wait ] || break; sleep 1; t=$((t+1)); done",
            block("new", "printf '%s\\n' \"$seen\""),
            f"if [ \"$verdict\" != ok ]; then {stop_ids(settings, ids(settings, new))}; "
            f"[ -z \"$first\" ] || docker start $first >/dev/null 2>&1; "
            f"{mark('waited', '$t')}; {mark('ready', 'failed')}; exit 1; fi",
            mark("waited", "$t"),
        ]
    lines.append(mark("ready", "ok"))
    if old and stop_old:
        lines.append(stop_ids(settings, ids(settings, old)))
        lines.append(mark("stopped", old))
    elif old:
        lines.append(mark("first", "$(echo $first)"))
    return "\n".join(lines) + "\n"


def put_back(settings, new, first):
    """Several hosts, another failed: this host's new workers stop and the
    old stop-first ones (``first``: their ids) start again; the old colour's
    other workers never stopped."""
    return (f"{stop_ids(settings, ids(settings, new))}\n"
            + (f"docker start {first} >/dev/null 2>&1\n" if first.strip() else "")
            + f"{mark('ready', 'undone')}\n")


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
