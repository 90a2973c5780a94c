"""Ports for the test hosts, the demo and the benchmarks, from a reserved range.

Binding port 0 and closing the socket hands out a port from the kernel's
ephemeral range (net.ipv4.ip_local_port_range): the range every outgoing
connection takes its local port from. A load generator opening thousands
of connections can take that port before the test's server binds it. So
ports come from below the ephemeral range, where no outgoing connection
lands, and are claimed across processes (several test sessions share the
machine): a claim is a file naming the claimer's pid and its start time,
so a claim of a process that ended, or of a pid since reused, is free again.
Each port is also checked to be free (nothing bound to it) when handed out.

Standard library only.
"""

import os
import socket
from pathlib import Path

CLAIMS_DIR = Path(os.environ.get("LOOPHOST_PORTS_DIR", "/tmp/bluegreen-e2e-ports"))
LOOPBACK = "127.0.0.1"
# How many ports below the ephemeral range the tests may use.
SPAN = 12000
FALLBACK_EPHEMERAL_LOW = 32768


def ephemeral_range(path="/proc/sys/net/ipv4/ip_local_port_range"):
    """(low, high) of the kernel's ephemeral port range."""
    try:
        low, high = (int(v) for v in Path(path).read_text().split()[:2])
        return low, high
    except (OSError, ValueError):
        return FALLBACK_EPHEMERAL_LOW, 60999


def reserved_range(ephemeral=None, span=SPAN):
    """(first, last) of the ports the tests hand out: just below the ephemeral range."""
    low, _ = ephemeral or ephemeral_range()
    last = low - 1
    first = max(1024, last - span + 1)
    if last < first:
        raise RuntimeError(f"no room for test ports below the ephemeral range starting at {low}")
    return first, last


def process_start(pid):
    """Start time of `pid` (clock ticks since boot, /proc/PID/stat field 22); None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _claimer_alive(text):
    try:
        pid, start = (int(v) for v in text.split()[:2])
    except ValueError:
        return False
    return process_start(pid) == start


def bindable(port, address=LOOPBACK):
    """True when nothing holds `port` (on `address` or the wildcard address)."""
    for addr in (address, "0.0.0.0"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((addr, port))
            except OSError:
                return False
    return True


class Allocator:
    """Hands out distinct free ports from the reserved range, claimed for
    this process. One per process (`allocator()`)."""

    def __init__(self, first_last=None, claims_dir=CLAIMS_DIR):
        self.first, self.last = first_last or reserved_range()
        self.claims_dir = Path(claims_dir)
        self.pid = os.getpid()
        self.me = f"{self.pid} {process_start(self.pid)}\n"
        size = self.last - self.first + 1
        # Processes start at different places, so they rarely race for a port.
        self.next = self.first + (self.pid * 7919) % size

    def _claim(self, port):
        self.claims_dir.mkdir(parents=True, exist_ok=True)
        path = self.claims_dir / str(port)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                held = path.read_text()
            except OSError:
                return False
            if held == self.me or _claimer_alive(held):
                return False
            # The claimer is gone: take the port over (one winner by rename).
            tmp = self.claims_dir / f".{port}.{self.pid}"
            tmp.write_text(self.me)
            os.replace(tmp, path)
            return path.read_text() == self.me
        with os.fdopen(fd, "w") as f:
            f.write(self.me)
        return True

    def take(self, n=1, address=LOOPBACK):
        """n distinct ports, each claimed by this process and free right now."""
        size = self.last - self.first + 1
        found = []
        for _ in range(size):
            port = self.next
            self.next = self.first + (self.next - self.first + 1) % size
            if self._claim(port):
                if bindable(port, address):
                    found.append(port)
                    if len(found) == n:
                        return found
                else:
                    (self.claims_dir / str(port)).unlink(missing_ok=True)
        raise RuntimeError(f"no {n} free ports in {self.first}-{self.last}")


_allocator = None


def allocator():
    """This process's Allocator (a fresh one after a fork)."""
    global _allocator
    if _allocator is None or _allocator.pid != os.getpid():
        _allocator = Allocator()
    return _allocator


def free_ports(n, address=LOOPBACK):
    return allocator().take(n, address)


def free_port(address=LOOPBACK):
    return free_ports(1, address)[0]
