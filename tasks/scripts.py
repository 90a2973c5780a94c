"""Remote scripts: pure builders, one script per step of a task.

Each builder returns the shell script of one step; the task runs it in its
one remote shell (shell.py) and reads the step's markers. Every value that
reaches a script goes through ``q`` (shlex.quote). The configured commands
(COMPOSE_CMD, NGINX_TEST_CMD, NGINX_RELOAD_CMD, APP_CMD, PRE_SWITCH_CMD)
are command lines by design and are inserted as written.

Markers carry the task's token, exported by the shell as ``$M``:
``mark("key", "value")`` prints ``$M key value``; ``block(name, command)``
prints a command's output between ``$M begin name`` and ``$M end name``.
"""

import shlex

from .compose import INSPECT_FORMAT, container_name

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


def inspect_containers(settings, colours=("blue", "green")):
    """The colours' containers, one INSPECT_FORMAT line each. `docker container
    inspect`, not `docker inspect`: for a name with no container (a colour
    never started) the latter goes on to look for an image, network, volume
    and plugin of that name, with a `docker info` on the way (6 API calls
    instead of 1)."""
    names = " ".join(q(container_name(settings, c)) for c in colours)
    return f"docker container inspect --format {q(INSPECT_FORMAT)} {names} 2>/dev/null"


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


# --- reading the host, and the lock -------------------------------------------------


def take_lock(settings, owner_json):
    """mkdir the lock; take over one whose holder's shell on this host is gone.

    The owner record names the holder's shell (host_pid) and its start time
    (host_pid_start, from /proc): a shell that no longer runs, or a pid now
    given to another process, means the task that held the lock has ended
    (its SSH connection is gone). So does a shell whose parent is no longer
    the sshd session it was started by (host_ppid): when a connection is cut
    or fab is killed, sshd's session process ends at once, but its shell
    keeps running the step it was in (a build) with no one to read it, and
    a zombie nobody reaps keeps its /proc entry. Such an orphaned step is
    stopped (SIGTERM to the shell's process group) before the lock is taken
    over. A holder that is still connected is never overridden. Prints
    ``$M lock taken|taken-over|held``.
    """
    lock = q(settings.deploy_dir + "/.lock")
    owner = q(settings.deploy_dir + "/.lock/owner.json")
    stale = q(settings.deploy_dir + "/.lock.stale")
    return f"""if mkdir {lock} 2>/dev/null; then
  printf '%s\\n' {q(owner_json)} > {owner}; {mark('lock', 'taken')}
else
  holder=$(sed -n 's/.*"host_pid": *\\([0-9][0-9]*\\).*/\\1/p' {owner} 2>/dev/null)
  start=$(sed -n 's/.*"host_pid_start": *\\([0-9][0-9]*\\).*/\\1/p' {owner} 2>/dev/null)
  parent=$(sed -n 's/.*"host_ppid": *\\([0-9][0-9]*\\).*/\\1/p' {owner} 2>/dev/null)
  gone=no; orphan=no
  if [ -n "$holder" ] && [ -n "$start" ]; then
    set -- $(cut -d' ' -f3,4,5,22 /proc/"$holder"/stat 2>/dev/null)
    if [ "${{4:-}}" != "$start" ]; then gone=yes
    elif [ "$1" = Z ] || {{ [ -n "$parent" ] && [ "$2" != "$parent" ]; }}; then
      gone=yes; [ "$3" = "$holder" ] && [ "$1" != Z ] && orphan=yes
    fi
  fi
  if [ "$gone" = yes ] && rm -rf {stale} && mv {lock} {stale} 2>/dev/null && mkdir {lock} 2>/dev/null; then
    if [ "$orphan" = yes ]; then {stop_session('"$holder"')} && {mark('stopped_orphan', '$holder')}; fi
    {block('stale_owner', f'cat {stale}/owner.json 2>/dev/null')}
    rm -rf {stale}
    printf '%s\\n' {q(owner_json)} > {owner}; {mark('lock', 'taken-over')}
  else
    {mark('lock', 'held')}
  fi
fi"""


def stop_session(pid):
    """SIGTERM to every process of the session that the task's shell ``pid`` leads.

    By session, not process group: timeout(1) puts what it bounds (a build)
    in a group of its own, which a signal to the shell's group misses.
    """
    return f"{{ pkill -TERM -s {pid} 2>/dev/null || kill -TERM -{pid} 2>/dev/null; }}"


def inspect(settings, *, owner_json=None, history_lines=0, app_env=False, listening=False):
    """What is on the host: state, nginx file, lock, containers, nginx version.

    With ``owner_json`` the lock is taken first, so what is read cannot change
    underneath the task. With ``listening``, the TCP ports something listens
    on (``ss``; with the program's name when the login user may see it: that
    walks every process's files, ~15 ms of the host's CPU, so only the tasks
    that decide on ports ask for it).
    """
    d = settings.deploy_dir
    slow = {"containers": inspect_containers(settings)}
    if listening:
        slow["listening"] = "ss -Htlnp 2>/dev/null || ss -Htln 2>/dev/null"
    start, finish = side_by_side(slow, values={"nginx_version": nginx_version(settings)})
    lines = [
        f"if [ -d {q(d)} ]; then {mark('deploy_dir', 'yes')}; else {mark('deploy_dir', 'no')}; fi",
    ]
    if owner_json is not None:
        lines.append(f"if [ -d {q(d)} ]; then\n{take_lock(settings, owner_json)}\nfi")
    lines += [
        start,  # the slow reads, right after the lock: nothing changes under them
        mark("now", "$(date +%s)"),
        block("owner", f"cat {q(d + '/.lock/owner.json')} 2>/dev/null"),
        block("state", f"cat {q(d + '/state.json')} 2>/dev/null"),
        block("nginx", f"cat {q(settings.nginx_file)} 2>/dev/null"),
    ]
    if history_lines:
        lines.append(block("history", f"tail -n {int(history_lines)} "
                                      f"{q(d + '/history.jsonl')} 2>/dev/null"))
    if app_env:
        lines.append(mark("app_env", f"$(sha256sum {q(d + '/app.env')} 2>/dev/null "
                                     "| cut -d' ' -f1)"))
    lines.append(finish)
    return "\n".join(lines) + "\n"


def first_command(command_line):
    """The program a configured command runs (after sudo and env assignments)."""
    words = shlex.split(command_line)
    while words and (words[0] in ("sudo", "-n", "env") or "=" in words[0]):
        words = words[1:]
    return words[0] if words else ""


def nginx_version(settings):
    """The version of the nginx that NGINX_TEST_CMD runs ('' when unknown)."""
    binary = first_command(settings.nginx_test_cmd) or "nginx"
    return (f"PATH=\"$PATH:/usr/sbin:/sbin\" {sudo(settings)}{q(binary)} -v 2>&1 "
            "| sed -n 's|.*nginx/\\([0-9.]*\\).*|\\1|p' | head -n 1")


def adopt_lock(settings, old_pid, owner_json):
    """Name a new shell of the same task as the lock's holder, if the lock is still ours.

    A step stopped part-way (timeout, Ctrl-C) ends the task's shell; the
    task carries on (undo, record) in a new one, which must hold the lock
    or another task could take it over as stale.
    """
    owner = q(settings.deploy_dir + "/.lock/owner.json")
    return (f"if grep -q '\"host_pid\": {int(old_pid)}[,}}]' {owner} 2>/dev/null; then "
            f"printf '%s\\n' {q(owner_json)} > {owner}; fi")


def unlock_lock(settings):
    lock = settings.deploy_dir + "/.lock"
    return f"rm -f {q(lock + '/owner.json')}; rmdir {q(lock)} 2>/dev/null; true"


# --- the colours' containers ------------------------------------------------------


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


# Run in the container by `sh -c WRAP bluegreen-pre-switch SECONDS CMD`. The
# bound is kept inside the container: stopping `docker exec` on the host
# leaves the command running in there (a migration holding its locks).
# GNU timeout signals its whole process group (the JVM under `sh -c`).


# --- switch and record ---------------------------------------------------------------


def switch(settings, nginx_text):
    """Put the nginx file in place, test it, reload; put the old one back on failure.

    The old file is kept as DEPLOY_DIR/nginx.previous.conf.
    """
    s = sudo(settings)
    f, backup = settings.nginx_file, f"{settings.deploy_dir}/nginx.previous.conf"
    tmp = f + ".tmp"
    restore = (f"if [ \"$had\" = 1 ]; then cat {q(backup)} | {s}tee {q(tmp)} >/dev/null "
               f"&& {s}mv -f {q(tmp)} {q(f)}; else {s}rm -f {q(f)}; fi")
    return f"""set -u
[ -d {q(settings.deploy_dir + '/logs')} ] || mkdir -p {q(settings.deploy_dir + '/logs')}
had=0
if [ -f {q(f)} ]; then cat {q(f)} > {q(backup)} && had=1; fi
if ! out=$({write_file(f, nginx_text, prefix=s)} 2>&1); then
  echo "$M error could not write "{q(f)}
  {block('output', 'printf "%s" "$out"')}
  exit {NGINX_WRITE_FAILED}
fi
if ! out=$({s}{settings.nginx_test_cmd} 2>&1); then
  {restore}
  {block('output', 'printf "%s" "$out"')}
  exit {NGINX_TEST_FAILED}
fi
{rotate_access_log(settings)}
if ! out=$({s}{settings.nginx_reload_cmd} 2>&1); then
  {restore}
  {s}{settings.nginx_reload_cmd} >/dev/null 2>&1
  {block('output', 'printf "%s" "$out"')}
  exit {NGINX_RELOAD_FAILED}
fi
"""


# The access log is rotated at a switch once it is larger than this; one
# older file (access.log.1) is kept, so the logs take at most twice this.
ACCESS_LOG_MAX_BYTES = 64 * 1024 * 1024


def rotate_access_log(settings, max_bytes=ACCESS_LOG_MAX_BYTES):
    """access.log -> access.log.1 when it is over ACCESS_LOG_MAX_BYTES.

    Runs before the reload of a switch: the reload makes nginx open
    access.log afresh, while its old workers finish writing to the renamed
    file. So the log never grows without bound, and nothing is lost.
    """
    log = settings.access_log_path
    return (f"if [ \"$(wc -c 2>/dev/null < {q(log)} || echo 0)\" -gt {int(max_bytes)} ]; "
            f"then mv -f {q(log)} {q(log + '.1')} && {mark('rotated', 'access.log')}; fi")


def record(settings, *, state_text=None, history_line=None, unlock=False):
    """Write state.json, append to history.jsonl.

    When state.json cannot be written the step stops there with
    STATE_WRITE_FAILED: no history line, so the caller can undo the switch
    and record the failure instead. ``unlock``: then drop the lock, in the
    same step, once both are written (a failed write keeps it).
    """
    d = settings.deploy_dir
    lines = ["set -u", f"cd {q(d)} || exit {NO_DEPLOY_DIR}"]
    if state_text is not None:
        path = d + "/state.json"
        lines.append(f"{write_file(path, state_text)} || "
                     f"{{ echo \"$M error could not write \"{q(path)}; exit {STATE_WRITE_FAILED}; }}")
    if history_line is not None:
        lines.append(f"printf '%s' {q(history_line)} >> {q(d + '/history.jsonl')}"
                     + (" || exit $?" if unlock else ""))
    if unlock:
        lines.append(unlock_lock(settings))
    return "\n".join(lines) + "\n"


def stop(settings, colour):
    """Stop a colour once nginx's old workers have finished with it."""
    return (f"cd {q(settings.deploy_dir)} || exit {NO_DEPLOY_DIR}\n"
            f"{drain(settings, colour)}\n"
            f"{compose(settings)} stop {q(colour)} >/dev/null 2>&1 && {mark('stopped', colour)}\n")


def logs_tail(settings, colour, lines=40):
    return block("logs", f"{compose(settings)} logs --no-color --tail {int(lines)} "
                         f"{q(colour)} 2>&1")


# --- set-up and looking after the host ------------------------------------------------


def setup(settings, state_text):
    """Create DEPLOY_DIR and its files where missing; say what was created."""
    d = settings.deploy_dir
    return f"""set -u
umask 022
for dir in {q(d)} {q(d + '/blue')} {q(d + '/green')} {q(d + '/logs')}; do
  if [ ! -d "$dir" ]; then mkdir -p "$dir" && echo "$M created $dir" || {{ echo "$M error cannot create $dir"; exit {NO_DEPLOY_DIR}; }}; fi
done
if [ ! -f {q(d + '/state.json')} ]; then {write_file(d + '/state.json', state_text)} && {mark('created', 'state.json')}; fi
if [ ! -f {q(d + '/history.jsonl')} ]; then : > {q(d + '/history.jsonl')} && {mark('created', 'history.jsonl')}; fi
"""


def logs(settings, colour, lines, follow):
    follow_flag = " --follow" if follow else ""
    return (f"cd {q(settings.deploy_dir)} && {compose(settings)} logs --no-color "
            f"--tail {int(lines)}{follow_flag} {q(colour)} 2>&1")


def history(settings, lines):
    return f"tail -n {int(lines)} {q(settings.deploy_dir + '/history.jsonl')} 2>/dev/null; true"


def repair_facts(settings):
    """What repair rebuilds state.json from: checkouts, images, containers, nginx."""
    d = settings.deploy_dir
    parts = [inspect(settings)]
    label = '{{index .Config.Labels "org.opencontainers.image.revision"}}'
    for colour in ("blue", "green"):
        # A colour built off the host (BUILD_ON=local) has no checkout: its
        # container's image carries the commit as a label.
        parts.append(mark(f"{colour}_commit",
                          f"$(git -C {q(d + '/' + colour)} rev-parse HEAD 2>/dev/null || "
                          f"docker container inspect --format {q(label)} "
                          f"{q(container_name(settings, colour))} 2>/dev/null)"))
    return "\n".join(parts) + "\n"
