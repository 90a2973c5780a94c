"""Remote scripts: pure builders, one script per phase, one round trip each.

Every value that reaches a script goes through ``q`` (shlex.quote). The
configured commands (COMPOSE_CMD, NGINX_TEST_CMD, NGINX_RELOAD_CMD, APP_CMD,
PRE_SWITCH_CMD) are command lines by design and are inserted as written.
Scripts report through marker lines that ``parse_output`` reads:
``::key value`` for one value and ``::begin name`` ... ``::end name`` for a
block of text.
"""

import shlex

from .compose import INSPECT_FORMAT, container_name

q = shlex.quote

# Exit codes of our scripts that mean something specific.
NO_DEPLOY_DIR = 41
GIT_FAILED = 42
BUILD_FAILED = 43
START_FAILED = 44
NGINX_TEST_FAILED = 45
NGINX_RELOAD_FAILED = 46
STATE_WRITE_FAILED = 48


def parse_output(text):
    """Marker values and blocks from a script's stdout."""
    values, blocks, current, lines = {}, {}, None, []
    for line in text.splitlines():
        if current is not None:
            if line == f"::end {current}":
                blocks[current] = "\n".join(lines) + ("\n" if lines else "")
                current, lines = None, []
            else:
                lines.append(line)
            continue
        if line.startswith("::begin "):
            current = line[len("::begin "):].strip()
        elif line.startswith("::"):
            key, _, value = line[2:].partition(" ")
            values[key] = value.strip()
    return values, blocks


def block(name, command):
    """Print a command's output between markers (nothing if it fails)."""
    return f"echo '::begin {name}'; {command}; echo; echo '::end {name}'"


def sudo(settings):
    return "sudo -n " if settings.use_sudo else ""


def compose(settings):
    """The compose command for this app, run from DEPLOY_DIR."""
    return (f"COMPOSE_BAKE=false {settings.compose_cmd} -p {q(settings.app_name)} "
            f"-f {q(settings.deploy_dir + '/compose.yml')}")


def inspect_containers(settings, colours=("blue", "green")):
    names = " ".join(q(container_name(settings, c)) for c in colours)
    return f"docker inspect --format {q(INSPECT_FORMAT)} {names} 2>/dev/null"


def take_lock(settings, owner_json):
    lock = q(settings.deploy_dir + "/.lock")
    return (f"if mkdir {lock} 2>/dev/null; then "
            f"printf '%s\\n' {q(owner_json)} > {lock}/owner.json; echo '::lock taken'; "
            f"locked=1; else echo '::lock held'; fi")


def inspect(settings, *, owner_json=None, history_lines=0, app_env=False, listening=False,
            then_from_stdin=False):
    """What is on the host: state, nginx file, lock, containers (one round trip).

    With ``owner_json`` the lock is taken first, so what is read cannot change
    underneath the task (a held lock prints ``::lock held``). With
    ``listening``, the TCP ports something listens on (``ss``; with the
    program's name when the login user may see it).

    With ``then_from_stdin`` the script prints ``::inspected`` last and, if
    it took the lock, runs the script it then reads on stdin (a release's
    build, planned from what was read): one round trip instead of two.
    Nothing on stdin ends it there.
    """
    d = settings.deploy_dir
    lines = [
        "echo \"::now $(date +%s)\"",
        f"if [ -d {q(d)} ]; then echo '::deploy_dir yes'; else echo '::deploy_dir no'; fi",
    ]
    if owner_json is not None:
        lines.append(f"if [ -d {q(d)} ]; then {take_lock(settings, owner_json)}; fi")
    lines += [
        block("owner", f"cat {q(d + '/.lock/owner.json')} 2>/dev/null"),
        block("state", f"cat {q(d + '/state.json')} 2>/dev/null"),
        block("nginx", f"cat {q(settings.nginx_file)} 2>/dev/null"),
        block("containers", inspect_containers(settings)),
    ]
    if history_lines:
        lines.append(block("history", f"tail -n {int(history_lines)} "
                                      f"{q(d + '/history.jsonl')} 2>/dev/null"))
    if app_env:
        lines.append(f"echo \"::app_env $(sha256sum {q(d + '/app.env')} 2>/dev/null "
                     f"| cut -d' ' -f1)\"")
    if listening:
        lines.append(block("listening", "ss -Htlnp 2>/dev/null || ss -Htln 2>/dev/null"))
    if then_from_stdin:
        lines += ["echo '::inspected'",
                  'if [ "${locked:-0}" = 1 ]; then next=$(cat); '
                  'if [ -n "$next" ]; then exec sh -c "$next"; fi; fi']
    return "\n".join(lines) + "\n"


def write_file(path, text, mode=None, prefix=""):
    """Write ``text`` to ``path`` through a temporary file and a rename.

    A crash leaves the old file or the new one, never half of one.
    """
    tmp = f"{path}.tmp"
    chmod = f" && {prefix}chmod {mode} {q(tmp)}" if mode else ""
    return (f"printf '%s' {q(text)} | {prefix}tee {q(tmp)} >/dev/null{chmod} "
            f"&& {prefix}mv -f {q(tmp)} {q(path)}")


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
        f"if [ $n -ge {bound} ] && [ {bound} -gt 0 ]; then echo '::drained timeout'; "
        f"else echo \"::drained $n\"; fi"
    )


def build(settings, colour, *, branch, ref, compose_text, dockerfile_text):
    """Bring the colour's checkout to the commit, build it and start it.

    Phase markers (``::phase git|build|start``) let the caller time each
    part and show the build's progress as it comes. The live colour is not
    touched: compose is told about the target service only.
    """
    d, checkout = settings.deploy_dir, f"{settings.deploy_dir}/{colour}"
    if ref is None:
        wants = [f"refs/remotes/origin/{branch}"]
    else:
        # A branch named by --ref is the remote's: the local branch the clone
        # made is never moved by the fetch, so a bare name would find it stale.
        wants = [f"refs/tags/{ref}", f"refs/remotes/origin/{ref}", ref]
    resolve = " || ".join(f"git rev-parse --verify --quiet {q(w + '^{commit}')}"
                          for w in wants)
    name = container_name(settings, colour)
    return f"""set -u
cd {q(d)} || exit {NO_DEPLOY_DIR}
echo '::phase git'
if [ ! -d {q(checkout + '/.git')} ]; then
  rm -rf {q(checkout)}
  git clone --quiet --no-checkout {q(settings.git_repo)} {q(checkout)} 2>&1 || {{ echo '::error git clone of GIT_REPO failed'; exit {GIT_FAILED}; }}
fi
cd {q(checkout)} || exit {GIT_FAILED}
git remote set-url origin {q(settings.git_repo)}
git fetch --quiet --prune --tags --force origin '+refs/heads/*:refs/remotes/origin/*' 2>&1 || {{ echo '::error git fetch from GIT_REPO failed'; exit {GIT_FAILED}; }}
commit=$({resolve}) || {{ echo {q('::error ' + ('branch ' + branch if ref is None else 'ref ' + ref) + ' is not in GIT_REPO')}; exit {GIT_FAILED}; }}
git checkout --quiet --force --detach "$commit" 2>&1 && git clean -qfdx 2>&1 || {{ echo '::error git checkout failed'; exit {GIT_FAILED}; }}
echo "::commit $commit"
echo "::subject $(git log -1 --format=%s | tr -d '\\r' | cut -c1-72)"
if [ ! -f Dockerfile ]; then printf '%s' {q(dockerfile_text)} > Dockerfile; echo '::dockerfile generated'; fi
cd {q(d)}
if ! printf '%s' {q(compose_text)} | cmp -s - compose.yml; then
  {write_file(d + '/compose.yml', compose_text)} || exit {BUILD_FAILED}
  echo '::compose updated'
fi
echo '::phase build'
{compose(settings)} build {q(colour)} 2>&1 || {{ echo '::error docker build failed'; exit {BUILD_FAILED}; }}
echo '::phase start'
{drain(settings, colour)}
{compose(settings)} up -d --no-deps --force-recreate {q(colour)} 2>&1 || {{ echo '::error container did not start'; exit {START_FAILED}; }}
echo "::image $(docker inspect --format '{{{{.Image}}}}' {q(name)} 2>/dev/null)"
"""


def container_state(settings, colour):
    return inspect_containers(settings, (colour,))


def pre_switch(settings, colour):
    """PRE_SWITCH_CMD inside the new colour's container (migrations)."""
    return (f"cd {q(settings.deploy_dir)} && {compose(settings)} exec -T {q(colour)} "
            f"sh -c {q(settings.pre_switch_cmd)} 2>&1")


def switch(settings, nginx_text, then=None):
    """Put the nginx file in place, test it, reload; put the old one back on failure.

    The old file is kept as DEPLOY_DIR/nginx.previous.conf.

    With ``then`` (a script, e.g. ``finish(..., history_from_stdin=True)``),
    after ``::switched`` the script waits for one line on stdin: ``record``
    followed by the history line runs ``then``; anything else, or the end of
    stdin, ends the script with nothing recorded. The caller verifies the
    switch through nginx in between: one round trip instead of two.
    """
    s = sudo(settings)
    f, backup = settings.nginx_file, f"{settings.deploy_dir}/nginx.previous.conf"
    tmp = f + ".tmp"
    restore = (f"if [ \"$had\" = 1 ]; then cat {q(backup)} | {s}tee {q(tmp)} >/dev/null "
               f"&& {s}mv -f {q(tmp)} {q(f)}; else {s}rm -f {q(f)}; fi")
    return f"""set -u
had=0
if [ -f {q(f)} ]; then cat {q(f)} > {q(backup)} && had=1; fi
{write_file(f, nginx_text, prefix=s)} || {{ echo {q('::error could not write ' + f)}; exit {NGINX_TEST_FAILED}; }}
if ! out=$({s}{settings.nginx_test_cmd} 2>&1); then
  {restore}
  echo '::begin nginx_test'; echo "$out"; echo '::end nginx_test'
  exit {NGINX_TEST_FAILED}
fi
if ! out=$({s}{settings.nginx_reload_cmd} 2>&1); then
  {restore}
  {s}{settings.nginx_reload_cmd} >/dev/null 2>&1
  echo '::begin nginx_reload'; echo "$out"; echo '::end nginx_reload'
  exit {NGINX_RELOAD_FAILED}
fi
echo '::switched'
""" + ("" if then is None else f"""verdict=; IFS= read -r verdict || true
if [ "$verdict" != record ]; then echo '::not_recorded'; exit 0; fi
history_line=; IFS= read -r history_line || true
{then}""")


def finish(settings, *, state_text=None, history_line=None, unlock=True,
           stop_colour=None, log_colour=None, log_lines=40, history_from_stdin=False):
    """Write state, append history, stop a colour, show logs, drop the lock.

    With ``history_from_stdin`` the history line is the one ``switch(...,
    then=...)`` read into $history_line. When state.json cannot be written
    the script stops there with STATE_WRITE_FAILED: no "ok" history line,
    nothing stopped, the lock kept for the caller to undo the switch.
    """
    d = settings.deploy_dir
    lines = ["set -u", f"cd {q(d)} || exit {NO_DEPLOY_DIR}"]
    if state_text is not None:
        path = d + "/state.json"
        error = q("::error could not write " + path)
        lines.append(f"{write_file(path, state_text)} || "
                     f"{{ echo {error}; exit {STATE_WRITE_FAILED}; }}")
    if history_line is not None:
        lines.append(f"printf '%s' {q(history_line)} >> {q(d + '/history.jsonl')}")
    if history_from_stdin:
        lines.append(f"printf '%s\\n' \"$history_line\" >> {q(d + '/history.jsonl')}")
    if log_colour:
        lines.append(block("logs", f"{compose(settings)} logs --no-color --tail "
                                   f"{int(log_lines)} {q(log_colour)} 2>&1"))
    if stop_colour:
        lines.append(drain(settings, stop_colour))
        lines.append(f"{compose(settings)} stop {q(stop_colour)} >/dev/null 2>&1 "
                     f"&& echo '::stopped {stop_colour}'")
    if unlock:
        lines.append(unlock_lock(settings))
    return "\n".join(lines) + "\n"


def unlock_lock(settings):
    lock = settings.deploy_dir + "/.lock"
    return f"rm -f {q(lock + '/owner.json')}; rmdir {q(lock)} 2>/dev/null; true"


def setup(settings, state_text):
    """Create DEPLOY_DIR and its files where missing; say what was created."""
    d = settings.deploy_dir
    return f"""set -u
umask 022
for dir in {q(d)} {q(d + '/blue')} {q(d + '/green')}; do
  if [ ! -d "$dir" ]; then mkdir -p "$dir" && echo "::created $dir" || {{ echo "::error cannot create $dir"; exit {NO_DEPLOY_DIR}; }}; fi
done
if [ ! -f {q(d + '/state.json')} ]; then {write_file(d + '/state.json', state_text)} && echo '::created state.json'; fi
if [ ! -f {q(d + '/history.jsonl')} ]; then : > {q(d + '/history.jsonl')} && echo '::created history.jsonl'; fi
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
    for colour in ("blue", "green"):
        parts.append(
            f"echo \"::{colour}_commit $(git -C {q(d + '/' + colour)} rev-parse HEAD 2>/dev/null)\"")
    return "\n".join(parts) + "\n"
