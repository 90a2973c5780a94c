"""Releases that fail: the health gate, PRE_SWITCH_CMD, nginx -t, and
rollbacks to a colour that cannot serve. Every one exits 1, leaves the live
colour serving, records the failure with its phase, and drops the lock.

One project lives for the whole module (HEALTH_TIMEOUT 4 s); each test
starts from whatever is live and ends with a healthy live colour.
"""

import pytest

from loophost import docker
from released import (container_states, fab, history_json, module_project, output,
                      serves, status_json, summary_json, version)

HEALTH_TIMEOUT = 4


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, loophost):
    """A project after `fab setup` (v1 live in blue), with a short health gate."""
    for project in module_project(request, tmp_path_factory, loophost,
                                  HEALTH_TIMEOUT=HEALTH_TIMEOUT):
        fab(project, "setup")
        yield project


def other(colour):
    return "green" if colour == "blue" else "blue"


class Snapshot:
    """What is live before a failing task, to compare after it."""

    def __init__(self, project):
        self.status = status_json(project)
        self.live = self.status["live"]
        self.idle = other(self.live)
        self.label = version(project)
        self.state = (project.deploy_dir / "state.json").read_bytes()
        self.nginx = project.nginx_file.read_bytes()
        self.history = len(history_json(project))

    def unchanged(self, project):
        """Nothing live moved: same colour serving the same version, same files."""
        serves(project, self.label, colour=self.live)
        now = status_json(project)
        assert now["live"] == self.live
        assert now["colours"][self.live]["commit"] == self.status["colours"][self.live]["commit"]
        assert now["colours"][self.live]["healthy"] is True
        assert (project.deploy_dir / "state.json").read_bytes() == self.state
        assert project.nginx_file.read_bytes() == self.nginx
        assert not (project.deploy_dir / ".lock").exists(), "the lock was not released"
        return now

    def failure(self, project, phase, commit=None):
        """The one history entry the attempt added."""
        entries = history_json(project)
        assert len(entries) == self.history + 1, entries[self.history:]
        last = entries[-1]
        assert (last["result"], last["phase"], last["from"], last["to"]) == \
            ("failed", phase, self.live, self.idle), last
        if commit:
            assert last["commit"] == commit
        assert last["error"]
        return last


EXPECTED = {
    "crash": "is not healthy: its container",  # seen exiting, or restarting
    "http500": "HTTP 500",
    "hang": "no answer within",  # it accepts, then never answers
}


def health_seconds(out):
    """How long the health phase took, from its phase line."""
    for line in out.splitlines():
        words = line.split()
        if words[1:2] == ["health"] and words[2].endswith("s"):
            return float(words[2][:-1])
    raise AssertionError(f"no health phase line in:\n{out}")


@pytest.mark.parametrize("kind", ["crash", "http500", "hang"])
def test_a_release_that_fails_its_health_gate_changes_nothing_live(shared_project, kind):
    p = shared_project
    before = Snapshot(p)
    # One of them comes from a branch named on the command line: a failed
    # release must not record it as the colour's branch (state.json is
    # compared byte for byte below).
    branch = "bad-branch" if kind == "http500" else "main"
    sha = p.app.commit(f"bad-{kind}", kind=kind, branch=branch)

    r = fab(p, "release", *(["--branch", branch] if branch != "main" else []), code=1)
    out = output(r)
    assert f"{before.idle} did not pass the health check" in out or \
        f"{before.idle} is not healthy" in out, out
    assert EXPECTED[kind] in out, out
    # The target's last log lines are shown, and where to read the rest.
    assert f"last log lines of {before.idle}" in out
    assert f"bad-{kind} ({kind}) starting on port" in out
    assert f"logs --colour {before.idle}" in out
    gate = health_seconds(out)
    if kind == "crash":
        # A container that exits is noticed without waiting out the timeout.
        assert gate < HEALTH_TIMEOUT, out
    else:
        assert gate >= HEALTH_TIMEOUT - 1, out  # the gate gives up an interval early

    now = before.unchanged(p)
    entry = before.failure(p, "health", commit=sha)
    assert entry["branch"] == branch

    failed = now["colours"][before.idle]
    assert failed["role"] == "failed", failed
    assert failed["last_failure"]["phase"] == "health"
    assert failed["last_failure"]["commit"] == sha
    assert failed["healthy"] is False

    # Never released before this attempt: stopped again, and its logs stay readable.
    assert container_states(p)[before.idle] == "exited"
    logs = fab(p, "logs", "--colour", before.idle).stdout
    assert f"bad-{kind} ({kind}) starting on port" in logs

    if kind == "crash":  # once is enough for what does not depend on the kind
        assert f"{before.idle}: last release failed" in fab(p, "status").stdout
        # Nothing to roll back to: the failed colour is not running.
        r = fab(p, "rollback", code=1)
        assert "not running" in output(r)
        before.unchanged(p)


def test_rollback_refuses_a_colour_that_runs_but_is_unhealthy(shared_project):
    p = shared_project
    live = status_json(p)["live"]
    p.app.commit("v2")
    fab(p, "release")
    serves(p, "v2", colour=other(live))

    # The previous colour still runs, but its health path now answers 404.
    container = f"{p.name}-{live}-1"
    docker("exec", container, "rm", "/www/health", check=True)
    try:
        before = Snapshot(p)
        assert before.idle == live
        r = fab(p, "rollback", code=1)
        assert f"{live} is not healthy" in output(r) and "404" in output(r)
        before.unchanged(p)
        before.failure(p, "health")
        r = fab(p, "switch", "--to", live, code=1)
        assert "not healthy" in output(r)
    finally:
        docker("exec", container, "sh", "-c", "echo ok > /www/health", check=True)
    serves(p, "v2", colour=other(live))


def test_a_failing_pre_switch_cmd_aborts_before_the_switch(shared_project):
    p = shared_project
    before = Snapshot(p)
    p.app.commit("v3")
    p.set(PRE_SWITCH_CMD="echo migrating the schema; exit 7")
    try:
        r = fab(p, "release", code=1)
    finally:
        p.set(PRE_SWITCH_CMD=None)
    out = output(r)
    assert "migrating the schema" in out  # its output is shown
    assert "PRE_SWITCH_CMD failed" in out and "exit 7" in out
    before.unchanged(p)
    before.failure(p, "pre-switch")
    # The idle colour runs its previous release again: the rollback target.
    assert container_states(p)[before.idle] == "running"
    assert f"{before.idle} runs its previous release" in out


def test_a_pre_switch_cmd_runs_inside_the_new_colour_before_the_switch(shared_project):
    p = shared_project
    before = Snapshot(p)
    p.app.commit("v4")
    # Records which container it ran in, and that the old colour still
    # served at that moment (nginx had not been switched yet).
    p.set(PRE_SWITCH_CMD='mkdir -p /tmp && echo "$BLUEGREEN_COLOUR" > /tmp/migrated')
    try:
        fab(p, "release")
    finally:
        p.set(PRE_SWITCH_CMD=None)
    serves(p, "v4", colour=before.idle)
    r = docker("exec", f"{p.name}-{before.idle}-1", "cat", "/tmp/migrated")
    assert r.returncode == 0 and r.stdout.strip() == before.idle, r
    r = docker("exec", f"{p.name}-{before.live}-1", "cat", "/tmp/migrated")
    assert r.returncode != 0  # not in the old colour


def test_an_nginx_file_that_fails_nginx_t_is_rolled_back_byte_for_byte(shared_project):
    p = shared_project
    from loophost import free_port

    before = Snapshot(p)
    p.app.commit("v5")
    p.set(SSL_CERT_FILE="/nonexistent/bluegreen/cert.pem",
          SSL_KEY_FILE="/nonexistent/bluegreen/key.pem", SSL_PORT=free_port())
    try:
        r = fab(p, "release", "--json", code=1)
    finally:
        p.set(SSL_CERT_FILE=None, SSL_KEY_FILE=None, SSL_PORT=None)
    out = output(r)
    summary = summary_json(r)  # a machine reading stdout learns why, too
    assert (summary["result"], summary["code"]) == ("failed", 1)
    assert "nginx" in summary["error"]
    assert "nginx" in out and "old one is back in place" in out
    assert "cert.pem" in out  # nginx's own complaint names the file
    before.unchanged(p)  # includes: the nginx file is back byte for byte
    before.failure(p, "switch")
    leftovers = [f.name for f in p.nginx_file.parent.iterdir()
                 if f.name.startswith(p.name) and f.name != p.nginx_file.name]
    assert leftovers == []
    # With the setting fixed, the same commit releases.
    fab(p, "release")
    serves(p, "v5", colour=before.idle)


def test_a_state_json_that_cannot_be_written_fails_the_task_and_switches_back(shared_project):
    p = shared_project
    p.app.commit("v6")
    fab(p, "release")  # both colours run: a rollback has somewhere to go
    before = Snapshot(p)
    p.app.commit("v7")
    # state.json is written to state.json.tmp, then renamed: a directory in
    # that place makes the write fail as a full disk would (root ignores modes).
    blocker = p.deploy_dir / "state.json.tmp"
    blocker.mkdir()
    try:
        r = fab(p, "rollback", code=1)
        out = output(r)
        assert f"could not write {p.deploy_dir}/state.json" in out
        assert f"switching back to {before.live}" in out
        before.unchanged(p)  # the old colour serves, the old files are in place
        before.failure(p, "record")  # no "ok" entry for a switch that did not stick

        before = Snapshot(p)
        r = fab(p, "release", code=1)
        assert f"could not write {p.deploy_dir}/state.json" in output(r)
        before.unchanged(p)
        before.failure(p, "record")

        r = fab(p, "repair", code=1)
        assert "could not write" in output(r) and "rebuilt" not in output(r)
        before.unchanged(p)
    finally:
        blocker.rmdir()
    fab(p, "release")
    serves(p, "v7", colour=before.idle)
