"""fab exec: a one-off command in the live release, with the command's own exit code.

No lock (a console may stay open for hours while releases go on), one SSH
command: the remote script (commands/one_off.py) picks the live colour,
runs the command in a new container from that colour's image with the app's
env and volumes (or, with --reuse, in the live web container), removes the
container if the connection goes, and appends the history line.
"""

import secrets

from ..commands.base import q
from ..commands.one_off import one_off
from ..connection.remote_command import run_attached
from ..model.state import format_history_line, history_entry

CODE = "__BLUEGREEN_EXIT_CODE__"


def exec_command(session, command, *, reuse=False, interactive=False, tty=False,
                 colour=None):
    """Run ``command`` on the session's host; returns its exit code."""
    s = session.settings
    session.host.connect()
    # This run's app.env (APP_ENV_FILE and SECRETS_CMD, read before
    # connecting): the one-off command sees today's secrets, not the last
    # release's; running containers keep theirs. Without -i it goes first on
    # the command's stdin and is written only if it differs (no upload, no
    # round trip); with -i stdin is the operator's, so it is uploaded.
    app_env = session.app_env if s.has_app_env else None
    if app_env is not None and interactive:
        session.host.put_bytes(app_env, f"{s.deploy_dir}/app.env", mode=0o600)
        app_env = None
    name = f"{s.app_name}-oneoff-{secrets.token_hex(4)}"
    entry = history_entry(host=session.name, app=s.app_name, task="exec", who=session.who,
                          result="exec", duration=0.0, to_colour=colour)
    entry.update(command=command[:200], reuse=reuse, exit_code=CODE)
    head, tail = format_history_line(entry).rstrip("\n").split(f'"{CODE}"')
    script = one_off(s, command, colour=colour, reuse=reuse, interactive=interactive,
                     tty=tty, name=name, history_head=head, history_tail=tail,
                     app_env_size=None if app_env is None else len(app_env))
    return run_attached(session.host, f"sh -c {q(script)}", stdin=interactive and not tty,
                        tty=tty, feed=app_env)
