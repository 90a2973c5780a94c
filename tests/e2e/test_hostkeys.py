"""Host keys, CI credentials and connection failures, with the real `fab`.

Every case here stops before a single command runs on the host, so the
checks are: the exit code, what the operator reads (one line of cause, one
of what to do, never a traceback), and that nothing appeared on the host
(no DEPLOY_DIR, hence no lock). No Docker build is needed: `setup` is the
task that would create DEPLOY_DIR at once if it got through, `unlock` and
`status` are the cheap ones that do connect.
"""

import socket
import subprocess
import time

import pytest
import yaml

from hostile import error_lines, fab, fab_command, output

pytestmark = pytest.mark.e2e


# --- helpers ------------------------------------------------------------------------


def host_key_line(loophost):
    """`[127.0.0.1]:PORT ssh-ed25519 AAAA...`: the loophost's real key."""
    return loophost.known_hosts.read_text().strip()


def fingerprint(pub_path):
    out = subprocess.run(["ssh-keygen", "-lf", str(pub_path)], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[1]


def other_key(tmp_path, name="other"):
    """A freshly made ed25519 key pair: (private path, public path)."""
    key = tmp_path / f"{name}_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
                   check=True)
    return key, key.with_name(key.name + ".pub")


def write_hosts(project, **entry):
    """hosts.yml with one host `testhost` made of `entry` (None drops a field)."""
    base = project.host.hosts_entry(project.HOST_NAME)[project.HOST_NAME]
    base.update(entry)
    base = {k: v for k, v in base.items() if v is not None}
    project.hosts_file.write_text(yaml.safe_dump(
        {"hosts": {project.HOST_NAME: base}, "default_hosts": [project.HOST_NAME]},
        sort_keys=False))


def assert_stopped_before_anything_ran(project, result, code=3):
    """Exit `code`, two lines on stderr (cause, what to do), no traceback, nothing on the host."""
    assert result.returncode == code, output(result)
    assert "Traceback" not in output(result), output(result)
    lines = error_lines(result)
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("  "), (
        f"expected one line of cause and one of what to do on stderr:\n{result.stderr}")
    assert not project.deploy_dir.exists(), "DEPLOY_DIR was created: a command ran on the host"
    return lines


# --- host keys ----------------------------------------------------------------------


@pytest.mark.parametrize("known_hosts", ["empty", "missing"])
def test_unknown_host_key_stops_before_any_command(project, loophost, tmp_path, known_hosts):
    path = tmp_path / "kh" / "known_hosts"
    if known_hosts == "empty":
        path.parent.mkdir()
        path.write_text("")
    write_hosts(project, known_hosts=str(path))

    r = project.fab("setup", timeout=60)

    cause, hint = assert_stopped_before_anything_ran(project, r)
    assert "unknown host key" in cause
    assert fingerprint(loophost.host_key.with_suffix(".pub")) in cause
    assert str(path) in cause
    assert "ssh-keyscan" in hint and f"-p {loophost.ssh_port}" in hint
    assert "--accept-new-host-key" in hint
    # A refusal never records anything either.
    assert (path.read_text() if path.exists() else "") == ""


def test_changed_host_key_stops_even_with_accept_new(project, loophost, tmp_path):
    _, old_pub = other_key(tmp_path, "old-host")
    kind, blob = old_pub.read_text().split()[:2]
    path = tmp_path / "known_hosts"
    stale = f"[127.0.0.1]:{loophost.ssh_port} {kind} {blob}\n"
    path.write_text(stale)
    write_hosts(project, known_hosts=str(path))

    for flags in ([], ["--accept-new-host-key"]):
        r = project.fab("setup", *flags, timeout=60)
        cause, hint = assert_stopped_before_anything_ran(project, r)
        assert "CHANGED" in cause, cause
        assert fingerprint(loophost.host_key.with_suffix(".pub")) in cause  # what it offers now
        assert fingerprint(old_pub) in cause  # what known_hosts expected
        assert f"{path}:1" in hint and "ssh-keygen -R" in hint
        assert path.read_text() == stale, "a changed key must never be written over the old one"


def test_accept_new_host_key_records_it_then_strict_mode_passes(project, loophost, tmp_path):
    path = tmp_path / "new" / "known_hosts"  # neither the file nor its directory exist yet
    write_hosts(project, known_hosts=str(path))

    fab(project, "unlock", "--accept-new-host-key", timeout=60)

    recorded = path.read_text()
    assert recorded.strip() == host_key_line(loophost), recorded
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    # Strict from now on: no flag needed, and the key is not added twice.
    fab(project, "unlock", timeout=60)
    fab(project, "status", timeout=60)
    assert path.read_text() == recorded


# --- where the known hosts come from ------------------------------------------------


@pytest.mark.parametrize("source", ["hosts.yml", "KNOWN_HOSTS", "HOME"])
def test_known_hosts_sources(project, loophost, tmp_path, source):
    """hosts.yml `known_hosts`, the KNOWN_HOSTS setting, and ~/.ssh/known_hosts
    each decide alone: the right key passes, a file without it stops (exit 3)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    good, empty = tmp_path / "good_known_hosts", tmp_path / "empty_known_hosts"
    good.write_text(host_key_line(loophost) + "\n")
    empty.write_text("")
    env = {"HOME": str(home), "SSH_AUTH_SOCK": None}

    def use(path):
        if source == "hosts.yml":
            write_hosts(project, known_hosts=str(path))
        elif source == "KNOWN_HOSTS":
            write_hosts(project, known_hosts=None)
            project.set(KNOWN_HOSTS=str(path))
        else:
            write_hosts(project, known_hosts=None)
            (home / ".ssh" / "known_hosts").write_text(path.read_text())
        return path if source != "HOME" else home / ".ssh" / "known_hosts"

    where = use(good)
    r = fab(project, "status", env=env, timeout=60)
    assert "not set up" in r.stdout

    where = use(empty)
    r = project.fab("status", env=env, timeout=60)
    assert r.returncode == 3, output(r)
    assert "Traceback" not in output(r)
    assert f"which is not in {where}" in r.stderr, r.stderr


def test_hosts_yml_known_hosts_wins_over_the_setting(project, loophost, tmp_path):
    good, empty = tmp_path / "good", tmp_path / "empty"
    good.write_text(host_key_line(loophost) + "\n")
    empty.write_text("")
    project.set(KNOWN_HOSTS=str(empty))
    write_hosts(project, known_hosts=str(good))
    fab(project, "status", timeout=60)
    write_hosts(project, known_hosts=str(empty))
    project.set(KNOWN_HOSTS=str(good))
    r = project.fab("status", timeout=60)
    assert r.returncode == 3 and str(empty) in r.stderr, output(r)


# --- CI: credentials from the environment only ---------------------------------------


def test_ci_key_and_known_hosts_from_the_environment_only(project, loophost, tmp_path):
    """A CI job with no key files: DEPLOY_SSH_KEY and DEPLOY_KNOWN_HOSTS come
    from BLUEGREEN_* variables; hosts.yml names only host, user and port; HOME
    has no ~/.ssh at all, and no agent."""
    home = tmp_path / "ci-home"
    home.mkdir()
    write_hosts(project, identity_file=None, known_hosts=None)
    key_text = loophost.client_key.read_text()
    env = {"HOME": str(home), "SSH_AUTH_SOCK": None,
           "BLUEGREEN_DEPLOY_SSH_KEY": key_text,
           "BLUEGREEN_DEPLOY_KNOWN_HOSTS": host_key_line(loophost)}

    r = fab(project, "status", env=env, timeout=60)
    assert "not set up" in r.stdout
    # CI secret stores often flatten a key to one line with literal \n.
    flat = dict(env, BLUEGREEN_DEPLOY_SSH_KEY=key_text.strip().replace("\n", "\\n"))
    r2 = fab(project, "unlock", env=flat, timeout=60)
    for result in (r, r2):
        assert key_text.splitlines()[1] not in output(result)
    assert not (home / ".ssh").exists(), "nothing may be written to the CI job's home"

    # Without the known_hosts lines the same job is refused: no silent trust.
    r = project.fab("setup", env=dict(env, BLUEGREEN_DEPLOY_KNOWN_HOSTS=None), timeout=60)
    cause, _ = assert_stopped_before_anything_ran(project, r)
    assert "unknown host key" in cause
    # And the wrong key is an authentication failure, named as such.
    wrong, _ = other_key(tmp_path)
    r = project.fab("setup", env=dict(env, BLUEGREEN_DEPLOY_SSH_KEY=wrong.read_text()),
                    timeout=60)
    cause, _ = assert_stopped_before_anything_ran(project, r)
    assert "authentication failed for user 'root'" in cause and "DEPLOY_SSH_KEY" in cause


# --- connection failures: one line of cause, one of what to do, exit 3 ----------------


@pytest.fixture
def silent_port():
    """A port on 127.0.0.1 that accepts TCP connections and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


@pytest.mark.parametrize("timeout", [1.5, 3])
def test_connect_timeout_is_bounded_and_configurable(project, silent_port, timeout):
    write_hosts(project, port=silent_port)
    project.set(CONNECT_TIMEOUT=timeout)
    started = time.monotonic()
    r = project.fab("setup", timeout=60)
    took = time.monotonic() - started
    cause, hint = assert_stopped_before_anything_ran(project, r)
    assert f"within {timeout:g}s" in cause and "CONNECT_TIMEOUT" in cause + hint, cause + hint
    # It waited that long (the message names the value); no upper bound: a
    # busy machine is slow, and fab's own timeout above catches a hang.
    assert took >= timeout, f"took {took:.1f}s with CONNECT_TIMEOUT={timeout}"


def test_wrong_key_refused_port_and_unknown_name(project, loophost, tmp_path):
    wrong, _ = other_key(tmp_path)
    write_hosts(project, identity_file=str(wrong))
    r = project.fab("setup", timeout=60)
    cause, hint = assert_stopped_before_anything_ran(project, r)
    assert "authentication failed for user 'root'" in cause and str(wrong) in cause
    assert "authorized_keys" in hint

    with socket.socket() as s:  # a port nothing listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        write_hosts(project, port=s.getsockname()[1])
        r = project.fab("setup", timeout=60)
    cause, hint = assert_stopped_before_anything_ran(project, r)
    assert "connection refused" in cause and "sshd running" in hint

    # A name no resolver knows. Run in a network namespace with nothing but a
    # loopback, so the DNS query it causes cannot leave this machine.
    write_hosts(project, host="no-such-host.invalid", port=22)
    cmd = ["unshare", "--net", "--", "sh", "-c", 'exec "$@"', "fab"]
    r = subprocess.run(cmd + fab_command("setup"), cwd=project.dir,
                       env=project.child_env(), capture_output=True, text=True, timeout=60)
    cause, hint = assert_stopped_before_anything_ran(project, r)
    assert "cannot resolve the host name 'no-such-host.invalid'" in cause
    assert "hosts.yml" in hint

