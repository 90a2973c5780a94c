"""A host that shares nothing with the machine running `fab`, on one machine.

`SecondDaemon` is a Docker daemon of our own: its own data root, exec root,
socket and bridge (never `--bridge=none`: on start that deletes `docker0`,
the machine daemon's bridge; NOTES.md). It starts in about 2 s, holds no
images, and can be stopped and started again without touching the
machine's daemon (tests/e2e/test_docker_restart.py).

`OwnHost` is a LoopHost whose sshd runs in a mount namespace of its own
(`unshare --mount --propagation private`): there the daemon's run
directory is mounted over /run, so every command sshd runs sees that
daemon's socket as /run/docker.sock, and each directory in `hide` is
covered by an empty one, so `git` there cannot read the app's repository.
The rest of the file system is shared: nginx and DEPLOY_DIR work as usual.
The /run directory (not the socket file) is what is mounted: a daemon that
starts again makes a new socket file, which a mount of the old file would
miss.

Standard library only, like scripts/loophost/.
"""

import json
import os
import random
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

import loophost as lh

DOCKERD = "dockerd"
# Short: unix socket paths (containerd's, under the exec root) have a 108-byte limit.
SHORT_TMP = "/tmp"


def _write_record(path, **fields):
    """What a test session made, for `_abandoned` to find if it is killed."""
    path.write_text(json.dumps({**fields, "owner_pid": os.getpid()}) + "\n")


def _abandoned(pattern):
    """The records under SHORT_TMP matching ``pattern`` whose session is gone."""
    for record in Path(SHORT_TMP).glob(pattern):
        try:
            data = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if not lh.pid_alive(data.get("owner_pid")):
            yield data


def _ip(*args):
    return subprocess.run(["ip", *args], capture_output=True, text=True)


def _free_subnet():
    """An X for 10.213.X.0/24 (the bridge) that no interface of this machine uses."""
    used = _ip("-4", "-o", "addr").stdout
    choices = [x for x in range(1, 255) if f"10.213.{x}." not in used]
    return random.choice(choices)


class SecondDaemon:
    """A dockerd of our own; `env` points a docker CLI at it (DOCKER_HOST)."""

    def __init__(self, workdir=None, data_root=None):
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="bgd-", dir=SHORT_TMP))
        self.data_root = Path(data_root or self.dir / "root")  # a SmallDisk's, say
        self.run_dir = self.dir / "run"  # mounted over /run in OwnHost's namespace
        self.socket = self.run_dir / "docker.sock"
        self.pidfile = self.dir / "dockerd.pid"
        self.log = self.dir / "dockerd.log"
        self.record = self.dir / "daemon.json"
        self.bridge = "bgd" + os.urandom(4).hex()  # at most 15 characters
        self.subnet = None
        self.pid = None
        self._proc = None

    @property
    def host(self):
        return f"unix://{self.socket}"

    @property
    def env(self):
        return {**os.environ, "DOCKER_HOST": self.host}

    def docker(self, *args, timeout=120, check=False):
        """`docker ARGS` against this daemon -> CompletedProcess (text)."""
        r = subprocess.run(["docker", *args], capture_output=True, text=True,
                           timeout=timeout, env=self.env)
        if check and r.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} on {self.host} exited "
                               f"{r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def start(self):
        """Make the bridge (once) and start dockerd; wait until it answers."""
        (self.run_dir / "sshd").mkdir(parents=True, exist_ok=True)  # sshd's privsep dir
        os.chmod(self.run_dir / "sshd", 0o755)
        if self.subnet is None:
            self.subnet = _free_subnet()
            for args in (("link", "add", self.bridge, "type", "bridge"),
                         ("addr", "add", f"10.213.{self.subnet}.1/24", "dev", self.bridge),
                         ("link", "set", self.bridge, "up")):
                r = _ip(*args)
                if r.returncode != 0:
                    raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
        config = self.dir / "daemon.conf.json"
        config.write_text("{}\n")  # not the machine's /etc/docker/daemon.json
        cmd = [DOCKERD, "-b", self.bridge, "--data-root", str(self.data_root),
               "--exec-root", str(self.dir / "exec"), "--pidfile", str(self.pidfile),
               "-H", self.host, "--config-file", str(config),
               "--iptables=false", "--ip-masq=false", "--ip-forward=false"]
        # Never --default-address-pool: a daemon started again with it deletes
        # the interface docker0, the machine daemon's bridge, whatever -b says
        # (moby's initNetworkController, "Clear stale bridge network").
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(self._dockerd_command(cmd), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=log, start_new_session=True)
        self.pid = self._proc.pid
        self._write_record()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if self.socket.exists() and self.docker("info", timeout=10).returncode == 0:
                return self
            time.sleep(0.2)
        text = self.log.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"the second dockerd did not start:\n{text}")

    def _dockerd_command(self, cmd):
        """The command line that starts dockerd: a hook for a daemon confined to
        CPUs of its own (bench/build_load.py)."""
        return cmd

    def stop_daemon(self, timeout=60):
        """Stop dockerd (SIGTERM: it stops its containers), keep its data."""
        if self.pid:
            lh.end_pid(self.pid, timeout, self._proc)
        self.pid = self._proc = None

    def restart(self):
        """Stop the daemon and start it again the same way (a reboot of the host's Docker)."""
        self.stop_daemon()
        return self.start()

    def stop(self):
        """Stop dockerd, remove its bridge and its data. Safe to call twice.

        Its containers and networks go first: a network's bridge interface
        outlives the daemon (it is kept for the daemon's next start), and
        leaked ones use up the address pools every daemon here allocates from.
        """
        if self.pid and lh.pid_alive(self.pid):
            ids = lh.nonblank_lines(self.docker("ps", "-aq", timeout=60))
            if ids:
                self.docker("rm", "-f", *ids, timeout=120)
            self.docker("network", "prune", "-f", timeout=60)
        self.stop_daemon()
        if self.subnet is not None:
            _ip("link", "del", self.bridge)
            self.subnet = None
        # Mounts left by a daemon that died (overlay, shm) would keep rm from working.
        for top in {self.dir, self.data_root}:
            subprocess.run(f"grep -o ' {top}/[^ ]*' /proc/mounts | sort -r | "
                           "xargs -r -n1 umount -l", shell=True, capture_output=True)
        subprocess.run(["rm", "-rf", str(self.dir)], capture_output=True)

    def _write_record(self):
        _write_record(self.record, dir=str(self.dir), data_root=str(self.data_root),
                      pid=self.pid, bridge=self.bridge, subnet=self.subnet)

    @classmethod
    def stop_abandoned(cls):
        """Stop daemons (and bridges) left by test sessions that were killed."""
        for data in _abandoned("bgd-*/daemon.json"):
            daemon = cls(data["dir"], data.get("data_root"))
            daemon.bridge, daemon.subnet = data.get("bridge"), data.get("subnet")
            pid = data.get("pid")
            if pid and lh.pid_alive(pid) and str(daemon.dir) in lh._cmdline(pid):
                daemon.pid = pid
            daemon.stop()


class SmallDisk:
    """A small ext4 file system of our own: a sparse image file on a loop
    device we attach, mounted at `mnt`. A daemon whose data root is on it
    runs out of disk when a test wants it to (`fill`, `free`).
    `remove` undoes exactly what `create` did: the mount, the loop device
    it attached, the directory.
    """

    def __init__(self, workdir=None, mb=96):
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="bgdisk-", dir=SHORT_TMP))
        self.image, self.mnt = self.dir / "disk.img", self.dir / "mnt"
        self.ballast = self.mnt / "ballast"
        self.record = self.dir / "disk.json"
        self.mb, self.device, self.mounted = mb, None, False

    def create(self):
        try:
            lh._run(["truncate", "-s", f"{self.mb}M", str(self.image)])
            self.device = lh._run(["losetup", "--find", "--show", str(self.image)]).stdout.strip()
            self._write_record()
            lh._run(["mkfs.ext4", "-q", "-m", "0", self.device])
            self.mnt.mkdir(exist_ok=True)
            lh._run(["mount", self.device, str(self.mnt)])
            self.mounted = True
        except Exception:
            self.remove()
            raise
        return self

    def free_bytes(self):
        st = os.statvfs(self.mnt)
        return st.f_bavail * st.f_frsize

    def fill(self, leave):
        """Take all free space but ``leave`` bytes (a ballast file)."""
        grow = self.free_bytes() - leave
        if grow > 0:
            size = self.ballast.stat().st_size if self.ballast.exists() else 0
            lh._run(["fallocate", "-l", str(size + grow), str(self.ballast)])

    def free(self):
        """Remove the ballast: what an operator does when the disk is full."""
        self.ballast.unlink(missing_ok=True)

    def remove(self):
        """Unmount, detach the loop device we attached, remove the files. Safe twice."""
        if self.mounted:
            subprocess.run(["umount", str(self.mnt)], capture_output=True)
            self.mounted = False
        if self.device:
            subprocess.run(["losetup", "-d", self.device], capture_output=True)
            self.device = None
        subprocess.run(["rm", "-rf", str(self.dir)], capture_output=True)

    def _write_record(self):
        _write_record(self.record, dir=str(self.dir), device=self.device, image=str(self.image))

    @classmethod
    def remove_abandoned(cls):
        """Disks left by test sessions that were killed (after their daemons)."""
        for data in _abandoned("bgdisk-*/disk.json"):
            disk = cls(data["dir"])
            disk.mounted = os.path.ismount(disk.mnt)
            # Only the loop device still backed by this disk's image file.
            back = f"/sys/block/{Path(data.get('device') or 'none').name}/loop/backing_file"
            if os.path.exists(back) and Path(back).read_text().strip() == data["image"]:
                disk.device = data["device"]
            disk.remove()


class OwnHost(lh.LoopHost):
    """A LoopHost whose commands reach only `daemon`, and cannot read `hide`.

    ``binds`` [(source, target), ...]: directories of this host's own mounted
    over paths every host names alike (a fleet's DEPLOY_DIR and nginx prefix,
    tests/e2e/test_multi_host.py); with binds, the nginx master runs in a
    namespace with the same mounts, so it opens the files its sshd wrote.
    """

    def __init__(self, workdir, daemon, hide=(), binds=(), **kwargs):
        super().__init__(workdir, **kwargs)
        self.daemon = daemon
        self.hide = [Path(p).resolve() for p in hide]
        self.binds = [(Path(s), Path(t)) for s, t in binds]
        self.empty = self.workdir / "empty"

    def _in_namespace(self, cmd):
        """``cmd`` run in a mount namespace of this host's own."""
        self.empty.mkdir(parents=True, exist_ok=True)
        mounts = [f"mount --bind {shlex.quote(str(self.daemon.run_dir))} /run"]
        mounts += [f"mount --bind {shlex.quote(str(self.empty))} {shlex.quote(str(p))}"
                   for p in self.hide]
        mounts += [f"mount --bind {shlex.quote(str(s))} {shlex.quote(str(t))}"
                   for s, t in self.binds]
        script = " && ".join(mounts) + ' && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                "sh", *map(str, cmd)]

    def _sshd_command(self, cmd):
        return self._in_namespace(cmd)

    def _nginx_command(self, cmd):
        return self._in_namespace(cmd) if self.binds else cmd

    def ssh(self, command, timeout=60):
        """Run ``command`` on this host over SSH, as fab would -> CompletedProcess."""
        return subprocess.run(
            ["ssh", "-p", str(self.ssh_port), "-i", str(self.client_key),
             "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "BatchMode=yes",
             f"{self.user}@{self.host}", command],
            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
