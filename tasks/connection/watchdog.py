"""Notice a dead SSH connection: server-alive probes that expect an answer.

paramiko's ``Transport.set_keepalive`` only sends: it never learns that
the host stopped answering, so a task waiting on a silent network (a
host that froze, a link that dropped without a reset) would wait for ever.
This watchdog does what OpenSSH's ServerAliveInterval/ServerAliveCountMax
do: every ``interval`` seconds it asks the server for an answer
(``keepalive@openssh.com``, which every OpenSSH server answers, with a
failure reply that counts as an answer); when ``count`` probes in a row
go unanswered, it closes the transport. Whatever the task was waiting on
then sees the connection gone and says so (exit 3).

Probes go out every ``interval`` seconds, one at a time; a probe still
unanswered when the next ones are due counts for each of them. So the
transport is closed ``interval * (count - 1)`` seconds after the first
unanswered probe, and a connection that went silent just after an answer
is noticed within ``interval * count`` seconds (CONNECT_TIMEOUT x 3).
"""

import threading
import time

REQUEST = "keepalive@openssh.com"


class Watchdog:
    """A daemon thread that closes ``transport`` when the server stops answering."""

    def __init__(self, transport, interval, count=3, clock=time.monotonic):
        self.transport = transport
        self.interval = float(interval)
        self.count = int(count)
        self.clock = clock
        self.dead = False  # set when the watchdog closed the transport
        self._stop = threading.Event()
        self._answered = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ssh-keepalive", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()

    def _ask(self):
        # global_request(wait=True) blocks until the answer or the transport
        # closes, with no timeout of its own: it runs in a thread of its own,
        # one at a time (paramiko keeps one pending global request).
        try:
            self.transport.global_request(REQUEST, wait=True)
        except Exception:
            return
        self._answered.set()

    def _watch(self):
        while not self._stop.wait(self.interval):
            if not self.transport.is_active():
                return
            self._answered.clear()
            asked = self.clock()
            threading.Thread(target=self._ask, name="ssh-keepalive-ask", daemon=True).start()
            if self._wait_answer(asked):
                continue
            if self._stop.is_set() or not self.transport.is_active():
                return
            self.dead = True
            try:
                self.transport.close()
            except Exception:
                pass
            return

    def _wait_answer(self, asked):
        """True once answered; False when ``count`` probes' time passed without one."""
        limit = asked + self.interval * max(1, self.count - 1)
        while not self._stop.is_set():
            left = limit - self.clock()
            if left <= 0:
                return False
            if self._answered.wait(min(left, 0.5)):
                return True
        return True
