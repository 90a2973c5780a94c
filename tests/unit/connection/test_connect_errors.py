"""tasks/connection/connect_errors.py: whatever a connection raised, as one line of cause and one of what to do."""

import errno
import socket

import paramiko
import pytest

from support.known_hosts_files import OTHER_FP, OTHER_PUB, PUB_FP, pub_key
from tasks.connection.connect_errors import ConnectContext, describe_connect_error
from tasks.connection.host_keys import UnknownHostKey, parse_known_hosts
from tasks.errors import Failure


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
    assert OTHER_FP in f.message
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


def test_a_failure_passes_through_and_the_key_name_follows_the_port():
    f = Failure("already worded", "hint", code=3)
    assert describe_connect_error(f, ctx()) is f
    assert ctx().key_name == "[app.example.com]:2222"
    assert ctx(port=22).key_name == "app.example.com"


def test_an_unknown_host_key_with_deploy_known_hosts_names_both_places():
    f = describe_connect_error(UnknownHostKey("[app.example.com]:2222", pub_key()),
                               ctx(deploy_known_hosts=True))
    assert "not in /home/me/.ssh/known_hosts or DEPLOY_KNOWN_HOSTS" in f.message
