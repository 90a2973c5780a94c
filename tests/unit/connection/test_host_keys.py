"""tasks/connection/host_keys.py: known_hosts lines, fingerprints, private key text (no SSH)."""

import io
import os
import stat
import subprocess

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from paramiko.hostkeys import HostKeyEntry, HostKeys

from support.known_hosts_files import OTHER_FP, OTHER_PUB, PUB, PUB_FP, pub_key
from tasks.connection.host_keys import (AcceptNew, RejectUnknown, UnknownHostKey,
                                        append_known_host, host_matches, key_fingerprint,
                                        known_hosts_line, known_hosts_name, load_private_key,
                                        normalize_key_text, parse_known_hosts)
from tasks.errors import Failure


def ed25519_text(password=None):
    key = ed25519.Ed25519PrivateKey.generate()
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, enc).decode()


def test_fingerprint_matches_ssh_keygen():
    assert key_fingerprint(pub_key()) == PUB_FP
    assert key_fingerprint(pub_key(OTHER_PUB)) == OTHER_FP
    assert "=" not in PUB_FP


def test_fingerprint_of_a_fresh_key_matches_ssh_keygen_on_it(tmp_path):
    key = paramiko.ECDSAKey.generate()
    path = tmp_path / "k.pub"
    path.write_text(f"{key.get_name()} {key.get_base64()}\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    assert out.split()[1] == key_fingerprint(key)


def test_known_hosts_name():
    assert known_hosts_name("app.example.com", 22) == "app.example.com"
    assert known_hosts_name("127.0.0.1", 2222) == "[127.0.0.1]:2222"
    assert known_hosts_name("::1", 2222) == "[::1]:2222"


def test_known_hosts_line():
    assert known_hosts_line("[h]:2", pub_key()) == f"[h]:2 ssh-ed25519 {PUB}"


def test_parse_known_hosts_skips_what_it_cannot_use_and_keeps_line_numbers():
    text = "\n".join([
        "# comment",
        "",
        f"[h]:2222 ssh-ed25519 {PUB}",
        "broken ssh-ed25519 !!!not-base64!!!",
        f"@cert-authority *.example.com ssh-ed25519 {PUB}",
        "short line",
        "h sk-ssh-ed25519@openssh.com AAAAfoo",
        f"a,b ssh-ed25519 {OTHER_PUB} comment here",
    ])
    found = parse_known_hosts(text, "/k")
    assert [(k.lineno, k.entry.hostnames) for k in found] == [(3, ["[h]:2222"]), (8, ["a", "b"])]
    assert found[0].where == "/k:3"
    assert parse_known_hosts(f"x ssh-ed25519 {PUB}", "DEPLOY_KNOWN_HOSTS")[0].where == "line 1 of DEPLOY_KNOWN_HOSTS"


def test_host_matches_plain_and_hashed_names():
    hashed = HostKeys.hash_host("[h]:2222")
    entry = HostKeyEntry([hashed], pub_key())
    assert host_matches("[h]:2222", entry)
    assert not host_matches("[h]:22", entry)
    assert host_matches("b", HostKeyEntry(["a", "b"], pub_key()))


def test_append_known_host_creates_private_file_and_directory(tmp_path):
    path = tmp_path / "new" / "known_hosts"
    append_known_host(str(path), "[h]:2", pub_key())
    assert path.read_text() == f"[h]:2 ssh-ed25519 {PUB}\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_append_known_host_never_glues_onto_a_last_line(tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text(f"a ssh-ed25519 {OTHER_PUB}")
    append_known_host(str(path), "b", pub_key())
    assert [e.lineno for e in parse_known_hosts(path.read_text(), "p")] == [1, 2]


def test_append_known_host_failure_is_a_clean_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(Failure) as err:
        append_known_host(str(blocker / "known_hosts"), "b", pub_key())
    assert err.value.code == 2 and "ssh-keyscan" in err.value.hint


def test_load_private_key_from_text():
    text = ed25519_text()
    key = load_private_key(text)
    assert key.get_name() == "ssh-ed25519"
    # What CI secret stores do to multi-line values:
    assert load_private_key(text.replace("\n", "\\n")).asbytes() == key.asbytes()
    assert load_private_key(text.replace("\n", "\r\n")).asbytes() == key.asbytes()
    assert load_private_key("  " + text.replace("\n", "\n  ")).asbytes() == key.asbytes()


def test_load_private_key_other_types():
    ecdsa = paramiko.ECDSAKey.generate()
    buf = io.StringIO()
    ecdsa.write_private_key(buf)
    assert load_private_key(buf.getvalue()).get_name().startswith("ecdsa-sha2-")
    rsa = paramiko.RSAKey.generate(1024)
    buf = io.StringIO()
    rsa.write_private_key(buf)
    assert load_private_key(buf.getvalue()).get_name() == "ssh-rsa"


@pytest.mark.parametrize("text, words", [
    ("ssh-ed25519 " + PUB + " me@laptop", "public key"),
    ("not a key", "not a private key"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", "not a private key"),
])
def test_load_private_key_rejects(text, words):
    with pytest.raises(Failure) as err:
        load_private_key(text)
    assert err.value.code == 2 and words in err.value.message and "DEPLOY_SSH_KEY" in err.value.message


def test_load_private_key_rejects_encrypted_keys():
    with pytest.raises(Failure) as err:
        load_private_key(ed25519_text(password=b"secret"))
    assert err.value.code == 2 and "passphrase" in err.value.message


def test_normalize_key_text_ends_with_one_newline():
    assert normalize_key_text("a\nb\n\n") == "a\nb\n"


def test_reject_unknown_keeps_the_offered_key():
    with pytest.raises(UnknownHostKey) as err:
        RejectUnknown().missing_host_key(None, "[h]:2222", pub_key())
    assert err.value.name == "[h]:2222" and err.value.key.get_base64() == PUB
    assert isinstance(err.value, paramiko.SSHException)


def test_accept_new_records_the_key_and_says_so(tmp_path):
    path = tmp_path / "ssh" / "known_hosts"
    client = paramiko.SSHClient()
    seen = []
    AcceptNew(str(path), lambda name, key: seen.append((name, key_fingerprint(key)))) \
        .missing_host_key(client, "[h]:2222", pub_key())
    assert path.read_text() == f"[h]:2222 ssh-ed25519 {PUB}\n"
    assert client.get_host_keys().lookup("[h]:2222")["ssh-ed25519"].get_base64() == PUB
    assert seen == [("[h]:2222", PUB_FP)]
