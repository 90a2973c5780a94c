"""ALLOWED_SIGNERS: only commits whose signature verifies go live.

Checked where the checkout is: on the host for BUILD_ON=host (the file
uploaded into DEPLOY_DIR), here for BUILD_ON=local and --image. The
principal that signed is recorded (state.json `signed_by`, history
`signer`), so status, releases and history show who signed what is live.
"""

from ..commands import signatures as host_check
from ..model.signatures import Signature, refusal, verdict
from ..shipping.local_checkout import verify_here


def signers_text(settings):
    """ALLOWED_SIGNERS' text, or None when it is not set."""
    if not settings.allowed_signers:
        return None
    with open(settings.allowed_signers, encoding="utf-8") as f:
        return f.read()


def from_step(result, commit, host):
    """The principal, from a host step that ran commands/signatures.py's lines;
    raises the refusal when the commit did not verify."""
    if "signature" not in result.values:
        return ""
    code = int(result.values.get("signature") or 1)
    found = verdict(code, result.values.get("verify", "").replace("|", "\n"))
    if not found.ok:
        raise refusal(commit, found, f"checked on {host}")
    return found.principal


def verify_kept(session, commit):
    """The principal of a kept release's commit (rollback --to, promote), or ""
    when ALLOWED_SIGNERS is not set; raises the refusal (nothing changed)."""
    s = session.settings
    text = signers_text(s)
    if text is None:
        return ""
    if s.build_on == "local":
        found = verify_here(s, commit)
        if not found.ok:
            raise refusal(commit, found, "checked here, in LOCAL_BUILD_DIR")
        return found.principal
    with session.reporter.phase("signature") as ph:
        result = session.run(host_check.verify_kept(s, text, commit))
        if "signature" not in result.values:
            raise refusal(commit, Signature(reason=f"the check could not run (exit "
                                                   f"{result.code})"), f"on {session.name}")
        principal = from_step(result, commit, session.name)
        ph.detail = f"{commit[:12]} signed by {principal}"
    return principal
