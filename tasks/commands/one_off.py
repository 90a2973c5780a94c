"""The remote script of `fab exec`: a one-off container (or `docker exec` in the
live web container) that never outlives the connection that started it.

`docker run --rm` started over SSH keeps running when the client is killed
(NOTES.md, round four): `--rm` removes it only once it ends. So the script
watches the SSH session that runs it (its parent) and removes the container
with `docker rm -f` when that session is gone (a killed fab, a cut
connection), and on SIGHUP (sent with a terminal). The command's exit code
is the script's, and a history line carries it.
"""

from .base import q

ONEOFF = "oneoff"


def live_colour(settings):
    """Shell text: the colour state.json names live."""
    state = f"{settings.deploy_dir}/state.json"
    return (f"$(sed -n 's/^  \"live\": \"\\(blue\\|green\\)\".*/\\1/p' {q(state)} "
            "2>/dev/null | head -n 1)")


def reap(settings):
    """Shell text: remove one-off containers whose SSH session is gone (a
    leftover the script's own watcher could not remove: the host rebooted, say)."""
    label = '{{index .Config.Labels "bluegreen.session"}}'
    return (f"for c in $(docker ps -aq --filter label=bluegreen.app={q(settings.app_name)} "
            f"--filter label=bluegreen.process={ONEOFF}); do "
            f"p=$(docker container inspect --format {q(label)} $c 2>/dev/null); "
            f"[ -n \"$p\" ] && [ -d /proc/$p ] || docker rm -f $c >/dev/null 2>&1; done\n")


def app_env_from_stdin(size):
    """Shell text: this run's app.env, ``size`` bytes on the script's stdin
    (never in a command line: it holds secrets), put in place only if it
    differs from the host's (then atomically, 0600)."""
    return (f"t=$(umask 077; mktemp .app.env.XXXXXX) && head -c {int(size)} > \"$t\" && "
            "{ if cmp -s \"$t\" app.env; then rm -f \"$t\"; else mv -f \"$t\" app.env; fi; } "
            "|| { rm -f \"$t\"; echo 'bluegreen: could not write app.env' >&2; exit 125; }")


def one_off(settings, command, *, colour=None, reuse=False, interactive=False, tty=False,
            name, history_head, history_tail, app_env_size=None):
    """The script: pick the colour, run COMMAND with `sh -c`, remove what is
    left if the session goes, append the history line, exit with its code.
    ``history_head``/``history_tail``: the JSON line around its exit code.
    ``app_env_size``: this run's app.env comes first on stdin (app_env_from_stdin)."""
    d, app = settings.deploy_dir, settings.app_name
    flags = ("-i " if interactive else "") + ("-t " if tty else "")
    pick = (f"colour={q(colour)}" if colour else f"colour={live_colour(settings)}")
    lines = [
        "set -u",
        f"cd {q(d)} 2>/dev/null || {{ echo 'bluegreen: {d} is missing: run setup first' >&2; "
        "exit 125; }",
    ]
    if app_env_size is not None:
        lines.append(app_env_from_stdin(app_env_size))
    lines += [
        pick,
        '[ -n "$colour" ] || { echo "bluegreen: no colour is live yet: run setup or release '
        'first" >&2; exit 125; }',
    ]
    if reuse:
        web = f"{app}-$colour-1"
        # No look before: a docker CLI call less. Only when it failed, is the
        # container there and running (else the failure was the command's)?
        lines += [
            f'docker exec {flags}"{web}" sh -c {q(command)}',
            "code=$?",
            f'[ $code -eq 0 ] || [ "$(docker container inspect --format "{{{{.State.Running}}}}" '
            f'"{web}" 2>/dev/null)" = true ] || {{ echo "bluegreen: the $colour web container '
            f'{web} is not running: nothing to --reuse" >&2; exit 125; }}',
        ]
    else:
        run = [f"docker run --rm {flags}--init --name {q(name)}",
               f"--label bluegreen.app={q(app)} --label bluegreen.colour=\"$colour\"",
               f"--label bluegreen.process={ONEOFF} --label bluegreen.session=\"$PPID\"",
               "-e BLUEGREEN_COLOUR=\"$colour\" -e BLUEGREEN_PROCESS=" + ONEOFF]
        if settings.app_env_file:
            run.append(f"--env-file {q(d + '/app.env')}")
        for spec in settings.volumes:
            if not spec.startswith("/"):
                spec = f"{app}_{spec}"  # compose's name for the app's volume
            run.append(f"-v {q(spec)}")
        run.append("--network host" if settings.docker_network == "host"
                   else f"--network {q(app + '_default')}")
        run.append(f"\"bluegreen-{app}:$colour\" sh -c {q(command)}")
        lines += [
            # The SSH session that runs this script; gone = fab killed or the link cut.
            "session=$PPID",
            f"gone() {{ docker rm -f {q(name)} >/dev/null 2>&1; }}",
            "trap 'gone; exit 129' HUP",
            "trap 'gone; exit 143' TERM",
            "( while kill -0 $session 2>/dev/null; do sleep 1; done; gone ) "
            "</dev/null >/dev/null 2>&1 &",
            "watcher=$!",
            " ".join(run),
            "code=$?",
            "kill $watcher 2>/dev/null",
        ]
    lines += [
        '[ $code -ne 126 ] && [ $code -ne 127 ] || echo "bluegreen: exit $code: exec runs '
        'the command with sh -c; the image needs a shell (sh) for it" >&2',
        f"printf '%s%s%s\\n' {q(history_head)} \"$code\" {q(history_tail)} "
        f">> {q(d + '/history.jsonl')} 2>/dev/null",
        "exit $code",
    ]
    return "\n".join(lines) + "\n"
