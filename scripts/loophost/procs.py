"""Ports and processes on loopback: free ports, HTTP probes, pids, subprocesses."""

import http.client
import os
import shlex
import signal
import socket
import subprocess
import time

import ports  # scripts/ports.py, beside the package (scripts/ is on sys.path)


LOOPBACK = "127.0.0.1"
SSHD = "/usr/sbin/sshd"
BUSYBOX = "/bin/busybox"  # from Debian's busybox-static: no shared libraries

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
