"""A colour's containers: their state, stopping one once nginx is done with it, logs."""

from .base import NO_DEPLOY_DIR, block, compose, mark, q
from .host_reading import inspect_containers


def drain(settings, colour):
    """Wait (bounded) until nothing is connected to a colour's port.

    After a reload, nginx's old workers finish their requests to the colour
    that was live; stopping or recreating it before then fails them.
    """
    port = settings.port_of(colour)
    bound = int(settings.drain_timeout * 10)
    # Quiet three times in a row (0.2 s): an old worker that has not yet acted
    # on the reload can still accept a client and connect to the colour.
    return (
        f"n=0; quiet=0; while [ $n -lt {bound} ] && [ $quiet -lt 3 ] && "
        f"command -v ss >/dev/null 2>&1; do "
        f"if [ -n \"$(ss -Htn state established '( dport = :{port} )' 2>/dev/null)\" ]; "
        f"then quiet=0; else quiet=$((quiet+1)); fi; "
        f"if [ $quiet -lt 3 ]; then sleep 0.1; n=$((n+1)); fi; done; "
        f"if [ $n -ge {bound} ] && [ {bound} -gt 0 ]; then {mark('drained', 'timeout')}; "
        f"else {mark('drained', '$n')}; fi"
    )


def container_state(settings, colour):
    return block("containers", inspect_containers(settings, (colour,)))


def stop(settings, colour):
    """Stop a colour once nginx's old workers have finished with it."""
    return (f"cd {q(settings.deploy_dir)} || exit {NO_DEPLOY_DIR}\n"
            f"{drain(settings, colour)}\n"
            f"{compose(settings)} stop {q(colour)} >/dev/null 2>&1 && {mark('stopped', colour)}\n")


def logs_tail(settings, colour, lines=40):
    return block("logs", f"{compose(settings)} logs --no-color --tail {int(lines)} "
                         f"{q(colour)} 2>&1")


def logs(settings, colour, lines, follow, process=None):
    """A colour's logs: its web container, or ``process``'s (compose service COLOUR-TYPE)."""
    follow_flag = " --follow" if follow else ""
    service = colour if process in (None, "web") else f"{colour}-{process}"
    return (f"cd {q(settings.deploy_dir)} && {compose(settings)} logs --no-color "
            f"--tail {int(lines)}{follow_flag} {q(service)} 2>&1")
