"""The pure parts of tasks.host: no SSH, no network."""

import base64
import errno
import io
import os
import socket
import stat

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from paramiko.hostkeys import HostKeyEntry, HostKeys

from tasks.errors import Failure
from tasks.host import (
    ConnectContext,
    HttpResponse,
    MalformedResponse,
    ProbeError,
    RunResult,
    Target,
    UnknownHostKey,
    _Lines,
    _PID_MARKER,
    _response_complete,
    _sni_from,
    append_known_host,
    build_http_request,
    describe_connect_error,
    destination_label,
    fingerprint,
    host_matches,
    key_fingerprint,
    known_hosts_line,
    known_hosts_name,
    load_private_key,
    normalize_key_text,
    parse_http_response,
    parse_known_hosts,
)

# A real key and what `ssh-keygen -lf` printed for it.
PUB = "AAAAC3NzaC1lZDI1NTE5AAAAIBqXec0Jp1kn62a26RBlJ+AsQSpKF2KKMqPKYt8Gxq6a"
PUB_FP = "SHA256:ULp2L/OCzC32lOGUWM516aIrLsZt/talNUAbhPs0PvM"
OTHER_PUB = "AAAAC3NzaC1lZDI1NTE5AAAAINMSyCsRSvtwa7Q4uV/HyuRjZU8dYQEeSU7caJhL7YUZ"


def pub_key(blob=PUB):
    return paramiko.PKey.from_type_string("ssh-ed25519", base64.b64decode(blob))


def ed25519_text(password=None):
    key = ed25519.Ed25519PrivateKey.generate()
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, enc).decode()


# ---------------------------------------------------------------------------
# Target


@pytest.mark.parametrize("text, host, user, port", [
    ("app.example.com", "app.example.com", None, None),
    ("deploy@app.example.com", "app.example.com", "deploy", None),
    ("deploy@app.example.com:2222", "app.example.com", "deploy", 2222),
    ("app.example.com:22", "app.example.com", None, 22),
    ("ssh://deploy@app.example.com:2222", "app.example.com", "deploy", 2222),
    ("10.0.0.5", "10.0.0.5", None, None),
    ("::1", "::1", None, None),
    ("root@[::1]:2222", "::1", "root", 2222),
    ("[fe80::1]", "fe80::1", None, None),
    ("ci.user@host", "host", "ci.user", None),
])
def test_target_parse(text, host, user, port):
    t = Target.parse(text)
    assert (t.host, t.user, t.port) == (host, user, port)
    assert t.name == text
    assert t.identity_file is None and t.known_hosts is None


@pytest.mark.parametrize("text", ["", "@host", "user@", "host:", "host:0", "host:70000", "host:ssh",
                                  "[::1", "[::1]x", "-oProxyCommand=x", "a b", "host/path"])
def test_target_parse_rejects(text):
    with pytest.raises(Failure) as err:
        Target.parse(text)
    assert err.value.code == 2 and repr(text) in err.value.message


def test_target_keyword_construction_matches_the_interface():
    t = Target(name="prod", host="app.example.com", user="deploy", port=22, identity_file=None, known_hosts=None)
    assert str(t) == "prod" and t.label == "deploy@app.example.com:22"


def test_destination_label():
    assert destination_label("h") == "h"
    assert destination_label("h", "u", 22) == "u@h:22"
    assert destination_label("::1", "u", 2222) == "u@[::1]:2222"


# ---------------------------------------------------------------------------
# Keys and known_hosts


def test_fingerprint_matches_ssh_keygen():
    assert fingerprint(base64.b64decode(PUB)) == PUB_FP
    assert key_fingerprint(pub_key()) == PUB_FP
    assert "=" not in PUB_FP


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


# ---------------------------------------------------------------------------
# HTTP


def test_build_http_request():
    req = build_http_request("/health?x=1", "app.example.com")
    assert req.startswith(b"GET /health?x=1 HTTP/1.0\r\nHost: app.example.com\r\n")
    assert b"Connection: close\r\n" in req and req.endswith(b"\r\n\r\n")
    assert build_http_request("health", "_").startswith(b"GET /health ")


@pytest.mark.parametrize("path, host", [("/x\r\nEvil: 1", "_"), ("/", "a\r\nb"), ("/a b", "_")])
def test_build_http_request_refuses_injection(path, host):
    with pytest.raises(ValueError):
        build_http_request(path, host)


def test_parse_http_response():
    raw = (b"HTTP/1.1 302 Found\r\nLocation: https://x/\r\nX-Deploy-Colour: green\r\n"
           b"Set-Cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 2\r\n\r\nok")
    r = parse_http_response(raw)
    assert r == HttpResponse(302, {"location": "https://x/", "x-deploy-colour": "green",
                                   "set-cookie": "a=1, b=2", "content-length": "2"}, b"ok")


def test_parse_http_response_bare_newlines_and_no_reason():
    r = parse_http_response(b"HTTP/1.0 200\nServer: busybox\n\nhello\n")
    assert (r.status, r.headers, r.body) == (200, {"server": "busybox"}, b"hello\n")


def test_parse_http_response_headers_cut_short():
    r = parse_http_response(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n")
    assert r.status == 503 and r.headers == {"retry-after": "1"} and r.body == b""


@pytest.mark.parametrize("raw, words", [
    (b"", "closed without an answer"),
    (b"hello there\n", "not an HTTP answer"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not an HTTP answer"),
    (b"HTTP/1.1 abc\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "bad header line"),
    (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "bad header line"),
])
def test_parse_http_response_malformed(raw, words):
    with pytest.raises(MalformedResponse) as err:
        parse_http_response(raw)
    assert words in str(err.value)


def test_response_complete():
    assert not _response_complete(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nabc")
    assert _response_complete(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nabcde")
    assert not _response_complete(b"HTTP/1.0 200 OK\r\n\r\nabc")  # no length: read to EOF


def test_sni_from_host_header():
    assert _sni_from("_") is None
    assert _sni_from("app.example.com") == "app.example.com"
    assert _sni_from("app.example.com:8443") == "app.example.com"
    assert _sni_from("") is None


def test_probe_error_is_a_clean_failure():
    e = ProbeError("connection refused", "127.0.0.1:8081")
    assert isinstance(e, Failure) and e.code == 1
    assert e.reason == "connection refused"
    assert str(e) == "error: no answer from 127.0.0.1:8081: connection refused"


def test_run_result():
    r = RunResult(0, "out", "")
    code, out, err = r
    assert r.ok and (code, out, err) == (0, "out", "")
    assert not RunResult(2, "", "x").ok


# ---------------------------------------------------------------------------
# Streaming lines


def test_lines_split_across_chunks():
    seen = []
    lines = _Lines("stdout", lambda s, l: seen.append((s, l)))
    for chunk in (b"one\ntw", b"o\r\nthr", b"ee", b"\n", b"tail"):
        lines.feed(chunk)
    assert seen == [("stdout", "one"), ("stdout", "two"), ("stdout", "three")]
    lines.finish()
    assert seen[-1] == ("stdout", "tail")
    assert lines.text() == "one\ntwo\r\nthree\ntail"


def test_lines_utf8_split_between_chunks():
    seen = []
    lines = _Lines("stdout", lambda s, l: seen.append(l))
    data = "héllo ✓\n".encode()
    lines.feed(data[:2])
    lines.feed(data[2:])
    assert seen == ["héllo ✓"]


def test_lines_take_out_the_pid_marker():
    seen = []
    lines = _Lines("stderr", lambda s, l: seen.append(l), marker=_PID_MARKER)
    lines.feed(b"bash: warning: noise from an rc file\n::bluegre")
    lines.feed(b"en-pid 4242\nreal error\n")
    lines.finish()
    assert lines.pid == 4242
    assert seen == ["bash: warning: noise from an rc file", "real error"]
    assert lines.text() == "bash: warning: noise from an rc file\nreal error\n"


def test_lines_without_marker_keep_everything():
    lines = _Lines("stderr", None, marker=_PID_MARKER)
    lines.feed(b"partial")
    lines.finish()
    assert lines.pid is None and lines.text() == "partial"


# ---------------------------------------------------------------------------
# Connect errors


def ctx(**kw):
    base = dict(label="prod (deploy@app.example.com:2222)", host="app.example.com", port=2222,
                user="deploy", timeout=10.0, known_hosts="/home/me/.ssh/known_hosts",
                key_sources=("identity file /home/me/.ssh/deploy",))
    base.update(kw)
    return ConnectContext(**base)


def one_line_each(f):
    assert isinstance(f, Failure) and f.code == 3
    assert f.message and f.hint and "\n" not in f.message and "\n" not in f.hint
    return f


def test_unknown_host_key_message():
    f = one_line_each(describe_connect_error(UnknownHostKey("[app.example.com]:2222", pub_key()), ctx()))
    assert "unknown host key" in f.message and PUB_FP in f.message and "ssh-ed25519" in f.message
    assert "ssh-keyscan -p 2222 app.example.com >> /home/me/.ssh/known_hosts" in f.hint
    assert "--accept-new-host-key" in f.hint


def test_unknown_host_key_on_port_22_needs_no_port_flag():
    f = describe_connect_error(UnknownHostKey("app.example.com", pub_key()), ctx(port=22))
    assert "ssh-keyscan app.example.com >>" in f.hint


def test_changed_host_key_message_names_the_line():
    known = parse_known_hosts(f"# x\n[app.example.com]:2222 ssh-ed25519 {OTHER_PUB}\n", "/home/me/.ssh/known_hosts")
    exc = paramiko.BadHostKeyException("app.example.com", pub_key(), pub_key(OTHER_PUB))
    f = one_line_each(describe_connect_error(exc, ctx(known=tuple(known))))
    assert "CHANGED" in f.message and PUB_FP in f.message
    assert fingerprint(base64.b64decode(OTHER_PUB)) in f.message
    assert "attack" in f.hint and "/home/me/.ssh/known_hosts:2" in f.hint
    assert "ssh-keygen -R '[app.example.com]:2222'" in f.hint


def test_auth_failure_names_user_and_key_source():
    f = one_line_each(describe_connect_error(paramiko.AuthenticationException("Authentication failed."), ctx()))
    assert "user 'deploy'" in f.message and "identity file /home/me/.ssh/deploy" in f.message
    assert "authorized_keys" in f.hint


def test_no_key_at_all():
    f = one_line_each(describe_connect_error(paramiko.SSHException("No authentication methods available"), ctx()))
    assert "no SSH key" in f.message and "DEPLOY_SSH_KEY" in f.hint


def test_refused_and_unreachable():
    refused = paramiko.ssh_exception.NoValidConnectionsError(
        {("1.2.3.4", 2222): OSError(errno.ECONNREFUSED, "refused")})
    assert "connection refused" in one_line_each(describe_connect_error(refused, ctx())).message
    unreachable = paramiko.ssh_exception.NoValidConnectionsError(
        {("1.2.3.4", 2222): OSError(errno.EHOSTUNREACH, "unreachable")})
    assert "no route" in one_line_each(describe_connect_error(unreachable, ctx())).message
    net = OSError(errno.ENETUNREACH, "Network is unreachable")
    assert "no route" in one_line_each(describe_connect_error(net, ctx())).message


def test_dns_failure():
    f = one_line_each(describe_connect_error(socket.gaierror(-2, "Name or service not known"), ctx()))
    assert "cannot resolve" in f.message and "'app.example.com'" in f.message and "hosts.yml" in f.hint


@pytest.mark.parametrize("exc", [socket.timeout("timed out"),
                                 paramiko.SSHException("Error reading SSH protocol bannertimed out"),
                                 paramiko.SSHException("No existing session"),
                                 paramiko.AuthenticationException("Authentication timeout.")])
def test_timeouts_name_the_setting(exc):
    f = one_line_each(describe_connect_error(exc, ctx(timeout=2.5)))
    assert "2.5s" in f.message
    assert "CONNECT_TIMEOUT" in f.message + f.hint or "port" in f.hint


def test_handshake_closed_and_unknown_errors_stay_clean():
    assert "closed the connection" in one_line_each(describe_connect_error(EOFError(), ctx())).message
    assert one_line_each(describe_connect_error(RuntimeError("odd"), ctx())).message
    assert describe_connect_error(ValueError("Refusing to be ambiguous"), ctx()).code == 2


def test_lines_marker_only_finds_the_pid_without_callbacks():
    seen = []
    lines = _Lines("stderr", lambda s, l: seen.append(l), marker=_PID_MARKER)
    lines.marker_only(b"::bluegreen-pid 77\nlater\n")
    assert lines.pid == 77 and seen == []
