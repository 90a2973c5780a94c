"""The keep-alive watchdog: a server that stops answering is given up on
within interval x count; one that answers is left alone."""

import threading
import time

from tasks.connection.watchdog import REQUEST, Watchdog


class FakeTransport:
    """Answers keep-alives until silent() is called, then never again (like a
    frozen host: the request waits until the transport is closed)."""

    def __init__(self):
        self.active = True
        self.asked = []
        self._silent = threading.Event()
        self._closed = threading.Event()

    def is_active(self):
        return self.active

    def silent(self):
        self._silent.set()

    def global_request(self, kind, wait=True):
        self.asked.append(kind)
        if self._silent.is_set():
            self._closed.wait(30)
            return None
        return object()

    def close(self):
        self.active = False
        self._closed.set()


def test_a_silent_server_is_given_up_within_interval_times_count():
    t = FakeTransport()
    dog = Watchdog(t, interval=0.2, count=3).start()
    time.sleep(0.7)
    assert t.active and len(t.asked) >= 2 and set(t.asked) == {REQUEST}
    t.silent()
    went = time.monotonic()
    while t.active and time.monotonic() - went < 5:
        time.sleep(0.01)
    assert not t.active and dog.dead
    assert time.monotonic() - went <= 0.2 * 3 + 0.15


def test_a_server_that_answers_is_never_closed_and_stop_ends_the_watch():
    t = FakeTransport()
    dog = Watchdog(t, interval=0.05, count=3).start()
    time.sleep(0.5)
    dog.stop()
    assert t.active and not dog.dead and len(t.asked) >= 5
    asked = len(t.asked)
    time.sleep(0.2)
    assert len(t.asked) <= asked + 1
