"""`fab rollback` returns only once nginx's old workers stopped accepting
(issue 33, item 0).

After a reload nginx's master starts the new workers, sleeps 100 ms, then
tells the old ones to stop; until then both accept new connections. A verify
that passes on the first answers from the new file returned while fresh
clients still met the old colour (up to 64 ms after `fab` returned, with
`worker_processes 1`, where the old worker is as likely to accept as the
new one). Here a client opens fresh connections in a loop the whole time,
and no connection opened after `fab rollback` returned may meet the colour
rolled away from.
"""

import threading
import time

import pytest

import loophost as lh
from released import fab, module_project

pytestmark = pytest.mark.e2e

ROLLBACKS = 20


@pytest.fixture(scope="module")
def one_worker_host(tmp_path_factory, _clean_machine):
    try:
        host = lh.LoopHost(tmp_path_factory.mktemp("one-worker"), workers=1).start()
    except RuntimeError as e:
        pytest.fail(f"could not start a loopback host with one nginx worker: {e}",
                    pytrace=False)
    yield host
    host.stop()


@pytest.fixture(scope="module")
def proj(request, tmp_path_factory, one_worker_host):
    yield from module_project(request, tmp_path_factory, one_worker_host, setup=True)


class FreshClients:
    """A thread opening a new connection per request, as fast as it can:
    (monotonic time before connecting, colour answered) for each."""

    def __init__(self, port):
        self.port, self.seen, self._stop = port, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            opened = time.monotonic()
            status, headers, _ = lh.http_get(self.port, "/", timeout=2.0)
            self.seen.append((opened, status, headers.get("x-deploy-colour")))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def test_no_fresh_client_meets_the_old_colour_after_rollback_returns(proj):
    proj.app.commit("v2")
    fab(proj, "release")  # both colours run: green live, blue the rollback target
    late = []  # (rollback, ms after fab returned, old colour answered)
    with FreshClients(proj.public_port) as client:
        live = "green"
        for n in range(ROLLBACKS):
            target = "blue" if live == "green" else "green"
            fab(proj, "rollback")
            returned = time.monotonic()
            time.sleep(0.3)  # well past nginx's 100 ms hand-over
            late += [(n + 1, round((t - returned) * 1000), colour)
                     for t, status, colour in list(client.seen)
                     if t >= returned and colour != target]
            live = target
    answered = [s for _, s, _ in client.seen if s is not None]
    assert len(answered) > ROLLBACKS * 20, f"the client barely ran: {len(answered)} answers"
    assert not late, (f"{len(late)} fresh connections opened after `fab rollback` returned "
                      f"met the old colour (rollback, ms after, colour): {late[:10]}")
