"""A sample app with workers, a steady stream of jobs, and the promise's checks.

The worker takes jobs from a queue in a volume (/jobs/queue/N, taken by an
atomic rename, done by writing /jobs/done/N: a job done twice has two
lines); the scheduler (`clock`) writes when it starts and stops, so two
clocks at once show as two starts in a row in /jobs/clock.log.
"""

import json
import threading
import time
from pathlib import Path

import loophost as lh
from released import fab, state_file, wait_until

WORKER = """\
/bin/busybox --install -s /bin 2>/dev/null
v=$(cat /app/VERSION)
mkdir -p /jobs/queue /jobs/done
stop=0
trap 'stop=1' TERM
echo "worker $BLUEGREEN_COLOUR $v up" >&2
while [ $stop -eq 0 ]; do
  for f in /jobs/queue/*; do
    [ -e "$f" ] || break
    n=${f##*/}
    mv "$f" "/jobs/taken.$n.$$" 2>/dev/null || continue
    echo "$n $BLUEGREEN_COLOUR $v" >> "/jobs/done/$n"
    rm -f "/jobs/taken.$n.$$"
  done
  sleep 0.2
done
echo "worker $BLUEGREEN_COLOUR $v stopped" >&2
"""

CLOCK = """\
/bin/busybox --install -s /bin 2>/dev/null
echo "start $BLUEGREEN_COLOUR $(date +%s)" >> /jobs/clock.log
trap 'echo "stop $BLUEGREEN_COLOUR" >> /jobs/clock.log; exit 0' TERM
while :; do sleep 0.2; done
"""

PROCFILE = """\
# the sample app's processes
web: sh /app/start.sh
worker: sh /app/worker.sh
clock: sh /app/clock.sh
"""

CRASHING_PROCFILE = PROCFILE.replace("worker: sh /app/worker.sh", "worker: sh -c 'exit 3'")

FILES = {"worker.sh": WORKER, "clock.sh": CLOCK}


def commit(app, version, procfile=PROCFILE, kind="ok"):
    return app.commit(version, kind=kind, procfile=procfile, files=FILES)


def worker_project(base, make, then=None, **settings):
    """A generator for a module fixture: this sample's "v1" in the project
    ``make(app)`` returns, its jobs directory (``project.jobs``) mounted as
    /jobs, ``settings`` set, `fab setup` run, then ``then(project)`` if given;
    the project is removed afterwards."""
    app = lh.SampleApp(base / "sample-app")
    commit(app, "v1")
    project = make(app)
    project.jobs = base / "jobs"
    project.jobs.mkdir()
    project.set(VOLUMES=f"{project.jobs}:/jobs", **settings)
    try:
        fab(project, "setup")
        if then:
            then(project)
        yield project
    finally:
        project.remove()


def workers(project):
    """[(colour, process, state)] of the app's worker containers (compose services
    COLOUR-TYPE; web and one-offs left out), from the host's own Docker daemon."""
    rows = []
    for c in project.containers():
        colour, _, kind = (c.get("service") or "").partition("-")
        if kind:
            rows.append((colour, kind, c["state"]))
    return rows


def assert_promise(project, types=("worker", "clock")):
    """Workers run in exactly one colour, the one serving everyone, every type there."""
    state = state_file(project)
    live = state["live"]
    running = [(c, p) for c, p, s in workers(project) if s in ("running", "restarting")]
    colours = {c for c, _ in running}
    assert colours == {live}, f"workers run in {colours}, {live} serves: {running}"
    assert {p for _, p in running} == set(types), running
    assert state.get("workers") == live, state.get("workers")


def clock_log(jobs):
    path = Path(jobs) / "clock.log"
    return path.read_text().splitlines() if path.exists() else []


def assert_one_clock(jobs):
    """The scheduler never ran in two colours at once: starts and stops alternate."""
    running = 0
    for line in clock_log(jobs):
        running += 1 if line.startswith("start") else -1
        assert running in (0, 1), clock_log(jobs)


class JobStream:
    """Jobs put in the queue at a steady rate by a thread, until stopped."""

    def __init__(self, jobs, rate=10):
        self.jobs = Path(jobs)
        (self.jobs / "queue").mkdir(parents=True, exist_ok=True)
        (self.jobs / "done").mkdir(parents=True, exist_ok=True)
        self.rate, self.sent, self._stop = rate, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.sent += 1
            tmp = self.jobs / f".job-{self.sent}"
            tmp.write_text("job\n")
            tmp.rename(self.jobs / "queue" / str(self.sent))
            time.sleep(1 / self.rate)

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join()

    def ledger(self, timeout=60):
        """{job: lines} once the queue is empty (or the timeout passed)."""
        wait_until(lambda: not any((self.jobs / "queue").iterdir()), timeout=timeout)
        done = {}
        for path in (self.jobs / "done").iterdir():
            done[int(path.name)] = path.read_text().splitlines()
        return done

    def assert_exactly_once(self, timeout=60):
        done = self.ledger(timeout)
        lost = [n for n in range(1, self.sent + 1) if n not in done]
        twice = {n: lines for n, lines in done.items() if len(lines) != 1}
        assert not lost and not twice, f"lost {lost[:20]} ({len(lost)}), twice {twice}"
        return done


def status_processes(status):
    return {c: json.dumps(v.get("processes")) for c, v in status.get("colours", {}).items()}


# Docker health for the worker types only: web is healthy at once, a worker
# never is (commit_with_healthcheck).
NEVER_HEALTHY = ('["/bin/busybox", "sh", "-c", "[ \\"$BLUEGREEN_PROCESS\\" = web ]"]')


def commit_with_healthcheck(app, version, check=NEVER_HEALTHY):
    """``commit`` with a HEALTHCHECK (exec form ``check``) in the image."""
    commit(app, version)
    dockerfile = app.work / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text() + "HEALTHCHECK --interval=1s --timeout=2s "
                          f"--retries=1 CMD {check}\n")
    app._git("commit", "-qa", "--amend", "--no-edit")
    app._git("push", "-qf", "origin", "HEAD:refs/heads/main")
    app.commits[version] = app._git("rev-parse", "HEAD")
    return app.commits[version]
