"""tasks.ssh (with its shell and probes) against a real OpenSSH server on loopback.

The sshd, its keys and the little HTTP servers are made here, per run, so
this file needs nothing but /usr/sbin/sshd, openssl and Python.
"""

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
import types
import urllib.request

import pytest

import ports  # scripts/ports.py (scripts/ is on pytest's pythonpath)

from tasks.configuration.inventory import HostEntry
from tasks.connection.host_keys import known_hosts_name
from tasks.connection.http_channel import ProbeError
from tasks.connection.ssh import Host
from tasks.errors import Failure

pytestmark = pytest.mark.e2e

SSHD = "/usr/sbin/sshd"


# ---------------------------------------------------------------------------
# Fixtures: one sshd for the module, keys made per run


def _free_port():
    # From below the ephemeral range: a port bound to 0 and released could be
    # taken by any outgoing connection before the test uses it.
    return ports.free_port()


def _keygen(path, kind="ed25519"):
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "test", "-f", str(path)], check=True)
    return path


def _wait_for_port(port, proc, seconds=10.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


class Sshd(types.SimpleNamespace):
    def known_hosts_line(self, key_pub=None):
        kind, blob = open(key_pub or self.host_key_pub).read().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {blob}\n"

    def fingerprint(self, key_pub=None):
        out = subprocess.run(["ssh-keygen", "-lf", str(key_pub or self.host_key_pub)],
                             check=True, capture_output=True, text=True).stdout
        return out.split()[1]

    def log_text(self):
        return open(self.log).read()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if not os.path.exists(SSHD):
        pytest.skip("OpenSSH server not installed")
    os.makedirs("/run/sshd", exist_ok=True)
    d = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(d / "host_ed25519")
    user_key = _keygen(d / "user_ed25519")
    other_key = _keygen(d / "other_ed25519")  # never authorised: the "wrong key"
    old_host_key = _keygen(d / "old_host_ed25519")  # what a stale known_hosts would hold
    authorized = d / "authorized_keys"
    authorized.write_text(open(f"{user_key}.pub").read())
    log = d / "sshd.log"
    for _ in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", "/dev/null",
             "-o", f"Port={port}", "-o", "ListenAddress=127.0.0.1",
             "-o", f"HostKey={host_key}", "-o", f"AuthorizedKeysFile={authorized}",
             "-o", "StrictModes=no", "-o", f"PidFile={d / 'sshd.pid'}",
             "-o", "UsePAM=no", "-o", "PasswordAuthentication=no",
             "-o", "KbdInteractiveAuthentication=no",
             "-o", "Subsystem=sftp internal-sftp", "-o", "LogLevel=VERBOSE"],
            stdout=open(log, "ab"), stderr=subprocess.STDOUT,
        )
        if _wait_for_port(port, proc):
            break
        proc.kill()
        proc.wait()
    else:
        pytest.fail(f"sshd did not start: {open(log).read()[-2000:]}")
    server = Sshd(port=port, dir=d, proc=proc, log=log, host_key_pub=f"{host_key}.pub",
                  user_key=str(user_key), other_key=str(other_key),
                  old_host_key_pub=f"{old_host_key}.pub")
    known = d / "known_hosts"
    known.write_text("# a comment, then a corrupt line that must not lock anyone out\n"
                     "[127.0.0.1]:1 ssh-ed25519 not!base64\n" + server.known_hosts_line())
    server.known_hosts = str(known)
    yield server
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(autouse=True)
def _no_personal_ssh(monkeypatch, tmp_path):
    # The tests must not pick up the runner's own keys, agent or ssh config.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def settings(**kw):
    base = dict(known_hosts="/nonexistent/known_hosts", deploy_ssh_key="", deploy_known_hosts="",
                connect_timeout=5.0)
    base.update(kw)
    return types.SimpleNamespace(**base)


def target(sshd, **kw):
    base = dict(name="loop", host="127.0.0.1", user="root", port=sshd.port,
                identity_file=sshd.user_key, known_hosts=sshd.known_hosts)
    base.update(kw)
    return HostEntry(**base)


@pytest.fixture
def host(sshd):
    with Host(target(sshd), settings()) as h:
        yield h


# ---------------------------------------------------------------------------
# Connecting


def test_connects_with_matching_known_hosts(sshd):
    with Host(target(sshd), settings()) as h:
        assert h.connection.is_connected
        assert h.describe() == f"loop (root@127.0.0.1:{sshd.port}), host key ssh-ed25519 {sshd.fingerprint()}"
        assert h.connection.transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert h.run("id -u").stdout.strip() == "0"
    assert h.connection is None


def test_unknown_host_key_is_refused_before_login(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    before = sshd.log_text().count("Accepted publickey")
    h = Host(target(sshd, known_hosts=str(known)), settings())
    with pytest.raises(Failure) as err:
        h.connect()
    e = err.value
    assert e.code == 3
    assert "unknown host key" in e.message
    assert sshd.fingerprint() in e.message and "ssh-ed25519" in e.message
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {known}" in e.hint
    assert "--accept-new-host-key" in e.hint
    assert "\n" not in e.message and "\n" not in e.hint
    assert h.connection is None
    time.sleep(0.2)
    assert sshd.log_text().count("Accepted publickey") == before, "it logged in despite the unknown key"


def test_missing_known_hosts_file_counts_as_empty(sshd, tmp_path):
    h = Host(target(sshd, known_hosts=str(tmp_path / "nope" / "known_hosts")), settings())
    with pytest.raises(Failure) as err:
        h.connect()
    assert err.value.code == 3 and "unknown host key" in err.value.message
    assert not (tmp_path / "nope").exists()


def test_changed_host_key_is_refused(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("# old entry below\n" + sshd.known_hosts_line(sshd.old_host_key_pub))
    h = Host(target(sshd, known_hosts=str(known)), settings())
    with pytest.raises(Failure) as err:
        h.connect()
    e = err.value
    assert e.code == 3
    assert "CHANGED" in e.message
    assert sshd.fingerprint() in e.message and sshd.fingerprint(sshd.old_host_key_pub) in e.message
    assert "attack" in e.hint and f"{known}:2" in e.hint
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in e.hint


def test_settings_known_hosts_used_when_target_has_none(sshd):
    h = Host(target(sshd, known_hosts=None), settings(known_hosts=sshd.known_hosts))
    with h:
        assert h.run("true").code == 0


def test_accept_new_host_key_records_it_and_then_checks_strictly(sshd, tmp_path):
    known = tmp_path / "fresh" / ".ssh" / "known_hosts"
    with Host(target(sshd, known_hosts=str(known)), settings(), accept_new_host_key=True) as h:
        assert h.run("echo hi").stdout == "hi\n"
        name, kind, fp, path = h.accepted_host_key
        assert (name, kind, fp, path) == (f"[127.0.0.1]:{sshd.port}", "ssh-ed25519", sshd.fingerprint(), str(known))
        assert f"added to {known}" in h.describe() and sshd.fingerprint() in h.describe()
    assert stat.S_IMODE(os.stat(known).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(known.parent).st_mode) == 0o700
    assert known.read_text() == sshd.known_hosts_line()
    with Host(target(sshd, known_hosts=str(known)), settings()) as h:  # strict, no flag
        assert h.accepted_host_key is None
        assert h.run("true").code == 0
    assert known.read_text() == sshd.known_hosts_line(), "a known key must not be appended again"


def test_accept_new_host_key_still_refuses_a_changed_key(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    stale = sshd.known_hosts_line(sshd.old_host_key_pub)
    known.write_text(stale.rstrip("\n"))  # no final newline either
    with pytest.raises(Failure) as err:
        Host(target(sshd, known_hosts=str(known)), settings(), accept_new_host_key=True).connect()
    assert err.value.code == 3 and "CHANGED" in err.value.message
    assert known.read_text() == stale.rstrip("\n"), "a changed key must never be written"


def test_deploy_key_and_known_hosts_from_text_without_any_file(sshd, tmp_path):
    text_key = open(sshd.user_key).read()
    s = settings(deploy_ssh_key=text_key.replace("\n", "\\n"),  # as some CI secret stores hand it over
                 deploy_known_hosts=sshd.known_hosts_line(),
                 known_hosts=str(tmp_path / "absent"))
    t = HostEntry(name="ci", host="127.0.0.1", user="root", port=sshd.port)
    with Host(t, s) as h:
        assert h.run("echo from-ci").stdout == "from-ci\n"
    assert not (tmp_path / "absent").exists()


def test_wrong_key_is_an_authentication_failure(sshd):
    h = Host(target(sshd, identity_file=sshd.other_key), settings())
    with pytest.raises(Failure) as err:
        h.connect()
    e = err.value
    assert e.code == 3
    assert "authentication failed for user 'root'" in e.message
    assert f"identity file {sshd.other_key}" in e.message
    assert "authorized_keys" in e.hint


def test_wrong_deploy_key_names_the_setting(sshd):
    s = settings(deploy_ssh_key=open(sshd.other_key).read())
    with pytest.raises(Failure) as err:
        Host(target(sshd, identity_file=None), s).connect()
    assert err.value.code == 3 and "DEPLOY_SSH_KEY (ssh-ed25519 SHA256:" in err.value.message


def test_refused_port_fails_fast(sshd):
    # No retries: one refused connect is the answer (its speed is bench/'s business).
    with pytest.raises(Failure) as err:
        Host(target(sshd, port=_free_port()), settings()).connect()
    assert err.value.code == 3 and "connection refused" in err.value.message


def test_silent_server_times_out_within_connect_timeout():
    # Accepts TCP but never sends an SSH banner. Fabric would truncate 0.5 to 0 (no timeout at all).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        t = HostEntry(name="mute", host="127.0.0.1", user="root", port=port)
        started = time.monotonic()
        with pytest.raises(Failure) as err:
            Host(t, settings(connect_timeout=0.5)).connect()
        elapsed = time.monotonic() - started
    assert err.value.code == 3
    assert "0.5s" in err.value.message and "CONNECT_TIMEOUT" in err.value.message + err.value.hint
    assert elapsed >= 0.5  # it did wait for the banner (no upper bound: a busy machine is slow)


def test_ssh_config_alias_is_honoured(sshd, tmp_path):
    import fabric

    cfg_file = tmp_path / "ssh_config"
    cfg_file.write_text(textwrap.dedent(f"""\
        Host loopalias
            HostName 127.0.0.1
            Port {sshd.port}
            User root
            IdentityFile {sshd.user_key}
    """))
    config = fabric.Config(runtime_ssh_path=str(cfg_file))
    t = HostEntry(name="loopalias", host="loopalias")
    with Host(t, settings(known_hosts=sshd.known_hosts), config=config) as h:
        assert h.connection.host == "127.0.0.1" and h.connection.port == sshd.port
        assert h.run("echo via-alias").stdout == "via-alias\n"


def test_proxyjump_hop_is_checked_too(sshd, tmp_path):
    import fabric

    cfg_file = tmp_path / "ssh_config"
    cfg_file.write_text(textwrap.dedent(f"""\
        Host behind
            HostName localhost
            Port {sshd.port}
            User root
            IdentityFile {sshd.user_key}
            ProxyJump root@127.0.0.1:{sshd.port}
        Host 127.0.0.1
            IdentityFile {sshd.user_key}
    """))
    kind_blob = sshd.known_hosts_line().split(" ", 1)[1]
    only_target = tmp_path / "only_target"
    only_target.write_text(f"[localhost]:{sshd.port} {kind_blob}")
    both = tmp_path / "both"
    both.write_text(only_target.read_text() + sshd.known_hosts_line())

    config = fabric.Config(runtime_ssh_path=str(cfg_file))
    with Host(HostEntry(name="behind", host="behind"), settings(known_hosts=str(both)), config=config) as h:
        assert h.run("echo jumped").stdout == "jumped\n"

    config = fabric.Config(runtime_ssh_path=str(cfg_file))
    with pytest.raises(Failure) as err:
        Host(HostEntry(name="behind", host="behind"), settings(known_hosts=str(only_target)), config=config).connect()
    assert err.value.code == 3 and "unknown host key" in err.value.message


# ---------------------------------------------------------------------------
# run()


def test_run_returns_code_stdout_stderr(host):
    r = host.run("echo out; echo err >&2; exit 7")
    assert (r.code, r.stdout, r.stderr) == (7, "out\n", "err\n")
    assert not r.ok
    assert host.run("true").ok


def test_run_quotes_the_whole_script(host, sshd):
    marker = sshd.dir / "must-not-exist"
    r = host.run(f"printf '%s\\n' 'a b' \"$HOME\" '; touch {marker}'")
    assert r.stdout.splitlines()[0] == "a b"
    assert not marker.exists()


def test_run_streams_lines_as_they_come(host):
    seen = []
    started = time.monotonic()
    r = host.run("for i in 1 2 3; do echo line$i; sleep 0.3; done; echo oops >&2",
                 on_line=lambda stream, line: seen.append((time.monotonic() - started, stream, line)))
    assert [(s, l) for _, s, l in seen] == [("stdout", "line1"), ("stdout", "line2"),
                                            ("stdout", "line3"), ("stderr", "oops")]
    gaps = [b[0] - a[0] for a, b in zip(seen, seen[1:3])]
    assert all(g > 0.2 for g in gaps), f"lines were not streamed: {seen}"
    assert r.stdout == "line1\nline2\nline3\n"


def test_run_gives_commands_an_empty_stdin(host):
    # `cat` ends at once on an empty stdin; on a held-open one it would hang
    # until the run's timeout, which is then the failure.
    assert host.run("cat; echo done", timeout=60).stdout == "done\n"


def test_run_does_not_wait_for_a_background_process_holding_output(host):
    # The background sleep outlives any wait for its output: if run() waited
    # for it, the step would hit its timeout (a Failure) instead of answering.
    r = host.run("sleep 600 & echo $!", timeout=60)
    assert r.code == 0 and r.stdout.strip().isdigit()
    assert host.run(f"kill -0 {r.stdout.strip()} && echo alive").stdout == "alive\n"
    host.run(f"kill {r.stdout.strip()}")


def test_run_timeout_stops_the_remote_script(host, sshd):
    flag = sshd.dir / "late-flag"
    pidfile = sshd.dir / "late-pid"
    # The script names its shell, then would run for 600 s and leave a flag.
    script = f"sh -c 'echo $$ > {pidfile}; sleep 600; touch {flag}'"
    with pytest.raises(Failure) as err:
        host.run(script, timeout=0.5)
    assert err.value.code == 1 and "0.5s" in err.value.message
    pid = int(pidfile.read_text())
    # Stopped, not left to run its 600 s: wait for that event, not a while.
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}"), "the script kept running after the timeout"
    assert not flag.exists()
    assert host.run("echo still-usable").stdout == "still-usable\n"


def test_steps_share_one_remote_shell(host):
    host.run("true")  # the shell is started by the first step
    commands, steps = host.stats["commands"], host.stats["steps"]
    first = host.run("echo $BLUEGREEN_TASK_PID").stdout
    host.run("false")
    assert host.run("echo $BLUEGREEN_TASK_PID").stdout == first  # the same shell
    assert host.stats["commands"] == commands  # no new SSH session per step
    assert host.stats["steps"] == steps + 3


def test_a_sent_step_runs_while_the_task_goes_on_and_is_read_in_order(host, sshd):
    """send() returns before its step ends: the step waits (up to 10 s) for a
    file this test makes only after send() returned, then answers. The next
    step's run() reads the sent one's answer first and gets its own."""
    go = sshd.dir / "sent-step-may-go"
    pending = host.shell.send(f"n=0; while [ ! -e {go} ] && [ $n -lt 1000 ]; do sleep 0.01; "
                              f"n=$((n+1)); done; [ -e {go} ] && echo \"$M saw go\"; exit 5")
    go.touch()
    r = host.run('echo "$M next yes"')
    assert (r.code, r.values) == (0, {"next": "yes"})
    first = pending.result()
    assert (first.code, first.values) == (5, {"saw": "go"})
    assert pending.result() is first  # read once, kept
    # With nothing read in between, result() itself waits for the step.
    later = host.shell.send('echo "$M alone yes"')
    assert later.result().values == {"alone": "yes"}
    assert host.run("echo after").stdout == "after\n"


def test_a_step_cannot_forge_a_marker_or_end_the_shell(host):
    r = host.run("echo '::0123456789abcdef exit 0'; echo \"$M value real\"; "
                 "echo '::deadbeefdeadbeef value forged'; exit 3")
    assert r.code == 3
    assert r.values == {"value": "real"}
    assert "::deadbeefdeadbeef value forged" in r.stdout
    assert host.run("echo alive").stdout == "alive\n"


def test_run_connection_lost_is_code_3(sshd):
    h = Host(target(sshd), settings()).connect()
    with pytest.raises(Failure) as err:
        # Kill this session's sshd process: the connection drops mid-command.
        h.run("kill -9 $PPID; sleep 5")
    assert err.value.code == 3
    assert "lost the SSH connection" in err.value.message
    assert "fab -H loop unlock" in err.value.hint
    with pytest.raises(Failure) as err:  # no silent reconnect behind the caller's back
        h.run("true")
    assert err.value.code == 3
    h.connect()  # an explicit one is fine
    assert h.run("echo back").stdout == "back\n"
    h.close()


def test_run_stops_the_script_when_the_caller_fails(host, sshd):
    flag = sshd.dir / "after-callback-error"

    def explode(stream, line):
        raise RuntimeError("callback bug")

    with pytest.raises(RuntimeError):
        host.run(f"echo first; sleep 1.5; touch {flag}", on_line=explode)
    time.sleep(2)
    assert not flag.exists()


# ---------------------------------------------------------------------------
# put_bytes()


def test_put_bytes_is_private_and_atomic(host, sshd):
    d = sshd.dir / "deploy"
    d.mkdir(exist_ok=True)
    path = d / "app.env"
    path.write_text("OLD=1\n")
    os.chmod(path, 0o644)
    old_inode = os.stat(path).st_ino
    host.put_bytes(b"SECRET=x y\n", str(path))
    assert path.read_bytes() == b"SECRET=x y\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.stat(path).st_ino != old_inode, "written in place instead of renamed into place"
    assert os.listdir(d) == ["app.env"], "a temp file was left behind"
    host.put_bytes(b"x" * 300_000, str(d / "big.bin"), mode=0o644)
    assert (d / "big.bin").stat().st_size == 300_000
    assert stat.S_IMODE((d / "big.bin").stat().st_mode) == 0o644
    assert host.stats["uploads"] >= 2


def test_put_bytes_failure_names_the_path(host, sshd):
    missing = str(sshd.dir / "no-such-dir" / "app.env")
    with pytest.raises(Failure) as err:
        host.put_bytes(b"x", missing)
    assert err.value.code == 1 and missing in err.value.message


def test_put_bytes_wants_an_absolute_path(host):
    with pytest.raises(Failure) as err:
        host.put_bytes(b"x", "~/app.env")
    assert err.value.code == 2


# ---------------------------------------------------------------------------
# http()

HTTP_SERVER = r'''
import http.server, socketserver, ssl, sys
mode = sys.argv[1]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello " + self.path.encode()
        self.send_response(404 if self.path == "/missing" else 200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Deploy-Colour", "blue")
        self.send_header("X-Seen-Host", self.headers.get("Host", ""))
        self.send_header("X-Seen-Connection", self.headers.get("Connection", ""))
        self.send_header("X-Seen-SNI", str(getattr(self.server, "sni", None)))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Garbage(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.recv(1000)
        self.request.sendall(b"hello there\n")
server = socketserver.TCPServer(("127.0.0.1", 0), Garbage if mode == "garbage" else Handler)
if mode == "tls":
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    def remember(sock, name, context):
        server.sni = name
    ctx.sni_callback = remember
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
'''


def _start_server(tmp_path_factory, *args):
    script = tmp_path_factory.mktemp("http") / "server.py"
    script.write_text(HTTP_SERVER)
    proc = subprocess.Popen([sys.executable, str(script), *args], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, port


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    proc, port = _start_server(tmp_path_factory, "plain")
    yield port
    proc.terminate()
    proc.wait()


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "1",
         "-subj", "/CN=app.test", "-addext", "subjectAltName=DNS:app.test"],
        check=True, capture_output=True)
    return str(d / "cert.pem"), str(d / "key.pem")


@pytest.fixture(scope="module")
def tls_web(tmp_path_factory, cert):
    proc, port = _start_server(tmp_path_factory, "tls", *cert)
    yield port
    proc.terminate()
    proc.wait()


def test_http_gets_status_headers_and_body(host, web):
    before = host.stats["channels"]
    r = host.http(web, "/health", host_header="app.example.com")
    assert r.status == 200
    assert r.headers["x-deploy-colour"] == "blue"
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["x-seen-host"] == "app.example.com"
    assert r.headers["x-seen-connection"] == "close"
    assert r.body == b"hello /health"
    assert host.http(web, "/missing").status == 404
    assert host.stats["channels"] == before + 2


def test_http_default_host_header_is_underscore(host, web):
    assert host.http(web, "/").headers["x-seen-host"] == "_"


def test_http_to_a_closed_port_is_a_quick_probe_error(host, capfd):
    # Refused at once, not a timeout: the reason says which.
    with pytest.raises(ProbeError) as err:
        host.http(_free_port(), "/", timeout=60)
    assert err.value.reason == "connection refused"
    assert "open FAILED" not in capfd.readouterr().err, "paramiko's log leaked onto stderr"


def test_http_silence_times_out(host):
    with socket.socket() as listener:  # the kernel accepts; nobody ever answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        started = time.monotonic()
        with pytest.raises(ProbeError) as err:
            host.http(listener.getsockname()[1], "/", timeout=0.5)
        elapsed = time.monotonic() - started
    assert err.value.reason == "no answer within 0.5s"
    assert elapsed >= 0.4  # it waited; how much longer is the machine's load


def test_a_connection_cut_under_a_probe_is_the_connections_failure(sshd):
    """The probe waits for an answer that never comes; meanwhile the SSH
    connection is cut (SIGKILL to its sshd session process). That is exit 3,
    "lost the SSH connection", not an app that closed without an answer."""
    h = Host(target(sshd), settings()).connect()
    try:
        session = h.shell.parent  # sshd's process for this connection
        assert session
        with socket.socket() as listener:  # the kernel accepts; nobody ever answers
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            cut = threading.Timer(0.3, os.kill, (session, signal.SIGKILL))
            cut.start()
            with pytest.raises(Failure) as err:
                h.http(listener.getsockname()[1], "/", timeout=5.0)
            cut.join()
        assert err.value.code == 3, err.value.message
        assert "lost the SSH connection" in err.value.message
        assert "during a health probe" in err.value.message
    finally:
        h.close()


def test_http_garbage_is_a_probe_error(host, tmp_path_factory):
    proc, port = _start_server(tmp_path_factory, "garbage")
    try:
        with pytest.raises(ProbeError) as err:
            host.http(port, "/")
        assert "not an HTTP answer" in err.value.reason
    finally:
        proc.terminate()
        proc.wait()


def test_https_probe_over_the_channel(host, tls_web, cert):
    r = host.http(tls_web, "/tls", tls=True)
    assert r.status == 200 and r.body == b"hello /tls"
    assert r.headers["x-seen-sni"] == "None"  # "_" is not a name to send
    r = host.http(tls_web, "/tls", host_header="app.test", tls=True)
    assert r.headers["x-seen-sni"] == "app.test"
    r = host.http(tls_web, "/", tls=True, server_hostname="other.test")
    assert r.headers["x-seen-sni"] == "other.test"
    r = host.http(tls_web, "/", tls=True, server_hostname="app.test", verify=True, cafile=cert[0])
    assert r.status == 200


def test_https_verification_failure_is_a_probe_error(host, tls_web):
    with pytest.raises(ProbeError) as err:
        host.http(tls_web, "/", tls=True, server_hostname="app.test", verify=True)
    assert "TLS failed" in err.value.reason and "CERTIFICATE_VERIFY_FAILED" in err.value.reason


def test_https_against_plain_http_is_a_probe_error(host, web):
    with pytest.raises(ProbeError) as err:
        host.http(web, "/", tls=True, timeout=2)
    assert "TLS" in err.value.reason or "closed" in err.value.reason


def test_https_probe_against_openssl_s_server(host, cert):
    port = _free_port()
    proc = subprocess.Popen(
        ["openssl", "s_server", "-quiet", "-www", "-accept", f"127.0.0.1:{port}",
         "-cert", cert[0], "-key", cert[1]],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < end, "openssl s_server did not start"
                time.sleep(0.05)
        r = host.http(port, "/", tls=True, server_hostname="app.test")
        assert r.status == 200 and b"Ciphers" in r.body
    finally:
        proc.terminate()
        proc.wait()


# ---------------------------------------------------------------------------
# forward() (preview)


def test_forward_serves_a_local_port(host, web):
    with host.forward(web) as tunnel:
        for _ in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{tunnel.local_port}/p", timeout=5) as resp:
                assert resp.status == 200 and resp.read() == b"hello /p"
        assert tunnel.connections == 3


def test_forward_survives_a_refused_remote_port(host, web):
    with host.forward(_free_port()) as tunnel:
        with socket.create_connection(("127.0.0.1", tunnel.local_port), timeout=5) as s:
            s.settimeout(5)
            assert s.recv(10) == b""  # closed, not hung
        assert tunnel.errors
    with host.forward(web) as tunnel:  # the connection is still fine
        with urllib.request.urlopen(f"http://127.0.0.1:{tunnel.local_port}/", timeout=5) as resp:
            assert resp.status == 200


def test_forward_to_a_busy_local_port_fails_at_once(host, web):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        with pytest.raises(Failure) as err:
            host.forward(web, local_port=busy.getsockname()[1])
    assert err.value.code == 2 and "--local-port" in err.value.hint


def test_known_hosts_name_matches_what_openssh_writes(sshd):
    out = subprocess.run(["ssh-keyscan", "-t", "ed25519", "-p", str(sshd.port), "127.0.0.1"],
                         capture_output=True, text=True, timeout=10).stdout
    assert out.split()[0] == known_hosts_name("127.0.0.1", sshd.port)
