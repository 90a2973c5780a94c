"""fab exec: a one-off command in the live release (flows/one_off.py)."""

import sys

from invoke import Exit

from ..errors import BAD_INPUT, Failure
from ..flows.one_off import exec_command
from .flags import check_colour, check_flag, task
from .on_hosts import on_hosts, operator_task
from .tasks import HOST_KEY_HELP


@task(name="exec", positional=["command"], help={
    "command": "the command line, run with sh -c in the container",
    "reuse": "run it in the live web container (docker exec) instead of a new one",
    "interactive": "-i: this machine's stdin to the command (a terminal: a pty)",
    "colour": "blue or green (default: the live colour)",
    "all_hosts": "run it on every host named (default: one host only)",
    "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def exec_(c, command, reuse=False, interactive=False, colour=None, all_hosts=False,
          accept_new_host_key=False):
    """Run a one-off command in the live release: fab exec 'manage.py migrate'."""
    if not command.strip():
        raise Failure("exec needs a command", "fab -H HOST exec 'COMMAND'", code=BAD_INPUT)
    if colour is not None:
        colour = check_flag("--colour", colour, check_colour)
    tty = interactive and sys.stdin.isatty()
    codes = {}

    def body(session):
        if session.hosts_in_run > 1 and not all_hosts:
            raise Failure(f"exec runs on one host; {session.hosts_in_run} are named",
                          "name one with -H, or add --all-hosts", code=BAD_INPUT)
        codes[session.name] = exec_command(session, command, reuse=reuse,
                                           interactive=interactive, tty=tty, colour=colour)
        return None

    def exit_code():  # the command's own: the first host's that was not 0
        return next((v for v in codes.values() if v), 0)

    on_hosts(c, "exec", body, require_repo=False, accept_new_host_key=accept_new_host_key,
             exit_code=exit_code)
    code = exit_code()
    if code:
        raise Exit(code=code)
