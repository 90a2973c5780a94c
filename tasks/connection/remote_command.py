"""One remote command on a channel of its own, wired to this machine's terminal.

For `fab exec`: the command's stdout and stderr go to ours; with
``stdin`` its input is forwarded (a pipe or file: until its end, then EOF);
with ``tty`` the channel gets a pty of this terminal's size and our
terminal goes raw for the time, so typed keys, Ctrl-C and Ctrl-D reach the
remote command as they would in ssh -t. Returns the command's exit status.
"""

import os
import select
import shutil
import sys
import termios
import threading
import tty as ttymod

import paramiko


def run_attached(host, command, *, stdin=False, tty=False, feed=None):
    """Run ``command`` on ``host`` (a connected ssh.Host); its exit status.
    ``feed``: bytes for its stdin, then EOF (not with ``stdin`` or ``tty``)."""
    transport = host.connection.transport
    try:
        chan = transport.open_session(timeout=host.connect_timeout)
        if tty:
            size = shutil.get_terminal_size()
            chan.get_pty(term=os.environ.get("TERM", "xterm"), width=size.columns,
                         height=size.lines)
        chan.exec_command(command)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise host.lost("while starting the command") from exc
    host.stats["commands"] = host.stats.get("commands", 0) + 1
    if tty:
        return _with_terminal(chan)
    if stdin:
        threading.Thread(target=_forward_stdin, args=(chan,), daemon=True).start()
    else:
        try:
            if feed:
                chan.sendall(feed)
            chan.shutdown_write()
        except (OSError, EOFError) as exc:
            raise host.lost("while starting the command") from exc
    return _pump(chan)


def _forward_stdin(chan):
    fd = sys.stdin.fileno()
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            chan.sendall(data)
    except OSError:
        pass
    try:
        chan.shutdown_write()
    except (OSError, EOFError):
        pass


def _pump(chan, stdin_fd=None):
    """Copy the channel's output to ours (and our keys to it) until it ends."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    while True:
        watched = [chan] + ([stdin_fd] if stdin_fd is not None else [])
        ready, _, _ = select.select(watched, [], [], 0.5)
        if chan in ready or chan.recv_ready() or chan.recv_stderr_ready():
            while chan.recv_ready():
                data = chan.recv(65536)
                if not data:
                    break
                out.write(data)
                out.flush()
            while chan.recv_stderr_ready():
                err.write(chan.recv_stderr(65536))
                err.flush()
        if stdin_fd is not None and stdin_fd in ready:
            data = os.read(stdin_fd, 4096)
            if data:
                chan.sendall(data)
            else:
                stdin_fd = None
                chan.shutdown_write()
        if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            break
        if chan.closed and not chan.recv_ready():
            break
    return chan.recv_exit_status()


def _with_terminal(chan):
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        ttymod.setraw(fd)
        return _pump(chan, stdin_fd=fd)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
