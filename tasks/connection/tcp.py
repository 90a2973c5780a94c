"""The TCP socket under a task's SSH connection: no Nagle delay, quick ACKs."""

from __future__ import annotations

import socket

import paramiko


def transport_with_nodelay(sock, **kwargs) -> paramiko.Transport:
    """paramiko never sets TCP_NODELAY; small SSH messages then wait for delayed ACKs.

    Set from the first byte (a transport_factory sees the socket before the
    handshake): measured here it halves the connect time, takes a command
    from 0.145 s to 0.085 s and an HTTP probe from 44-88 ms to under 1 ms.
    """
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if hasattr(socket, "TCP_QUICKACK"):
            sock = QuickAckSocket(sock)
    return paramiko.Transport(sock, **kwargs)


class QuickAckSocket:
    """A TCP socket that acknowledges what it receives at once (Linux).

    sshd sets TCP_NODELAY only for sessions with a terminal, so on ours its
    Nagle algorithm holds a small message back until the one before it is
    acknowledged, and Linux delays that ACK by 40 ms: measured here, the
    task's first channel took 42 ms to open instead of 1 ms. TCP_QUICKACK
    is not sticky (the kernel drops back to delayed ACKs by itself), so it
    is set again before every read. Everything else is the socket's.
    """

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def recv(self, size: int) -> bytes:
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except OSError:
            pass
        return self._sock.recv(size)

    def __getattr__(self, name):
        return getattr(self._sock, name)
