"""The wording of connection errors: whatever paramiko, Fabric or the socket
raised, as one line of cause and one line of what to do."""

import errno
import shlex
import socket
from dataclasses import dataclass
from typing import Tuple

import paramiko

from ..errors import BAD_INPUT, NO_CONNECTION, Failure
from .host_keys import KnownHost, UnknownHostKey, host_matches, key_fingerprint, known_hosts_name


@dataclass
class ConnectContext:
    """What an error message needs to know about one connection attempt."""

    label: str  # how the operator named it, e.g. "prod (deploy@app.example.com:22)"
    host: str  # resolved HostName
    port: int
    user: str
    timeout: float
    known_hosts: str  # expanded path
    deploy_known_hosts: bool = False
    key_sources: Tuple[str, ...] = ()
    known: Tuple[KnownHost, ...] = ()
    unlock_hint: str = "fab unlock"
    near: str = ""  # ' (did you mean prod?)': a name of hosts.yml close to the -H name

    @property
    def key_name(self) -> str:
        return known_hosts_name(self.host, self.port)


def describe_connect_error(exc: BaseException, ctx: ConnectContext) -> Failure:
    """Turn whatever paramiko, Fabric or the socket raised into one operator-facing Failure."""

    def fail(message, hint, code=NO_CONNECTION):
        return Failure(message, hint, code=code)

    timeout_hint = (
        "check that the host is up and reachable from here (VPN, firewall, security group); "
        "for a slow link raise CONNECT_TIMEOUT (e.g. BLUEGREEN_CONNECT_TIMEOUT=30)"
    )
    where_keys = f"{ctx.known_hosts}" + (" or DEPLOY_KNOWN_HOSTS" if ctx.deploy_known_hosts else "")

    if isinstance(exc, Failure):
        return exc
    if isinstance(exc, UnknownHostKey):
        key = exc.key
        port_flag = f"-p {ctx.port} " if ctx.port != 22 else ""
        return fail(
            f"unknown host key for {ctx.label}: it offers {key.get_name()} {key_fingerprint(key)}, "
            f"which is not in {where_keys}",
            "check that fingerprint with the host's admin (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub "
            f"on the host), then run: ssh-keyscan {port_flag}{shlex.quote(ctx.host)} >> "
            f"{shlex.quote(ctx.known_hosts)}  (or pass --accept-new-host-key to trust it on first use)",
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        new, old = exc.key, exc.expected_key
        lines = [k.where for k in ctx.known if host_matches(ctx.key_name, k.entry)]
        where = ", ".join(lines) if lines else where_keys
        remove = f"ssh-keygen -R {shlex.quote(ctx.key_name)} -f {shlex.quote(ctx.known_hosts)}"
        return fail(
            f"the host key of {ctx.label} has CHANGED: it now offers {new.get_name()} "
            f"{key_fingerprint(new)}, known_hosts expects {old.get_name()} {key_fingerprint(old)}",
            f"this may be an attack (someone in the middle) or a reinstalled host: ask its admin; "
            f"if the change is expected, delete the old entry at {where} ({remove}) and add the new key",
        )
    if isinstance(exc, paramiko.PasswordRequiredException):
        return fail(
            f"the SSH key for {ctx.label} is encrypted and no passphrase was given",
            "load it into ssh-agent (ssh-add KEYFILE) or use an unencrypted deploy key",
        )
    if isinstance(exc, paramiko.BadAuthenticationType):
        allowed = ", ".join(exc.allowed_types) or "nothing"
        return fail(
            f"{ctx.label} does not accept key authentication for user {ctx.user!r} (it allows: {allowed})",
            f"enable public keys for {ctx.user} in the host's sshd_config, or connect as another user",
        )
    if isinstance(exc, paramiko.AuthenticationException):
        if "timeout" in str(exc).lower():
            return fail(
                f"{ctx.label} did not finish authenticating user {ctx.user!r} within {ctx.timeout:g}s",
                timeout_hint,
            )
        tried = "; ".join(ctx.key_sources) if ctx.key_sources else "no key"
        return fail(
            f"authentication failed for user {ctx.user!r} on {ctx.label} (tried: {tried})",
            f"add the matching public key to ~{ctx.user}/.ssh/authorized_keys on the host, or point the "
            "tool at the right key (DEPLOY_SSH_KEY, identity_file in hosts.yml, IdentityFile in ~/.ssh/config)",
        )
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        codes = {getattr(e, "errno", None) for e in exc.errors.values()}
        if codes == {errno.ECONNREFUSED}:
            return fail(
                f"connection refused by {ctx.label}",
                "is sshd running and listening on that port? check the port in hosts.yml or ~/.ssh/config",
            )
        return fail(
            f"no route to {ctx.label}",
            "check the address, your network and VPN, and that the host is up",
        )
    if isinstance(exc, socket.gaierror):
        return fail(
            f"cannot resolve the host name {ctx.host!r} ({ctx.label}): "
            f"{exc.strerror or exc}{ctx.near}",
            "check the host in hosts.yml (or HostName in ~/.ssh/config) and your DNS",
        )
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return fail(f"no answer from {ctx.label} within {ctx.timeout:g}s (CONNECT_TIMEOUT)", timeout_hint)
    if isinstance(exc, paramiko.ssh_exception.ProxyCommandFailure):
        return fail(
            f"the ProxyCommand for {ctx.label} failed: {exc.error}",
            "check ProxyCommand/ProxyJump for this host in ~/.ssh/config",
        )
    if isinstance(exc, paramiko.ssh_exception.IncompatiblePeer):
        return fail(
            f"{ctx.label} and this client share no SSH algorithms: {exc}",
            "upgrade the host's OpenSSH or this machine's paramiko",
        )
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return fail(
            f"no route to {ctx.label}: {exc.strerror}",
            "check the address, your network and VPN, and that the host is up",
        )
    if isinstance(exc, (EOFError, ConnectionResetError, BrokenPipeError)):
        return fail(
            f"{ctx.label} closed the connection during the SSH handshake",
            "the host may limit connections (MaxStartups, fail2ban, tcp wrappers) or this may not be sshd",
        )
    if isinstance(exc, paramiko.SSHException):
        text = str(exc)
        if "protocol banner" in text:
            return fail(
                f"no SSH greeting from {ctx.label} within {ctx.timeout:g}s (CONNECT_TIMEOUT)",
                "is an SSH server listening on that port? check the port in hosts.yml or ~/.ssh/config",
            )
        if "No existing session" in text or "Negotiation" in text:
            return fail(
                f"the SSH handshake with {ctx.label} did not complete within {ctx.timeout:g}s",
                timeout_hint,
            )
        if "No authentication methods available" in text:
            return fail(
                f"no SSH key to offer for user {ctx.user!r} on {ctx.label}",
                "set DEPLOY_SSH_KEY, identity_file in hosts.yml or IdentityFile in ~/.ssh/config, "
                "or load a key into ssh-agent",
            )
        if "Indecipherable protocol version" in text:
            return fail(
                f"{ctx.label} does not speak SSH ({text})",
                "check the port in hosts.yml or ~/.ssh/config",
            )
        return fail(f"SSH connection to {ctx.label} failed: {text}", "run with ssh -v to the same host to see more")
    if isinstance(exc, ValueError):
        return fail(f"bad SSH settings for {ctx.label}: {exc}", "check hosts.yml and ~/.ssh/config", code=BAD_INPUT)
    if isinstance(exc, OSError):
        return fail(
            f"cannot connect to {ctx.label}: {exc.strerror or exc}",
            "check the address, your network and that the host is up",
        )
    return fail(f"SSH connection to {ctx.label} failed: {exc!r}", "run with ssh -v to the same host to see more")
