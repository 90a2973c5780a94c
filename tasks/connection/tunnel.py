"""A local port forwarded over the SSH connection (`fab preview`)."""

import select
import socket
import threading
from typing import List

import paramiko

from ..errors import BAD_INPUT, Failure


class Tunnel:
    """A local listening port whose connections are forwarded over the SSH connection."""

    def __init__(self, transport, stats, remote_host, remote_port, local_bind, local_port):
        self.transport, self.stats = transport, stats
        self.remote = (remote_host, remote_port)
        family = socket.AF_INET6 if ":" in local_bind else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((local_bind, local_port))
        except OSError as exc:
            self.listener.close()
            raise Failure(
                f"cannot listen on {local_bind}:{local_port}: {exc.strerror or exc}",
                "pick another port with --local-port, or stop what uses it",
                code=BAD_INPUT,
            ) from exc
        self.listener.listen(16)
        self.local_port = self.listener.getsockname()[1]
        self.local_bind = local_bind
        self.connections = 0
        self.errors: List[str] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"tunnel-{self.local_port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        shown = f"[{self.local_bind}]" if ":" in self.local_bind else self.local_bind
        return f"http://{shown}:{self.local_port}/"

    def _accept(self):
        while not self._closed.is_set():
            try:
                client, peer = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client, peer), daemon=True).start()

    def _serve(self, client, peer):
        self.connections += 1
        self.stats["channels"] = self.stats.get("channels", 0) + 1
        try:
            chan = self.transport.open_channel("direct-tcpip", self.remote, peer[:2], timeout=10)
        except Exception as exc:
            # The app is not listening (or the connection is gone): the client
            # sees its connection closed, the tunnel keeps serving.
            self.errors.append(f"{self.remote[0]}:{self.remote[1]}: {exc}")
            client.close()
            return
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            watch = [client, chan]
            while not self._closed.is_set():
                ready, _, _ = select.select(watch, [], [], 0.5)
                if client in ready:
                    data = client.recv(65536)
                    if data:
                        chan.sendall(data)
                    else:
                        # The client is done sending; keep its answer coming.
                        chan.shutdown_write()
                        watch = [chan]
                if chan in ready:
                    data = chan.recv(65536)
                    if not data:
                        break
                    client.sendall(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            _close_quietly(chan)
            _close_quietly(client)

    def close(self) -> None:
        self._closed.set()
        _close_quietly(self.listener)
        self._thread.join(timeout=2)

    def __enter__(self) -> "Tunnel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _close_quietly(thing) -> None:
    try:
        thing.close()
    except Exception:
        pass
