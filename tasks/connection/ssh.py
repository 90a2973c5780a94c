"""The SSH connection to one host, checked against known host keys.

A `Host` is one connection with strict host-key checking, and what a task
does over it: run steps in its one remote shell (step_shell.py), upload a file
atomically over SFTP, send an HTTP request to a port on the host through a
`direct-tcpip` channel (http_channel.py), forward a local port (tunnel.py).

Everything an operator can get wrong while connecting comes out as a
`Failure` with one line of cause and one of what to do (connect_errors.py).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import posixpath
import secrets
import threading
import time
from typing import Dict, Optional, Tuple

import fabric
import paramiko

from ..errors import BAD_INPUT, FAILED, NO_CONNECTION, Failure
from .connect_errors import ConnectContext, describe_connect_error
from .host_keys import (AcceptNew, RejectUnknown, key_fingerprint, load_private_key,
                        parse_known_hosts)
from .http_channel import Response, get
from .step_shell import StepShell, transport_died
from .tcp import transport_with_nodelay
from .tunnel import Tunnel
from .watchdog import Watchdog

DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"
DEFAULT_CONNECT_TIMEOUT = 10.0
# Server-alive probes every CONNECT_TIMEOUT seconds (they also keep NAT and
# firewall state alive through a long silent docker build): a connection is
# given up when three go unanswered (OpenSSH's ServerAliveCountMax), so a
# task never waits on a host that is gone for longer than CONNECT_TIMEOUT x 3.
KEEPALIVE_COUNT = 3

# A refused direct-tcpip open is logged by paramiko ("Secsh channel 3 open
# FAILED") and, with no handler anywhere, Python's last-resort handler prints
# it on stderr in the middle of our output. A handler of our own stops that.
_paramiko_log = logging.getLogger("paramiko")
if not any(isinstance(h, logging.NullHandler) for h in _paramiko_log.handlers):
    _paramiko_log.addHandler(logging.NullHandler())


def destination_label(host: str, user: Optional[str] = None, port: Optional[int] = None) -> str:
    shown = f"[{host}]" if ":" in host and port else host
    if port:
        shown = f"{shown}:{port}"
    return f"{user}@{shown}" if user else shown


def _setting(settings, name, default):
    value = getattr(settings, name, None) if settings is not None else None
    return default if value is None or value == "" else value


class Host:
    """One SSH connection to a host (an inventory.HostEntry), with strict host-key checking.

    Use as a context manager (connects on enter, closes on exit), or call
    connect() and close(). run(), put_bytes() and http() connect on first use.
    """

    def __init__(self, entry, settings, accept_new_host_key: bool = False, config=None):
        self.entry = entry
        self.settings = settings
        self.accept_new_host_key = accept_new_host_key
        self.config = config
        self.connect_timeout = float(_setting(settings, "connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        known = entry.known_hosts or _setting(settings, "known_hosts", DEFAULT_KNOWN_HOSTS)
        self.known_hosts = os.path.abspath(os.path.expanduser(str(known)))
        self.stats: Dict[str, float] = {"commands": 0, "channels": 0, "uploads": 0, "connect_seconds": 0.0}
        # Set when --accept-new-host-key trusted a key: (known_hosts name, key type, fingerprint, file).
        self.accepted_host_key: Optional[Tuple[str, str, str, str]] = None
        self.connection: Optional[fabric.Connection] = None
        self._sftp: Optional[paramiko.SFTPClient] = None
        self._sftp_lock = threading.Lock()
        self._ctx: Optional[ConnectContext] = None
        self._shell: Optional[StepShell] = None
        self._watchdog: Optional[Watchdog] = None

    # -- naming

    @property
    def name(self) -> str:
        return self.entry.name or self.entry.host

    def _label(self, conn) -> str:
        address = destination_label(conn.host, conn.user, conn.port)
        return address if self.name == address else f"{self.name} ({address})"

    # -- connecting

    def connect(self) -> "Host":
        """Open the connection; Failure(code=3) with what to do if that is not possible."""
        if self.connection is not None and self.connection.is_connected:
            return self
        self.close()  # an explicit connect() after a lost connection starts afresh
        try:
            conn, ctx = self._build()
        except Failure:
            raise
        except Exception as exc:  # a broken ~/.ssh/config, an ambiguous destination...
            raise Failure(
                f"cannot set up the SSH connection to {self.name}: {exc}",
                "check this host in hosts.yml and in ~/.ssh/config",
                code=BAD_INPUT,
            ) from exc
        started = time.monotonic()
        try:
            self._prepare_host_keys(conn, ctx)
            conn.open()
        except BaseException as exc:
            _close_quietly(conn)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise describe_connect_error(exc, ctx) from exc
        self.stats["connect_seconds"] = time.monotonic() - started
        self._watchdog = Watchdog(conn.transport, self.connect_timeout, KEEPALIVE_COUNT).start()
        self.connection, self._ctx = conn, ctx
        return self

    def describe(self) -> str:
        """One line for the connect phase: where, and which host key was checked."""
        if self.connection is None or self._ctx is None:
            return f"{self.name} (not connected)"
        key = self.connection.transport.get_remote_server_key()
        text = f"{self._ctx.label}, host key {key.get_name()} {key_fingerprint(key)}"
        if self.accepted_host_key:
            text += f" (new: trusted on first use and added to {self.accepted_host_key[3]})"
        return text

    def _build(self):
        entry, timeout = self.entry, self.connect_timeout
        config = self.config if self.config is not None else fabric.Config()
        # Passing connect_kwargs replaces the config's (fab -i, fabric.yaml): merge them instead.
        kwargs = dict(config.connect_kwargs or {})
        kwargs.pop("timeout", None)  # CONNECT_TIMEOUT is the one timeout
        kwargs.update(banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                      transport_factory=transport_with_nodelay)
        sources = []
        key_text = _setting(self.settings, "deploy_ssh_key", "")
        if key_text:
            pkey = load_private_key(str(key_text), "DEPLOY_SSH_KEY")
            kwargs.update(pkey=pkey, look_for_keys=False, allow_agent=False)
            sources.append(f"DEPLOY_SSH_KEY ({pkey.get_name()} {key_fingerprint(pkey)})")
        identity = entry.identity_file
        if identity:
            kwargs["key_filename"] = [os.path.expanduser(str(identity))]
        conn = fabric.Connection(
            entry.host,
            user=entry.user or None,
            port=int(entry.port) if entry.port else None,
            config=config,
            # Fabric truncates this to an int (0.5 -> 0 = no timeout at all);
            # the exact value is set on the object below.
            connect_timeout=max(1, math.ceil(timeout)),
            connect_kwargs=kwargs,
        )
        conn.connect_timeout = timeout
        for filename in conn.connect_kwargs.get("key_filename") or []:
            sources.append(f"identity file {filename}")
        if conn.connect_kwargs.get("allow_agent", True) and os.environ.get("SSH_AUTH_SOCK"):
            sources.append("ssh-agent")
        if conn.connect_kwargs.get("look_for_keys", True):
            sources.append("default keys in ~/.ssh (id_ed25519, id_ecdsa, id_rsa)")
        ctx = ConnectContext(
            label=self._label(conn),
            host=conn.host,
            port=int(conn.port),
            user=conn.user,
            timeout=timeout,
            known_hosts=self.known_hosts,
            deploy_known_hosts=bool(_setting(self.settings, "deploy_known_hosts", "")),
            key_sources=tuple(sources),
            unlock_hint=f"fab -H {self.name} unlock", near=getattr(entry, "near", ""),
        )
        return conn, ctx

    def _prepare_host_keys(self, conn, ctx):
        known = []
        try:
            with open(self.known_hosts, encoding="utf-8", errors="replace") as f:
                known += _known_hosts(f.read(), self.known_hosts)
        except FileNotFoundError:
            pass  # a missing file is an empty one: the policy below still refuses
        except OSError as exc:
            raise Failure(
                f"cannot read known hosts file {self.known_hosts}: {exc.strerror or exc}",
                "fix its permissions, or point KNOWN_HOSTS (or known_hosts in hosts.yml) elsewhere",
                code=BAD_INPUT,
            ) from exc
        text = _setting(self.settings, "deploy_known_hosts", "")
        if text:
            from_env = parse_known_hosts(str(text).replace("\\n", "\n"), "DEPLOY_KNOWN_HOSTS")
            if not from_env:
                raise Failure(
                    "DEPLOY_KNOWN_HOSTS holds no usable known_hosts line",
                    "put lines like '[host]:port ssh-ed25519 AAAA...' in it (the output of ssh-keyscan)",
                    code=BAD_INPUT,
                )
            known += from_env
        ctx.known = tuple(known)
        # The same checks on every hop of a ProxyJump chain: Fabric gives each
        # hop a fresh client that would otherwise accept any key.
        hop = conn
        while isinstance(hop, fabric.Connection):
            keys = hop.client.get_host_keys()
            for item in known:
                for hostname in item.entry.hostnames:
                    keys.add(hostname, item.entry.key.get_name(), item.entry.key)
            if self.accept_new_host_key:
                hop.client.set_missing_host_key_policy(AcceptNew(self.known_hosts, self._accepted))
            else:
                hop.client.set_missing_host_key_policy(RejectUnknown())
            hop = hop.gateway

    def _accepted(self, name, key):
        self.accepted_host_key = (name, key.get_name(), key_fingerprint(key), self.known_hosts)

    def _transport(self) -> paramiko.Transport:
        # Connect on first use, but never silently reconnect after a loss:
        # the caller must learn that the host may have been left half-way.
        if self.connection is None:
            self.connect()
        transport = self.connection.transport
        if transport is None or not transport.is_active():
            raise self._lost("before the next step")
        return transport

    def _lost(self, when: str) -> Failure:
        ctx = self._ctx
        if self._watchdog is not None and self._watchdog.dead:
            when += (f": no answer to keep-alives for {self.connect_timeout * KEEPALIVE_COUNT:g}s "
                     f"(CONNECT_TIMEOUT x {KEEPALIVE_COUNT})")
        return Failure(
            f"lost the SSH connection to {ctx.label if ctx else self.name} {when}",
            f"check the host, then look at `fab -H {self.name} status`; the next task takes "
            f"over the lock this one leaves (or `{ctx.unlock_hint if ctx else 'fab unlock'}`)",
            code=NO_CONNECTION,
        )

    # -- what a task does over the connection

    @property
    def shell(self) -> StepShell:
        """The task's one remote shell, started on first use (and again after a
        step was stopped part-way, which ends the shell it ran in)."""
        transport = self._transport()
        if self._shell is None or not self._shell.alive:
            self._shell = StepShell(transport, self.name, self.stats, self._lost,
                                      open_timeout=self.connect_timeout)
            self._shell.start()
        return self._shell

    def run(self, script, on_line=None, on_mark=None, timeout=None):
        """Run one step's script in the task's remote shell -> shell.StepResult."""
        return self.shell.run(script, on_line=on_line, on_mark=on_mark, timeout=timeout)

    def exec_channel(self, command: str) -> paramiko.Channel:
        """A channel of its own running ``command`` on the host (a stream to
        `docker load`, say); the caller writes its stdin and reads its answer
        (stdout and stderr as one stream).
        A lost connection raises the task's Failure(code=3)."""
        transport = self._transport()
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
            chan.set_combine_stderr(True)  # one answer to read: its output, then its status
            chan.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._lost("while opening a channel") from exc
        self.stats["commands"] = self.stats.get("commands", 0) + 1
        return chan

    def lost(self, when: str) -> Failure:
        """The task's Failure(code=3) for a connection lost ``when``."""
        return self._lost(when)

    def http(self, port, path, **kwargs) -> Response:
        """GET ``path`` from a port on the host over a direct-tcpip channel (get)."""
        return get(self._transport(), port, path, stats=self.stats, lost=self._lost,
                         host_name=self.name, **kwargs)

    def forward(self, remote_port: int, local_port: int = 0, remote_host: str = "127.0.0.1",
                local_bind: str = "127.0.0.1") -> Tunnel:
        """Listen on local_bind:local_port (0 = any free port) and forward to remote_host:remote_port.

        The port is bound before this returns, so a busy port fails at once
        and a client can connect immediately. Stop it with .close() or a with block.
        """
        return Tunnel(self._transport(), self.stats, remote_host, int(remote_port),
                      local_bind, int(local_port))

    # -- uploading

    def put_bytes(self, data: bytes, remote_path: str, mode: int = 0o600) -> None:
        """Upload to a temp name beside the target, chmod before any content, then rename into place."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("put_bytes takes bytes")
        if not posixpath.isabs(remote_path):
            raise Failure(
                f"upload path {remote_path!r} is not absolute",
                "SFTP resolves relative paths against the login user's home and never expands '~': use a full path",
                code=BAD_INPUT,
            )
        directory, name = posixpath.split(remote_path)
        temp = posixpath.join(directory, f".{name}.tmp-{secrets.token_hex(6)}")
        transport = self._transport()
        sftp = self._sftp_client(transport)
        try:
            # "x": create it new (O_EXCL), never reuse or follow something already there.
            with sftp.open(temp, "wbx") as f:
                f.chmod(mode)  # before the content: a secret is never readable by others, even briefly
                f.set_pipelined(True)
                f.write(bytes(data))
            sftp.posix_rename(temp, remote_path)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            try:
                sftp.remove(temp)
            except Exception:
                pass
            if transport_died(transport):
                raise self._lost(f"while uploading {remote_path}") from exc
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise Failure(
                f"cannot upload {remote_path} to {self.name}: {reason}",
                f"check that {directory} exists and that user {self._ctx.user!r} may write to it",
                code=FAILED,
            ) from exc
        self.stats["uploads"] += 1

    def _sftp_client(self, transport) -> paramiko.SFTPClient:
        with self._sftp_lock:
            if self._sftp is None or self._sftp.sock.closed:
                try:
                    self._sftp = paramiko.SFTPClient.from_transport(transport)
                except (paramiko.SSHException, EOFError, OSError) as exc:
                    if transport_died(transport):
                        raise self._lost("while starting SFTP") from exc
                    raise Failure(
                        f"{self.name} offers no SFTP ({exc or type(exc).__name__})",
                        "enable it in the host's sshd_config: Subsystem sftp internal-sftp",
                        code=FAILED,
                    ) from exc
            return self._sftp

    # -- closing

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if self._shell is not None:
            self._shell.close()
            self._shell = None
        if self._sftp is not None:
            _close_quietly(self._sftp)
            self._sftp = None
        if self.connection is not None:
            _close_quietly(self.connection)
            self.connection = None

    def __enter__(self) -> "Host":
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Host {self.name} {'connected' if self.connection else 'closed'}>"


@functools.lru_cache(maxsize=8)
def _known_hosts(text: str, path: str):
    """known_hosts parsed once per content: the hosts of a run mostly share one
    file, and a 300-line one takes ~9 ms to parse (a key object per line)."""
    return tuple(parse_known_hosts(text, path))


def _close_quietly(thing) -> None:
    try:
        thing.close()
    except Exception:
        pass
