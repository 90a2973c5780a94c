"""What git verify-commit said against ALLOWED_SIGNERS (git 2.39's words)."""

from tasks.model.signatures import refusal, verdict


def test_a_key_in_the_file_names_its_principal():
    out = 'Good "git" signature for ann@example.com with ED25519 key SHA256:Zuv\n'
    assert verdict(0, out).principal == "ann@example.com"


def test_unsigned_unknown_key_and_missing_commit_are_refused_with_a_reason():
    assert verdict(1, "").reason == "it is not signed"
    other = 'Good "git" signature with ED25519 key SHA256:/kVx\nNo principal matched.\n'
    found = verdict(1, other)
    assert not found.ok and "not in ALLOWED_SIGNERS (SHA256:/kVx)" in found.reason
    assert "not in the repository" in verdict(1, "error: commit 'dead' not found.").reason
    # a good line with a failing exit code is never trusted
    assert not verdict(1, 'Good "git" signature for ann with ED25519 key SHA256:x').ok


def test_the_refusal_names_the_commit_and_the_reason():
    exc = refusal("a" * 40, verdict(1, ""), "checked on prod")
    assert exc.code == 1 and "aaaaaaaaaaaa" in exc.message and "not signed" in exc.message
