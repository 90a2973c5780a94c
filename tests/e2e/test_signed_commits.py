"""ALLOWED_SIGNERS end to end: keys made with ssh-keygen here, commits signed
by git (gpg.format=ssh); a signed commit goes live, an unsigned one and one
signed by a key not in the file are refused, built on the host and here,
and rollback --to of an unsigned kept release is refused. One project for
the module; the tests run in order.
"""

import subprocess

import pytest

import loophost as lh
from released import fab, history_json, output, status_json
from support.project import Project

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def proj(tmp_path_factory, loophost):
    base = tmp_path_factory.mktemp("signed")
    keys = base / "keys"
    keys.mkdir()
    for name in ("ann", "mallory"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name,
                        "-f", str(keys / name)], check=True)
    signers = base / "allowed_signers"
    signers.write_text(f'ann@example.com namespaces="git" {(keys / "ann.pub").read_text()}')
    app = lh.SampleApp(base / "sample-app")
    p = Project(base / "p", loophost, app)
    p.keys = keys
    sign_as(p, "ann")
    app.commit("v1")
    p.set(ALLOWED_SIGNERS=str(signers), LOCAL_BUILD_DIR=str(base / "local-builds"))
    try:
        fab(p, "setup")
        yield p
    finally:
        p.remove()


def sign_as(p, who):
    """Make the sample app's next commits signed by ``who``'s key (None: unsigned)."""
    git = ["git", "-C", str(p.app.work), "config"]
    if who is None:
        subprocess.run(git + ["commit.gpgsign", "false"], check=True)
        return
    for key, value in (("gpg.format", "ssh"), ("user.signingkey", str(p.keys / who)),
                       ("commit.gpgsign", "true")):
        subprocess.run(git + [key, value], check=True)


LOCAL = {"BLUEGREEN_BUILD_ON": "local"}


def test_a_signed_commit_goes_live_and_its_signer_is_shown(proj):
    status = status_json(proj)
    assert status["colours"]["blue"]["signed_by"] == "ann@example.com"
    r = fab(proj, "status")
    assert "signed by ann@example.com" in r.stdout
    assert history_json(proj)[-1]["signer"] == "ann@example.com"


@pytest.mark.parametrize("signer,reason", [(None, "not signed"),
                                           ("mallory", "not in ALLOWED_SIGNERS")])
def test_a_commit_that_does_not_verify_is_refused_on_the_host_and_here(proj, signer, reason):
    sign_as(proj, signer)
    sha = proj.app.commit(f"bad-{signer}")
    sign_as(proj, "ann")
    before = status_json(proj)
    for env in (None, LOCAL):
        r = fab(proj, "release", code=1, env=env)
        assert sha[:12] in output(r) and reason in output(r), output(r)
        assert "checked here" in output(r) if env else "checked on testhost" in output(r)
    after = status_json(proj)
    assert after["live"] == before["live"] == "blue"
    assert after["colours"]["blue"]["commit"] == before["colours"]["blue"]["commit"]


def test_a_signed_commit_built_here_goes_live(proj):
    sha = proj.app.commit("v2")
    fab(proj, "release", env=LOCAL)
    status = status_json(proj)
    live = status["colours"][status["live"]]
    assert live["commit"] == sha and live["signed_by"] == "ann@example.com"


def test_rollback_to_an_unsigned_kept_release_is_refused(proj):
    sign_as(proj, None)
    sha = proj.app.commit("unsigned-kept")
    sign_as(proj, "ann")
    fab(proj, "release", env={"BLUEGREEN_ALLOWED_SIGNERS": ""})  # checks off: it is kept
    fab(proj, "release", "--ref", proj.app.commits["v2"])
    live = status_json(proj)["live"]
    r = fab(proj, "rollback", "--to", sha[:12], code=1)
    assert sha[:12] in output(r) and "not signed" in output(r), output(r)
    assert status_json(proj)["live"] == live
    r = fab(proj, "releases")
    assert "ann@example.com" in r.stdout


def test_an_image_is_refused_when_its_commit_does_not_verify(proj):
    sign_as(proj, None)
    sha = proj.app.commit("unsigned-image")
    sign_as(proj, "ann")
    before = status_json(proj)
    for label, reason in ((sha, "not signed"), (None, "not in the repository")):
        name = f"{proj.name}-ci:{'labelled' if label else 'bare'}"
        args = ["docker", "build", "-q", "-t", name, str(proj.app.work)]
        if label:
            args[3:3] = ["--label", f"org.opencontainers.image.revision={label}"]
        r = subprocess.run(args, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        try:
            r = fab(proj, "release", "--image", name, code=1)
        finally:
            lh.docker("rmi", name)
        assert reason in output(r) and "ALLOWED_SIGNERS" in output(r), output(r)
    after = status_json(proj)
    assert after["live"] == before["live"]
    assert {c: v["commit"] for c, v in after["colours"].items()} == \
        {c: v["commit"] for c, v in before["colours"].items()}
