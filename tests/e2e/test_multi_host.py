"""Several hosts: rolling releases stop at the first failing host and say
which hosts were done, failed and not started; --parallel releases them at
once; status prints one table across hosts.

Three loopback hosts stand in for web1, web2 and web3: the session's
`loophost` and two more, each with its own sshd, host key, nginx prefix,
DEPLOY_DIR and ports. They share this machine's Docker daemon, so each host
gets its own APP_NAME (on real machines the name would be the same).
"""

import json
from datetime import datetime

import pytest
import yaml

import loophost as lh  # `loophost` is the fixture
from traffic import settled

HOSTS = ("web1", "web2", "web3")


@pytest.fixture(scope="module")
def more_hosts(tmp_path_factory, loophost):
    """Two more LoopHosts for this module: web2 and web3."""
    started = []
    try:
        for name in HOSTS[1:]:
            started.append(lh.LoopHost(tmp_path_factory.mktemp(f"loophost-{name}")).start())
    except RuntimeError as e:
        for host in started:
            host.stop()
        pytest.fail(f"could not start a second loopback host: {e}", pytrace=False)
    yield dict(zip(HOSTS[1:], started))
    for host in started:
        host.stop()


class Fleet:
    """The project's app on web1..web3, named in one hosts.yml (default_hosts: all)."""

    def __init__(self, project, more_hosts):
        self.project = project
        self.hosts = {"web1": project.host, **more_hosts}
        self.apps = {"web1": project.name}
        self.deploy_dirs = {"web1": project.deploy_dir}
        self.env = {"web1": {}}
        for name in HOSTS[1:]:
            app = f"{project.name}-{name}"
            lh.claim_project(app)
            public, blue, green = lh.free_ports(3)
            self.apps[name] = app
            self.deploy_dirs[name] = project.base / "srv" / app
            self.env[name] = {"APP_NAME": app, "DEPLOY_DIR": str(self.deploy_dirs[name]),
                              **self.hosts[name].env_settings(), "PUBLIC_PORT": public,
                              "BLUE_PORT": blue, "GREEN_PORT": green}
        self.write()

    def write(self, **overrides):
        """Rewrite hosts.yml; overrides: {host: {KEY: value}} added to its env."""
        hosts = {}
        for name in HOSTS:
            entry = self.hosts[name].hosts_entry(name)[name]
            env = {**self.env[name], **overrides.get(name, {})}
            if env:
                entry["env"] = env
            hosts[name] = entry
        self.project.hosts_file.write_text(yaml.safe_dump(
            {"hosts": hosts, "default_hosts": list(HOSTS)}, sort_keys=False))

    def public_port(self, name):
        return int(self.env[name].get("PUBLIC_PORT", self.project.public_port))

    def version(self, name, colour=None):
        """(status, colour, version) on the host's public port; with colour,
        once nginx's old workers have stopped answering (traffic.settled)."""
        status, headers, body = settled(
            lambda: lh.http_get(self.public_port(name), "/version"),
            lambda s, h, b: colour is None or h.get("x-deploy-colour") == colour)
        return status, headers.get("x-deploy-colour"), body.strip()

    def history(self, name):
        path = self.deploy_dirs[name] / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def remove(self):
        for name in HOSTS[1:]:
            lh.remove_compose_projects(name=self.apps[name])
            host = self.hosts[name]
            (host.conf_dir / f"{self.apps[name]}.conf").unlink(missing_ok=True)
            lh.release_project(self.apps[name])


@pytest.fixture
def fleet(project, more_hosts):
    fleet = Fleet(project, more_hosts)
    yield fleet
    fleet.remove()


def summary_line(result):
    lines = [line for line in (result.stdout + result.stderr).splitlines()
             if line.startswith("release: done:")]
    assert len(lines) == 1, result.stdout + result.stderr
    return lines[0]


def test_rolling_stops_at_the_first_failure_parallel_goes_at_once_status_is_one_table(fleet):
    p, app = fleet.project, fleet.project.app
    app.commit("v1")
    p.fab("setup", check=0)  # default_hosts: all three, one after another
    for name in HOSTS:
        assert fleet.version(name, "blue") == (200, "blue", "v1"), name

    # web2 cannot fetch its repository: web1 is released, web3 never started.
    fleet.write(web2={"GIT_REPO": str(p.base / "missing.git")})
    web3_before = fleet.history("web3")
    app.commit("v2")
    result = p.fab("release", check=1)
    out = result.stdout + result.stderr
    assert summary_line(result) == "release: done: web1; failed: web2; not started: web3", out
    assert "web2  git" in out and "FAILED" in out
    assert "release failed on web2" in result.stderr
    assert not any(line.startswith("web3 ") for line in out.splitlines()), out
    assert fleet.version("web1", "green") == (200, "green", "v2")
    assert fleet.version("web2", "blue") == (200, "blue", "v1")
    assert fleet.version("web3", "blue") == (200, "blue", "v1")
    assert fleet.history("web3") == web3_before
    assert fleet.history("web2")[-1]["result"] == "failed"

    # The same with -H: the order given is the order released.
    result = p.fab("-H", "web2,web1", "release", check=1)
    assert summary_line(result) == "release: done: -; failed: web2; not started: web1"

    # --parallel: the failing host does not hold the others back. (--force: web1
    # runs v2 already, which alone would be nothing to release there.)
    result = p.fab("release", "--parallel", "--force", check=1)
    assert summary_line(result) == "release: done: web1, web3; failed: web2; not started: -"
    assert fleet.version("web1", "blue") == (200, "blue", "v2")
    assert fleet.version("web3", "green") == (200, "green", "v2")

    # Fixed: all three at once, concurrently: their releases overlap in time.
    fleet.write()
    app.commit("v3")
    result = p.fab("-H", "web1,web2,web3", "release", "--parallel", "--json", check=0)
    summaries = [json.loads(line) for line in result.stdout.splitlines()]
    assert [s["host"] for s in summaries] == list(HOSTS)
    assert all(s["result"] == "ok" and s["commit"] == app.commits["v3"] for s in summaries)
    assert summary_line(result) == "release: done: web1, web2, web3; failed: -; not started: -"
    # Each release ran from (its recorded time - its seconds) to its recorded
    # time: run concurrently, one instant lies in all three (history's times
    # are whole seconds, hence the one second of slack).
    ends = [datetime.fromisoformat(fleet.history(s["host"])[-1]["time"]).timestamp()
            for s in summaries]
    starts = [end - s["seconds"] for end, s in zip(ends, summaries)]
    assert max(starts) <= min(ends) + 1, list(zip(HOSTS, starts, ends))
    expected = [(200, "green", "v3"), (200, "green", "v3"), (200, "blue", "v3")]
    assert [fleet.version(n, e[1]) for n, e in zip(HOSTS, expected)] == expected

    # status: one table, a row per host and colour, in host order.
    text = p.fab("status", check=0).stdout
    rows = [line.split() for line in text.splitlines()]
    assert rows[0][:4] == ["host", "app", "colour", "role"], text
    table = [(r[0], r[1], r[2], r[3]) for r in rows[1:7]]
    assert table == [
        ("web1", fleet.apps["web1"], "blue", "idle"), ("web1", fleet.apps["web1"], "green", "live"),
        ("web2", fleet.apps["web2"], "blue", "idle"), ("web2", fleet.apps["web2"], "green", "live"),
        ("web3", fleet.apps["web3"], "blue", "live"), ("web3", fleet.apps["web3"], "green", "idle"),
    ], text
    assert all(r[5] == app.commits["v3"][:12] for r in rows[1:7] if r[3] == "live"), text
    assert "locks: free on every host" in text
    lines = p.fab("status", "--json", check=0).stdout.splitlines()
    assert [json.loads(line)["host"] for line in lines] == list(HOSTS)

    # A host that does not answer still leaves the others' rows in the table.
    gone = f"root@127.0.0.1:{lh.free_port()}"
    result = p.fab("-H", f"web1,{gone}", "status", check=3)
    rows = [line.split() for line in result.stdout.splitlines()]
    assert [r[:4] for r in rows[1:4]] == [["web1", fleet.apps["web1"], "blue", "idle"],
                                          ["web1", fleet.apps["web1"], "green", "live"],
                                          [gone, "-", "-", "unreachable"]], result.stdout
    assert f"{gone}: " in result.stdout
    assert "locks: free on every host that answered" in result.stdout
