"""CPU sets: parts of one machine confined to CPUs of their own, as if two machines.

A `Cpuset` is a cgroup with the cpuset controller and a list of CPUs. A
command started through `wrap(cmd)` enters it before it runs, so the
process and everything it starts later (a dockerd's containerd, shims and
docker-proxy, sshd's sessions, nginx's workers after a reload) stay on
those CPUs. A Docker daemon started with `--cgroup-parent` = `parent` puts
its containers, build steps included, under the same cgroup: runc gives a
new cpuset cgroup its parent's CPUs.

Two layouts of the same tree, NAME/ (the CPUs) with NAME/procs (the
processes we start) and NAME/<container> (Docker's):
- cgroup v1 (this machine): the `cpuset` hierarchy, /sys/fs/cgroup/cpuset.
  Each new cgroup starts with no CPUs, so every level gets them written.
- cgroup v2: /sys/fs/cgroup is cgroup2 and offers `cpuset`; it is enabled in
  the root's cgroup.subtree_control. NAME holds no process itself (v2's
  "no internal processes" rule would stop runc from enabling controllers
  for the containers below it): that is why processes go in NAME/procs.

On v1 the processes also enter NAME/procs of the `cpuacct` hierarchy, where
Docker makes NAME/<container> by itself: `cpu_seconds()` is then the CPU
time of everything in the set, so a benchmark can tell its own parts' use
of a CPU from other processes' (/proc/stat). On v2, cpu.stat gives it.

`where(pid)` says where a process may run (Cpus_allowed_list), where it
last ran and its cpuset cgroup; `Watch` samples that for named parts while
a benchmark runs, as proof of the confinement.

The pure helpers (CPU lists, /proc lines) are unit-tested; the rest needs root.
Only the v1 layout is exercised on this project's machine (Debian 12 with a
hybrid v1 hierarchy, Docker 20.10 with the cgroupfs driver).
Standard library only, like scripts/loophost/.
"""

import os
import re
import shlex
import threading
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
PREFIX = "bluegreen-bench-"  # NAME = PREFIX + <owner pid> + "-" + role


def parse_cpu_list(text):
    """"0-2,5" (the kernel's list format) -> frozenset({0, 1, 2, 5})."""
    cpus = set()
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return frozenset(cpus)


def format_cpu_list(cpus):
    """{0, 1, 2, 5} -> "0-2,5"."""
    ordered, runs = sorted(cpus), []
    for cpu in ordered:
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def allowed_from_status(text):
    """Cpus_allowed_list of a /proc/PID/status text -> frozenset (None if absent)."""
    m = re.search(r"^Cpus_allowed_list:\s*(\S+)", text, re.M)
    return parse_cpu_list(m.group(1)) if m else None


def last_cpu_from_stat(text):
    """The CPU a task last ran on: field 39 of /proc/PID/stat (after the "(comm)")."""
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[36])  # fields[0] is field 3 (state)


def cpuset_from_cgroup(text):
    """The cpuset cgroup path in a /proc/PID/cgroup text (v1's cpuset line, else v2's)."""
    paths = dict(line.split(":", 2)[1:] for line in text.splitlines() if line.count(":") >= 2)
    return paths.get("cpuset", paths.get("", "?"))


def _read(path):
    try:
        return Path(path).read_text()
    except OSError:  # the process ended, or the file is not there
        return None


def where(pid):
    """{"allowed": frozenset, "cpu": last cpu, "cgroup": cpuset path} of a live pid, or None."""
    status, stat, cgroup = (_read(f"/proc/{pid}/{f}") for f in ("status", "stat", "cgroup"))
    if not (status and stat and cgroup):
        return None
    return {"allowed": allowed_from_status(status), "cpu": last_cpu_from_stat(stat),
            "cgroup": cpuset_from_cgroup(cgroup)}


def below(roots, parents):
    """`roots` and every pid below them, given {pid: parent pid}."""
    children = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def descendants(roots):
    """`roots` and every live process below them, from one pass over /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        stat = _read(entry / "stat") if entry.name.isdigit() else None
        if stat:
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return below([r for r in roots if r in parents], parents)


def pids_where(test):
    """Pids whose argument list (a list of str) passes `test`."""
    found = []
    for entry in Path("/proc").iterdir():
        cmdline = _read(entry / "cmdline") if entry.name.isdigit() else None
        if cmdline and test(cmdline.rstrip("\0").split("\0")):
            found.append(int(entry.name))
    return found


def busy_from_stat(text):
    """{cpu: (busy, total)} in clock ticks from a /proc/stat text (busy: not idle/iowait)."""
    out = {}
    for line in text.splitlines():
        name, *ticks = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            values = [int(t) for t in ticks[:8]]
            out[int(name[3:])] = (sum(values) - values[3] - values[4], sum(values))
    return out


def cpu_ticks():
    """busy_from_stat of now, and the seconds a tick is."""
    return busy_from_stat(_read("/proc/stat")), 1 / os.sysconf("SC_CLK_TCK")


class Watch:
    """Every `interval` s, for each part (name -> a function returning pids): the
    pids it had, the CPUs they were allowed and seen on, their cpuset cgroups,
    and when the part was first and last seen (on `clock`)."""

    def __init__(self, parts, clock, interval=0.5):
        self.parts, self.clock, self.interval = parts, clock, interval
        self.seen = {name: {"pids": set(), "allowed": set(), "cpus": set(), "cgroups": set(),
                            "first": None, "last": None} for name in parts}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            now = self.clock()
            for name, find in self.parts.items():
                for pid in find():
                    w = where(pid)
                    if w is None:
                        continue
                    s = self.seen[name]
                    s["pids"].add(pid)
                    s["allowed"] |= w["allowed"]
                    s["cpus"].add(w["cpu"])
                    # Docker's 64-hex container ids, cut as `docker ps` cuts them
                    s["cgroups"].add(re.sub(r"([0-9a-f]{12})[0-9a-f]{52}", r"\1", w["cgroup"]))
                    s["first"] = now if s["first"] is None else s["first"]
                    s["last"] = now
            self._stop.wait(self.interval)

    def figures(self):
        """{part: {pids, allowed, ran_on, cgroups}} (CPU lists as text)."""
        return {name: {"pids": len(s["pids"]), "allowed": format_cpu_list(s["allowed"]),
                       "ran_on": format_cpu_list(s["cpus"]), "cgroups": sorted(s["cgroups"])}
                for name, s in self.seen.items()}


def hierarchy():
    """("v1", /sys/fs/cgroup/cpuset) or ("v2", /sys/fs/cgroup); RuntimeError saying why not."""
    v1 = CGROUP / "cpuset"
    if (v1 / "cpuset.cpus").exists():
        return "v1", v1
    controllers = _read(CGROUP / "cgroup.controllers")
    if controllers is None:
        raise RuntimeError(f"no cpuset controller: {v1} is not a cpuset hierarchy and "
                           f"{CGROUP} is not cgroup2")
    if "cpuset" not in controllers.split():
        raise RuntimeError(f"{CGROUP} is cgroup2 but offers no cpuset controller "
                           f"(cgroup.controllers: {controllers.strip()!r}): it is bound to a "
                           "v1 hierarchy or the kernel lacks CONFIG_CPUSETS")
    return "v2", CGROUP


# v1 hierarchies our processes enter besides cpuset: CPU time (cpuacct) and CPU
# weight (cpu); Docker makes NAME/<container> in each by itself.
V1_EXTRA = ("cpuacct", "cpu")
V1_SHARES, V2_WEIGHT = 1024, 100  # the kernel's default CPU weight


class Cpuset:
    """The cgroup NAME on `cpus`: wrap(cmd) runs a command in it; `parent` for Docker.

    `weight` (1: the kernel's default) multiplies the CPU weight of NAME
    against the machine's other processes: at 100 they get what NAME leaves
    of its CPUs, as if it had them to itself; inside NAME, its processes
    and containers share as on any machine.
    """

    def __init__(self, role, cpus, weight=1):
        self.version, self.root = hierarchy()
        self.name = f"{PREFIX}{os.getpid()}-{role}"
        self.cpus, self.weight = frozenset(cpus), weight
        self.dir = self.root / self.name
        self.procs = self.dir / "procs"
        self.groups, self.acct, self.cpu = [self.dir], self.dir, self.dir
        if self.version == "v1":  # cpu and cpuacct may be one hierarchy (cpu,cpuacct)
            self.acct, self.cpu = (_mount(c) and _mount(c) / self.name for c in V1_EXTRA)
            self.groups += sorted({d for d in (self.acct, self.cpu) if d})

    @property
    def parent(self):
        """dockerd's --cgroup-parent: its containers go to NAME/<id>."""
        return f"/{self.name}"

    def create(self):
        cpus = format_cpu_list(self.cpus)
        online = parse_cpu_list(_read(self.root / "cpuset.cpus.effective")
                                or _read(self.root / "cpuset.effective_cpus") or "")
        if not self.cpus <= online:
            raise RuntimeError(f"CPUs {cpus}: this machine offers {format_cpu_list(online)}")
        v2 = self.version == "v2"
        if v2:  # the "no internal processes" rule: NAME itself holds none
            (self.root / "cgroup.subtree_control").write_text("+cpuset +cpu")
        for d in self.groups:
            (d / "procs").mkdir(parents=True, exist_ok=True)
        if v2:
            (self.dir / "cgroup.subtree_control").write_text("+cpuset")
        for d in (self.dir, self.procs):
            (d / "cpuset.cpus").write_text(cpus)
            if not v2:  # v1 cgroups start with no memory nodes either
                (d / "cpuset.mems").write_text(_read(self.root / "cpuset.mems").strip())
        if self.cpu and self.weight != 1:
            if v2:
                (self.cpu / "cpu.weight").write_text(str(min(10000, V2_WEIGHT * self.weight)))
            else:
                (self.cpu / "cpu.shares").write_text(str(V1_SHARES * self.weight))
        return self

    def pids(self, which="procs"):
        """Pids in NAME/procs ("procs"), or in Docker's NAME/<id> cgroups ("containers")."""
        dirs = [self.procs] if which == "procs" else \
            [d for d in self.dir.iterdir() if d.is_dir() and d != self.procs]
        pids = []
        for d in dirs:
            for sub in [d, *(p for p in d.rglob("*") if p.is_dir())]:
                pids += [int(p) for p in (_read(sub / "cgroup.procs") or "").split()]
        return pids

    def cpu_seconds(self):
        """CPU time used so far by everything in NAME (None: no accounting found)."""
        if self.version == "v1":
            ns = self.acct and _read(self.acct / "cpuacct.usage")
            return int(ns) / 1e9 if ns else None
        m = re.search(r"^usage_usec (\d+)", _read(self.dir / "cpu.stat") or "", re.M)
        return int(m.group(1)) / 1e6 if m else None

    def wrap(self, cmd):
        """`cmd` entering NAME/procs first (exec: the pid stays the command's)."""
        enter = " && ".join(f"echo $$ > {shlex.quote(str(d / 'procs' / 'cgroup.procs'))}"
                            for d in self.groups) + ' && exec "$@"'
        return ["sh", "-c", enter, "sh", *map(str, cmd)]

    def add(self, pid):
        """Move a running process (all its threads) into NAME/procs."""
        for d in self.groups:
            (d / "procs" / "cgroup.procs").write_text(str(pid))

    def remove(self):
        """Remove NAME in every hierarchy Docker made it in; processes left go to the root."""
        remove_tree(self.name)

    def __str__(self):
        weight = f", {self.weight}x the default CPU weight" if self.weight != 1 else ""
        return f"{self.name} (cgroup {self.version}, CPUs {format_cpu_list(self.cpus)}{weight})"


def _mount(controller):
    """The v1 hierarchy directory of `controller` (symlinks resolved), or None."""
    path = CGROUP / controller
    return path.resolve() if path.is_dir() else None


def _hierarchies():
    """The mount points of every cgroup hierarchy (Docker makes NAME in each)."""
    mounts = _read("/proc/mounts") or ""
    return [Path(line.split()[1]) for line in mounts.splitlines()
            if line.split()[2:3] in (["cgroup"], ["cgroup2"])]


def remove_tree(name):
    """Remove cgroup `name` and what is below it, in every hierarchy; the
    processes still in its cgroups go to the root (only in the hierarchies
    our processes enter: the others hold only what Docker put there)."""
    ours = {hierarchy()[1], *(_mount(c) for c in V1_EXTRA)}
    for top in _hierarchies():
        base = top / name
        if not base.is_dir():
            continue
        dirs = sorted((d for d in base.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts))
        for d in dirs + [base]:
            for pid in (_read(d / "cgroup.procs") or "").split() if top in ours else ():
                try:
                    (top / "cgroup.procs").write_text(pid)
                except OSError:
                    pass  # gone meanwhile
            try:
                d.rmdir()
            except OSError:
                pass


def remove_abandoned():
    """Remove the cgroups of runs whose owner process has ended (a killed bench)."""
    for top in _hierarchies():
        for d in top.glob(f"{PREFIX}*"):
            owner = d.name[len(PREFIX):].split("-", 1)[0]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                remove_tree(d.name)
