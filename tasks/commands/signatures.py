"""ALLOWED_SIGNERS on the host: the file uploaded into DEPLOY_DIR, and git's
check of a commit there (model/signatures.py reads what it printed)."""

from .base import GIT_FAILED, mark, q, write_file

SIGNATURE_FAILED = 49  # the commit's signature did not verify


def signers_path(settings):
    return f"{settings.deploy_dir}/allowed_signers"


def verify_lines(settings, signers_text, commit_expr):
    """Shell lines, run inside a git checkout: write the allowed_signers file
    if it changed, verify ``commit_expr``; print `signature CODE` and
    `verify OUTPUT` markers; exit SIGNATURE_FAILED unless it verified."""
    path = signers_path(settings)
    joined = mark('verify', '$(printf %s "$verify_out" | tr "\\n" "|")')
    return f"""if ! printf '%s' {q(signers_text)} | cmp -s - {q(path)}; then
  {write_file(path, signers_text)} || {{ {mark('error', 'could not write DEPLOY_DIR/allowed_signers')}; exit {GIT_FAILED}; }}
fi
verify_out=$(git -c gpg.ssh.allowedSignersFile={q(path)} verify-commit {commit_expr} 2>&1)
verify_code=$?
{mark('signature', '$verify_code')}
{joined}
[ "$verify_code" -eq 0 ] || exit {SIGNATURE_FAILED}"""


def verify_kept(settings, signers_text, commit):
    """A kept commit checked in one of the colours' checkouts (rollback --to,
    promote): no fetch, no checkout."""
    d = settings.deploy_dir
    return f"""set -u
cd {q(d)} || exit 41
for c in blue green; do
  git -C "$c" cat-file -e {q(commit + '^{commit}')} 2>/dev/null && cd "$c" && break
done
[ -d .git ] || {{ {mark('signature', '1')}; {mark('verify', 'error: commit not found in the host checkouts')}; exit {SIGNATURE_FAILED}; }}
{verify_lines(settings, signers_text, q(commit))}
"""
