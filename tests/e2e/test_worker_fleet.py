"""Workers over several hosts, all or none (issue 32; SPEC "Several hosts in
one run" 3 and "Worker processes" 2): when one host's new workers do not
stay up, every host switches web back and keeps its old workers (the
stop-first clock started again), exit 1 naming the host.

The cheapest two hosts: two names for the session's loopback host, each
with its own APP_NAME, DEPLOY_DIR, ports and job directory (they share the
Docker daemon and nginx, as test_multi_host.py's hosts share the daemon).
"""

import json
import subprocess

import pytest
import yaml

import loophost as lh
from released import fab, module_project, output
from workerkit import FILES, PROCFILE, WORKER, assert_one_clock

pytestmark = pytest.mark.e2e

# The worker ends at once where its job directory says so (host two, v2).
CRASH_FILES = {**FILES, "worker.sh": WORKER.replace(
    "v=$(cat /app/VERSION)\n", "v=$(cat /app/VERSION)\n[ -e /jobs/crash-$v ] && exit 3\n")}


@pytest.fixture(scope="module")
def two(request, tmp_path_factory, loophost):
    """The module's project on hosts one and two (its .hosts: {host: (deploy_dir,
    app, jobs)}), v1 set up on both."""
    made = module_project(request, tmp_path_factory, loophost, WORKER_READY_SECONDS=1,
                          WORKER_STOP_TIMEOUT=2)
    p = next(made)
    app2 = f"{p.name}-two"
    lh.claim_project(app2)
    try:
        public, blue, green = lh.free_ports(3)
        hosts = {"one": (p.deploy_dir, p.name, p.base / "jobs-one"),
                 "two": (p.base / "srv" / app2, app2, p.base / "jobs-two")}
        env = {"one": {}, "two": {"APP_NAME": app2, "DEPLOY_DIR": str(hosts["two"][0]),
                                  "PUBLIC_PORT": public, "BLUE_PORT": blue,
                                  "GREEN_PORT": green}}
        entries = {}
        for name, (_, _, jobs) in hosts.items():
            jobs.mkdir()
            entries[name] = {**p.host.hosts_entry(name)[name],
                             "env": {**env[name], "VOLUMES": f"{jobs}:/jobs"}}
        p.hosts_file.write_text(yaml.safe_dump({"hosts": entries, "default_hosts": ["one", "two"]}))
        p.hosts = hosts
        p.app.commit("v1", procfile=PROCFILE, files=CRASH_FILES)
        fab(p, "setup")
        yield p
    finally:
        lh.remove_compose_projects(name=app2)
        (p.host.conf_dir / f"{app2}.conf").unlink(missing_ok=True)
        lh.release_project(app2)
        made.close()  # the module project's own clean-up


def running_workers(app):
    """{(colour, type)} of the app's running worker containers."""
    out = subprocess.run(["docker", "ps", "--filter", f"label=bluegreen.app={app}", "--format",
                          '{{.Label "bluegreen.colour"}} {{.Label "bluegreen.process"}}'],
                         capture_output=True, text=True, check=True).stdout
    return {tuple(line.split()) for line in out.splitlines() if line.split()[1:] != ["web"]}


def test_one_hosts_failed_workers_put_every_host_back(two):
    for name, (deploy_dir, app, _) in two.hosts.items():
        assert running_workers(app) == {("blue", "worker"), ("blue", "clock")}, name
    (two.hosts["two"][2] / "crash-v2").touch()
    two.app.commit("v2", procfile=PROCFILE, files=CRASH_FILES)
    r = fab(two, "release", code=1)
    assert "two" in output(r) and "did not stay up" in output(r), output(r)
    for name, (deploy_dir, app, jobs) in two.hosts.items():
        state = json.loads((deploy_dir / "state.json").read_text())
        assert state["live"] == "blue" and state["workers"] == "blue", (name, state)
        assert running_workers(app) == {("blue", "worker"), ("blue", "clock")}, name
        assert_one_clock(jobs)  # the clock stopped for the hand-over, then started again
    last = [json.loads(line) for line in
            (two.hosts["one"][0] / "history.jsonl").read_text().splitlines()][-1]
    assert last["result"] != "ok" and last.get("caused_by") == "two", last
