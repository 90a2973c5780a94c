"""The local checkout of BUILD_ON=local: LOCAL_BUILD_DIR/<APP_NAME>, fetched
from GIT_REPO, detached at the planned commit, cleaned, its signature checked
(ALLOWED_SIGNERS). A lock file beside it keeps two `fab` runs of the same app
from using it at once; `remote_commit` asks GIT_REPO without a checkout."""

import fcntl
import os
import re
import shutil
import subprocess

from ..errors import FAILED, Failure
from ..model.signatures import Signature, refusal, verdict

GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}


def checkout_dir(settings):
    return os.path.join(settings.local_build_dir, settings.app_name)


class checkout_lock:
    """flock on LOCAL_BUILD_DIR/<APP_NAME>.lock: one fab run in the checkout at a time."""

    def __init__(self, settings):
        self.path = checkout_dir(settings) + ".lock"

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.f = open(self.path, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def git(settings, *args, cwd=None, bound=None):
    bound = bound or settings.build_timeout
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=bound, stdin=subprocess.DEVNULL,
                              env={**os.environ, **GIT_ENV})
    except subprocess.TimeoutExpired:
        raise Failure(f"`git {args[0]}` here did not finish within BUILD_TIMEOUT="
                      f"{bound:g}s; nothing live changed",
                      "check GIT_REPO and the network of this machine") from None


def fetch(settings, plan):
    """The local checkout at the plan's commit -> (commit, subject)."""
    path = fetch_repo(settings)
    wants = ([f"refs/remotes/origin/{plan.branch}"] if plan.ref is None else
             [f"refs/tags/{plan.ref}", f"refs/remotes/origin/{plan.ref}", plan.ref])
    return checkout_commit(settings, path, plan, wants)


def fetch_repo(settings):
    """LOCAL_BUILD_DIR's clone of GIT_REPO, fetched -> its path."""
    path = checkout_dir(settings)
    if not os.path.isdir(os.path.join(path, ".git")):
        shutil.rmtree(path, ignore_errors=True)
        r = git(settings, "clone", "--quiet", "--no-checkout", settings.git_repo, path)
        if r.returncode != 0:
            raise git_failed("git clone of GIT_REPO failed here", r)
    git(settings, "remote", "set-url", "origin", settings.git_repo, cwd=path)
    r = git(settings, "fetch", "--quiet", "--prune", "--tags", "--force", "origin",
            "+refs/heads/*:refs/remotes/origin/*", cwd=path)
    if r.returncode != 0:
        raise git_failed("git fetch from GIT_REPO failed here", r)
    return path


def checkout_commit(settings, path, plan, wants):
    for want in wants:
        r = git(settings, "rev-parse", "--verify", "--quiet", want + "^{commit}", cwd=path)
        if r.returncode == 0:
            commit = r.stdout.strip()
            break
    else:
        what = f"ref {plan.ref}" if plan.ref else f"branch {plan.branch}"
        raise Failure(f"{what} is not in GIT_REPO; nothing live changed",
                      "check the branch or ref, and GIT_REPO", code=FAILED)
    for args in (("checkout", "--quiet", "--force", "--detach", commit),
                 ("clean", "-qfdx")):
        r = git(settings, *args, cwd=path)
        if r.returncode != 0:
            raise git_failed("git checkout failed here", r)
    subject = git(settings, "log", "-1", "--format=%s", cwd=path).stdout.strip()[:72]
    return commit, subject


def verify_here(settings, commit):
    """git verify-commit of ``commit`` in the local checkout -> model Signature."""
    path = checkout_dir(settings)
    if not os.path.isdir(os.path.join(path, ".git")):
        return Signature(reason="there is no local checkout of GIT_REPO to check it in")
    r = git(settings, "-c", f"gpg.ssh.allowedSignersFile={settings.allowed_signers}",
            "verify-commit", commit, cwd=path)
    return verdict(r.returncode, r.stdout + r.stderr)


def signed_here(settings, commit, fetch_first=False):
    """The principal that signed ``commit``; raises the refusal (exit 1)."""
    if fetch_first:
        if not settings.git_repo:
            raise refusal(commit, Signature(reason="GIT_REPO is not set, so the image's "
                                                   "commit cannot be verified"), "checked here")
        fetch_repo(settings)
    found = verify_here(settings, commit)
    if not found.ok:
        raise refusal(commit, found, "checked here")
    return found.principal


def git_failed(why, result):
    last = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
    return Failure(f"{why}; nothing live changed",
                   "check GIT_REPO and that this machine can reach it" +
                   (f"; git said: {last[-1].strip()[:200]}" if last else ""), code=FAILED)


def remote_commit(settings, plan):
    """The commit GIT_REPO names for the plan, asked from here (`git ls-remote`,
    no checkout): '' when only a checkout can tell (a short sha, no access)."""
    want = plan.ref or plan.branch
    result = git(settings, "ls-remote", settings.git_repo, f"refs/heads/{want}",
                 f"refs/tags/{want}", f"refs/tags/{want}^{{}}")
    rows = dict(reversed(line.split("\t", 1)) for line in result.stdout.splitlines()
                if "\t" in line) if result.returncode == 0 else {}
    for name in (f"refs/tags/{want}^{{}}", f"refs/tags/{want}", f"refs/heads/{want}"):
        if rows.get(name):
            return rows[name]
    return want if plan.ref and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", want) else ""
