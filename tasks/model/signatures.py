"""What `git verify-commit` against ALLOWED_SIGNERS said, and the refusal
an operator reads when a commit's signature does not verify.

git (2.39) prints, on stderr: `Good "git" signature for PRINCIPAL with
ED25519 key SHA256:...` and exits 0 for a key in the file; `Good "git"
signature with ... key SHA256:...` then `No principal matched.` for a key
that is not; nothing (exit 1) for an unsigned commit.
"""

import re
from dataclasses import dataclass

from ..errors import FAILED, Failure

GOOD_RE = re.compile(r'Good "git" signature for (?P<principal>.+?) with (?P<key>.+)$')
UNKNOWN_KEY_RE = re.compile(r'Good "git" signature with (?P<key>.+?) key (?P<fp>\S+)')


@dataclass(frozen=True)
class Signature:
    principal: str = ""  # who signed, as ALLOWED_SIGNERS names them; "" when refused
    reason: str = ""  # why it does not verify

    @property
    def ok(self):
        return bool(self.principal)


def verdict(code, output):
    """A Signature from verify-commit's exit code and output (stdout+stderr)."""
    lines = [line.strip() for line in (output or "").splitlines() if line.strip()]
    for line in lines:
        good = GOOD_RE.search(line)
        if good and code == 0:
            return Signature(principal=good.group("principal"))
    if not lines:
        return Signature(reason="it is not signed")
    for line in lines:
        unknown = UNKNOWN_KEY_RE.search(line)
        if unknown:
            return Signature(reason=f"it is signed by a key that is not in ALLOWED_SIGNERS "
                                    f"({unknown.group('fp')})")
    if any("not found" in line or "bad object" in line for line in lines):
        return Signature(reason="the commit is not in the repository here, so its signature "
                                "cannot be verified")
    return Signature(reason=f"git verify-commit said: {lines[-1][:200]}")


def refusal(commit, signature, where):
    """The Failure (exit 1) for a commit that must not go live."""
    return Failure(f"commit {commit[:12]} does not verify against ALLOWED_SIGNERS ({where}): "
                   f"{signature.reason}; nothing changed",
                   "release a commit signed by a key in ALLOWED_SIGNERS "
                   "(git commit -S with gpg.format=ssh; docs/security.md)", code=FAILED)
