"""What every remote script is made of: markers, blocks, sudo, compose, atomic writes.

Each builder in commands/ returns the shell script of one step; the task
runs it in its one remote shell (connection/step_shell.py) and reads the
step's markers. Every value that reaches a script goes through ``q``
(shlex.quote). The configured commands (COMPOSE_CMD, NGINX_TEST_CMD,
NGINX_RELOAD_CMD, APP_CMD, PRE_SWITCH_CMD) are command lines by design and
are inserted as written.

Markers carry the task's token, exported by the shell as ``$M``:
``mark("key", "value")`` prints ``$M key value``; ``block(name, command)``
prints a command's output between ``$M begin name`` and ``$M end name``.
"""

import shlex


q = shlex.quote


# Exit codes of our scripts, one per meaning.
NO_DEPLOY_DIR = 41


GIT_FAILED = 42


BUILD_FAILED = 43


START_FAILED = 44


NGINX_TEST_FAILED = 45


NGINX_RELOAD_FAILED = 46


NGINX_WRITE_FAILED = 47


STATE_WRITE_FAILED = 48


TIMED_OUT = 124  # timeout(1)'s own status


def mark(key, value=""):
    """A marker line; ``value`` is shell text inside double quotes ($(...) expands)."""
    return f'echo "$M {key}{" " + value if value else ""}"'


def block(name, command):
    """Print a command's output between markers (nothing if it fails)."""
    return (f'echo "$M begin {name}"; {command}; '
            f"printf '\\n%s end {name}\\n' \"$M\"")


def side_by_side(commands, values=None):
    """Run ``commands`` ({block name: command}) at the same time, in the background.

    Returns (start, finish), two pieces of a step's script: ``start`` launches
    them, each into a file of a private temporary directory; ``finish`` waits
    for them and prints each output as its block, in order. What the step
    does in between runs meanwhile. A docker CLI call costs ~17 ms here,
    mostly waiting on the daemon: side by side, several cost about one.
    ``values`` ({key: command}) run the same way; the first line each prints
    becomes the marker ``$M key line``, read by the shell itself (no process).
    Without a temporary directory (no mktemp), ``finish`` runs them in turn.
    """
    start = ['bg=$(mktemp -d 2>/dev/null) || bg=""']
    finish = ["wait"]
    for name, command in commands.items():
        start.append(f'[ -z "$bg" ] || {{ {command}; }} > "$bg/{name}" 2>/dev/null &')
        finish.append(block(name, f'if [ -n "$bg" ]; then cat "$bg/{name}"; '
                                  f'else {command}; fi'))
    for key, command in (values or {}).items():
        start.append(f'[ -z "$bg" ] || {{ {command}; }} > "$bg/{key}" 2>/dev/null &')
        finish.append(f'v=""; if [ -n "$bg" ]; then IFS= read -r v < "$bg/{key}" || true; '
                      f'else v=$({command}); fi; {mark(key, "$v")}')
    finish.append('[ -z "$bg" ] || rm -rf "$bg"')
    return "\n".join(start), "\n".join(finish)


def sudo(settings):
    return "sudo -n " if settings.use_sudo else ""


def compose(settings, bounded=False, limit=None):
    """The compose command for this app.

    ``bounded``: stopped after BUILD_TIMEOUT (timeout(1), exit 124), with
    SIGKILL 10 s later if it ignores SIGTERM; ``limit``: after that many seconds.
    """
    if bounded and limit is None:
        limit = build_timeout(settings)
    limit = f"timeout -k 10 {limit} " if limit else ""
    return (f"COMPOSE_BAKE=false {limit}{settings.compose_cmd} -p {q(settings.app_name)} "
            f"-f {q(settings.deploy_dir + '/compose.yml')}")


def build_timeout(settings):
    """BUILD_TIMEOUT in whole seconds."""
    return int(settings.build_timeout)


def write_file(path, text, mode=None, prefix=""):
    """Write ``text`` to ``path`` through a temporary file and a rename.

    A crash leaves the old file or the new one, never half of one; a write
    that fails (a full disk) removes what it had written of the temporary.
    """
    tmp = f"{path}.tmp"
    chmod = f" && {prefix}chmod {mode} {q(tmp)}" if mode else ""
    if prefix:  # sudo: only the commands docs/security.md's sudoers lines allow
        return (f"printf '%s' {q(text)} | {prefix}tee {q(tmp)} >/dev/null{chmod} "
                f"&& {prefix}mv -f {q(tmp)} {q(path)}")
    write = f"printf '%s' {q(text)} > {q(tmp)}{chmod} && mv -f {q(tmp)} {q(path)}"
    return f"{{ {write}; }} || {{ rm -f {q(tmp)}; false; }}"


def first_command(command_line):
    """The program a configured command runs (after sudo and env assignments)."""
    words = shlex.split(command_line)
    while words and (words[0] in ("sudo", "-n", "env") or "=" in words[0]):
        words = words[1:]
    return words[0] if words else ""
