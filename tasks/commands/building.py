"""The scripts of a release's steps on the idle colour: check out, build,
start (or start a kept image again), and PRE_SWITCH_CMD in its container.
Builders, as in base.py: pure functions that return one step's script.
"""

from ..model.compose_file import container_name
from .base import (BUILD_FAILED, block, GIT_FAILED, NO_DEPLOY_DIR, START_FAILED, TIMED_OUT, build_timeout,
                   compose, mark, q, write_file)
from .containers import drain
from .signatures import verify_lines


# The branches of GIT_REPO a checkout knows, on one line (for "did you mean").
ORIGIN_BRANCHES = ("$(git for-each-ref --format='%(refname:lstrip=3)' refs/remotes/origin "
                   "| head -n 200 | tr '\\n' ' ')")


def checkout(settings, colour, *, branch, ref, signers=None):
    """Bring the colour's checkout to the commit (fetch, detached checkout, clean).

    git never waits for input: no terminal prompts, SSH in batch mode, and
    the whole step is bounded by BUILD_TIMEOUT. ``signers``: ALLOWED_SIGNERS'
    text; the commit must verify against it before it is checked out.
    """
    d, path = settings.deploy_dir, f"{settings.deploy_dir}/{colour}"
    if ref is None:
        wants = [f"refs/remotes/origin/{branch}"]
    else:
        # A branch named by --ref is the remote's: the local branch the clone
        # made is never moved by the fetch, so a bare name would find it stale.
        wants = [f"refs/tags/{ref}", f"refs/remotes/origin/{ref}", ref]
    resolve = " || ".join(f"git rev-parse --verify --quiet {q(w + '^{commit}')}"
                          for w in wants)
    missing = "branch " + branch if ref is None else "ref " + ref
    git = f"timeout -k 10 {build_timeout(settings)} git"
    procfile = (block("procfile", f"cat {q(settings.procfile)} 2>/dev/null") + "\n"
                if settings.procfile else "")
    subject = mark("subject", "$(git log -1 --format=%s | tr -d '\\r' | cut -c1-72)")
    return f"""set -u
export GIT_TERMINAL_PROMPT=0 GIT_ASKPASS=true SSH_ASKPASS=true
export GIT_SSH_COMMAND="${{GIT_SSH_COMMAND:-ssh}} -o BatchMode=yes"
cd {q(d)} || exit {NO_DEPLOY_DIR}
if [ ! -d {q(path + '/.git')} ]; then
  rm -rf {q(path)}
  {git} clone --quiet --no-checkout {q(settings.git_repo)} {q(path)} 2>&1 || {{ {mark('error', 'git clone of GIT_REPO failed')}; exit {GIT_FAILED}; }}
fi
cd {q(path)} || exit {GIT_FAILED}
git remote set-url origin {q(settings.git_repo)}
{git} fetch --quiet --prune --tags --force origin '+refs/heads/*:refs/remotes/origin/*' 2>&1 || {{ {mark('error', 'git fetch from GIT_REPO failed')}; exit {GIT_FAILED}; }}
commit=$({resolve}) || {{ echo "$M error "{q(missing + ' is not in GIT_REPO')}; {mark('branches', ORIGIN_BRANCHES)}; exit {GIT_FAILED}; }}
{mark('commit', '$commit')}
{verify_lines(settings, signers, '"$commit"') if signers is not None else ''}
git checkout --quiet --force --detach "$commit" 2>&1 && git clean -qfdx 2>&1 || {{ {mark('error', 'git checkout failed')}; exit {GIT_FAILED}; }}
{subject}
{procfile}"""


def image(settings, tag):
    """An image of this app: ``tag`` is a colour (what compose runs) or a commit."""
    return f"bluegreen-{settings.app_name}:{tag}"


def build(settings, colour, *, commit, compose_text, dockerfile_text, previous=None):
    """Write the compose file if it changed, build the colour's image, tag it by commit.

    Only the target service is named: the live colour is not touched.
    ``previous`` (commit, image id) is what the colour ran before: tagged by
    its commit first, so that the build taking the colour's tag cannot leave
    it nameless (a failed release starts it again; releases list it).
    """
    d, path = settings.deploy_dir, f"{settings.deploy_dir}/{colour}"
    keep = ""
    if previous and previous[0] and previous[1]:
        keep = (f"docker image inspect {q(image(settings, previous[0]))} >/dev/null 2>&1 || "
                f"docker tag {q(previous[1])} {q(image(settings, previous[0]))} 2>/dev/null\n")
    return f"""set -u
{keep}cd {q(path)} || exit {NO_DEPLOY_DIR}
if [ ! -f Dockerfile ]; then printf '%s' {q(dockerfile_text)} > Dockerfile; {mark('dockerfile', 'generated')}; fi
cd {q(d)}
if ! printf '%s' {q(compose_text)} | cmp -s - compose.yml; then
  {write_file(d + '/compose.yml', compose_text)} || exit {BUILD_FAILED}
  {mark('compose', 'updated')}
fi
{compose(settings, bounded=True)} build {q(colour)} 2>&1
code=$?
if [ $code -eq {TIMED_OUT} ]; then {mark('error', f'docker build did not finish within BUILD_TIMEOUT={build_timeout(settings)}s')}; exit {TIMED_OUT}; fi
if [ $code -ne 0 ]; then {mark('error', 'docker build failed')}; exit {BUILD_FAILED}; fi
docker tag {q(image(settings, colour))} {q(image(settings, commit))}
"""


def restore(settings, colour, commit):
    """Run the kept image of ``commit`` in ``colour`` again (no git, no build)."""
    return f"""set -u
cd {q(settings.deploy_dir)} || exit {NO_DEPLOY_DIR}
docker image inspect {q(image(settings, commit))} >/dev/null 2>&1 || {{ echo "$M error no kept image "{q(image(settings, commit))}; exit {START_FAILED}; }}
docker tag {q(image(settings, commit))} {q(image(settings, colour))}
{drain(settings, colour)}
{compose(settings, bounded=True)} up -d --no-deps --force-recreate --no-build {q(colour)} 2>&1 || {{ {mark('error', 'the container did not start')}; exit {START_FAILED}; }}
"""


def start(settings, colour):
    """Recreate the colour's container once nothing is connected to it."""
    name = container_name(settings, colour)
    return f"""set -u
cd {q(settings.deploy_dir)} || exit {NO_DEPLOY_DIR}
{drain(settings, colour)}
{compose(settings, bounded=True)} up -d --no-deps --force-recreate {q(colour)} 2>&1 || {{ {mark('error', 'the container did not start')}; exit {START_FAILED}; }}
{mark('image', f"$(docker inspect --format '{{{{.Image}}}}' {q(name)} 2>/dev/null)")}
"""


PRE_SWITCH_WRAP = (
    'if command -v timeout >/dev/null 2>&1; then exec timeout -k 10 "$1" sh -c "$2"; fi; '
    'echo "bluegreen: no timeout(1) in the container: PRE_SWITCH_TIMEOUT is kept from '
    'the host, and a command past it ends when the colour is put back" >&2; '
    'exec sh -c "$2"')


def pre_switch_timeout(settings):
    """PRE_SWITCH_TIMEOUT in whole seconds (at least 1)."""
    return max(1, int(settings.pre_switch_timeout))


def pre_switch(settings, colour, command=None):
    """PRE_SWITCH_CMD (or the Procfile's release: ``command``) inside the new
    colour's container (migrations), bounded by PRE_SWITCH_TIMEOUT there
    (exit 124), and from the host a little later."""
    seconds = pre_switch_timeout(settings)
    return (f"cd {q(settings.deploy_dir)} && {compose(settings, limit=seconds + 20)} exec -T "
            f"{q(colour)} sh -c {q(PRE_SWITCH_WRAP)} bluegreen-pre-switch {seconds} "
            f"{q(command or settings.pre_switch_cmd)} 2>&1")


# The branches GIT_REPO has, on one line (for "did you mean").
BRANCH_LIST = r"""$(sed -n 's|^[0-9a-f]*[[:space:]]refs/heads/||p' "$bg_ls" | head -n 200 | tr '\n' ' ')"""


def resolve(settings, *, branch, ref, remote=True):
    """Which commit a release would deploy, asked of GIT_REPO from the host
    (`git ls-remote`): no checkout moves, nothing is built. Also the hash of
    the host's compose.yml, to tell whether a release would change anything.
    A ref git cannot name remotely (a short sha) resolves to nothing: the
    release then goes on and its checkout finds it. ``remote`` False: the
    commit is known here (BUILD_ON=local, --image): only the hash."""
    d = settings.deploy_dir
    hashed = mark('compose', f"$(sha256sum {q(d + '/compose.yml')} 2>/dev/null | cut -d' ' -f1)")
    if not remote:
        return hashed + "\n"
    if ref is None:
        wants = [f"refs/heads/{branch}"]
    else:
        wants = [f"refs/tags/{ref}^{{}}", f"refs/tags/{ref}", f"refs/heads/{ref}"]
    pick = " || ".join(f"awk -v w={q(w)} '$2 == w {{ print $1; exit }}' \"$bg_ls\" | grep ."
                       for w in wants)
    full = (f"case {q(ref)} in *[!0-9a-f]*) ;; *) [ ${{#bg_ref}} -ge 40 ] && "
            f"echo {q(ref)};; esac" if ref else "false")
    return f"""set -u
export GIT_TERMINAL_PROMPT=0 GIT_ASKPASS=true SSH_ASKPASS=true
export GIT_SSH_COMMAND="${{GIT_SSH_COMMAND:-ssh}} -o BatchMode=yes"
bg_ref={q(ref or '')}
bg_ls=$(mktemp 2>/dev/null || echo /tmp/bluegreen-ls.$$)
if timeout -k 5 {build_timeout(settings)} git ls-remote {q(settings.git_repo)} > "$bg_ls" 2>/dev/null; then
  {mark('commit', f'$({{ {pick}; }} 2>/dev/null || {{ {full}; }} 2>/dev/null)')}
  {mark('branches', BRANCH_LIST)}
else
  {mark('error', 'git ls-remote of GIT_REPO failed')}
fi
rm -f "$bg_ls"
{hashed}
"""


def procfile_at(settings, colour, commit):
    """The Procfile of ``commit`` from the colour's checkout (block ``procfile``;
    nothing when the checkout does not hold that commit: built elsewhere)."""
    if not settings.procfile:
        return ""
    path = f"{settings.deploy_dir}/{colour}"
    return block("procfile", f"git -C {q(path)} show {q(commit + ':' + settings.procfile)} "
                 "2>/dev/null") + "\n"
