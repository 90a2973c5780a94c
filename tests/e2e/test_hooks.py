"""Hooks and secrets end to end: pre-/post-TASK and `failed` on this machine,
SECRETS_CMD and ${VAR} in APP_ENV_FILE reaching the app and nothing else.

One host of its own (its sshd log proves that a stopped task never logged
in) and one project for the module; the tests run in order.
"""

import base64
import json
import os
import secrets
import tempfile
import threading
import time

import pytest

import loophost as lh
from released import fab, history_json, output, status_json, summary_json, wait_until
from support.project import Project

pytestmark = pytest.mark.e2e

VAULT = f"vault-{secrets.token_hex(10)}"  # what SECRETS_CMD prints (encoded in its env)
CI = f"ci-{secrets.token_hex(10)}"  # exported in fab's environment, ${BGTEST_CI_TOKEN}
DUMP = '#!/bin/sh\nenv | sort > "$HOOK_OUT/$(basename "$0").env"\n' \
       '[ -n "${BLUEGREEN_SUMMARY:-}" ] && cp "$BLUEGREEN_SUMMARY" "$HOOK_OUT/$(basename "$0").jsonl"\n' \
       'echo "ran for $BLUEGREEN_TASK"\n'


@pytest.fixture(scope="module")
def host(tmp_path_factory, _clean_machine):
    h = lh.LoopHost(tmp_path_factory.mktemp("hookhost"))
    h.start()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def proj(tmp_path_factory, host):
    base = tmp_path_factory.mktemp("hooks")
    app = lh.SampleApp(base / "sample-app")
    app.commit("v1")
    p = Project(base / "p", host, app)
    (p.dir / "app.env").write_text("PLAIN=hello\nCI_TOKEN=${BGTEST_CI_TOKEN}\n")
    p.set(APP_ENV_FILE="app.env", HOOK_TIMEOUT="2",
          SECRETS_CMD='printf "VAULT_SECRET=%s\\n" "$(printf %s "$BGTEST_VAULT_B64" | base64 -d)"',
          PRE_SWITCH_CMD='echo "$VAULT_SECRET $CI_TOKEN" > /pre_switch_saw')
    p.hooks = p.dir / ".bluegreen" / "hooks"
    p.hooks.mkdir(parents=True)
    p.out = base / "hook-out"
    p.out.mkdir()
    p.runs = []  # every fab result of the module: no output mode may show a secret
    yield p
    p.remove(keep_dirs=True)


def run(p, *args, code=0, env=None):
    env = {"BGTEST_VAULT_B64": base64.b64encode(VAULT.encode()).decode(),
           "BGTEST_CI_TOKEN": CI, "HOOK_OUT": str(p.out), **(env or {})}
    r = fab(p, *args, code=code, env=env)
    p.runs.append(r)
    return r


def hook(p, name, body=DUMP):
    path = p.hooks / name
    path.write_text(body)
    path.chmod(0o755)


def hook_env(p, name):
    return dict(line.split("=", 1) for line in (p.out / f"{name}.env").read_text().splitlines()
                if "=" in line)


def logins(host):
    return host.sshd_log.read_text(errors="replace").count("Accepted publickey")


def test_nothing_connects_when_a_hook_or_the_secrets_stop_the_task(proj, host):
    before = logins(host)
    (proj.hooks / "pre-setup").write_text("#!/bin/sh\nexit 0\n")  # not executable
    r = run(proj, "setup", code=2)
    assert "pre-setup" in output(r) and "chmod +x" in output(r)
    (proj.hooks / "pre-setup").unlink()

    hook(proj, "pre-release", "#!/bin/sh\necho \"no deploys on $BLUEGREEN_APP today\"\nexit 1\n")
    r = run(proj, "release", code=1)
    assert f"hook pre-release: no deploys on {proj.name} today" in r.stderr
    assert "before connecting" in output(r)
    (proj.hooks / "pre-release").unlink()

    r = run(proj, "setup", code=1, env={"BLUEGREEN_SECRETS_CMD":
                                        "echo TOKEN=leaked-stdout; echo vault sealed >&2; exit 5"})
    assert "SECRETS_CMD" in output(r) and "vault sealed" in output(r)
    assert "leaked-stdout" not in output(r)

    r = run(proj, "setup", code=2, env={"BGTEST_CI_TOKEN": None})
    assert "BGTEST_CI_TOKEN" in output(r) and "app.env" in output(r)
    time.sleep(0.5)  # sshd writes its log line after the handshake
    assert logins(host) == before, "a stopped task logged in to the host"


def test_a_release_gets_its_secrets_and_hooks_see_what_status_shows(proj):
    run(proj, "setup")
    proj.app.commit("v2")
    for name in ("pre-release", "post-release", "failed"):
        hook(proj, name)
    r = run(proj, "release", "--json", "--verbose")
    summary = summary_json(r)
    assert [h["name"] for h in summary["hooks"]] == ["pre-release", "post-release"]
    assert all(h["result"] == "ok" for h in summary["hooks"])
    assert "hook post-release: ran for release" in r.stderr

    status = status_json(proj)
    live = status["colours"][status["live"]]
    env = hook_env(proj, "post-release")
    assert env["BLUEGREEN_TASK"] == "release" and env["BLUEGREEN_HOSTS"] == "testhost"
    assert env["BLUEGREEN_APP"] == proj.name and env["BLUEGREEN_EXIT_CODE"] == "0"
    assert env["BLUEGREEN_COMMIT"] == live["commit"] == proj.app.commits["v2"]
    assert env["BLUEGREEN_COLOUR"] == status["live"] == "green"
    assert env["BLUEGREEN_PREVIOUS_COLOUR"] == "blue"
    assert env["BLUEGREEN_BRANCH"] == live["branch"] == "main"
    assert env["BLUEGREEN_PERFORMER"] == live["deployed_by"]
    assert float(env["BLUEGREEN_SECONDS"]) > 0
    assert not os.path.exists(env["BLUEGREEN_SUMMARY"])  # removed after the hook
    sent = [json.loads(line) for line in (proj.out / "post-release.jsonl").read_text().splitlines()]
    assert sent[0]["commit"] == live["commit"] and sent[0]["host"] == "testhost"
    pre = hook_env(proj, "pre-release")
    assert "BLUEGREEN_COMMIT" not in pre and pre["BLUEGREEN_PERFORMER"] == live["deployed_by"]
    assert not (proj.out / "failed.env").exists()

    container = f"{proj.name}-green-1"
    seen = lh.docker("exec", container, "/bin/busybox", "env").stdout
    assert f"VAULT_SECRET={VAULT}" in seen and f"CI_TOKEN={CI}" in seen and "PLAIN=hello" in seen
    saw = lh.docker("exec", container, "/bin/busybox", "cat", "/pre_switch_saw").stdout
    assert saw.split() == [VAULT, CI], "PRE_SWITCH_CMD did not get both secrets"


def test_failed_runs_after_a_failed_release_and_the_secret_is_masked(proj):
    proj.app.commit("v3")
    (proj.out / "failed.env").unlink(missing_ok=True)
    r = run(proj, "release", code=1, env={
        "BLUEGREEN_PRE_SWITCH_CMD": 'echo "migration saw $VAULT_SECRET"; exit 1'})
    assert "migration saw ***" in output(r), output(r)
    env = hook_env(proj, "failed")
    assert env["BLUEGREEN_TASK"] == "release" and env["BLUEGREEN_EXIT_CODE"] == "1"


def test_post_hook_failure_and_a_hung_hook_leave_the_exit_code(proj):
    hook(proj, "post-rollback", "#!/bin/sh\necho webhook down\nexit 3\n")
    r = run(proj, "rollback", "--json")
    summary = summary_json(r)
    assert summary["hooks"] == [{"name": "post-rollback", "result": "failed", "code": 3,
                                 "seconds": summary["hooks"][0]["seconds"]}]
    assert "hook post-rollback: webhook down" in r.stderr and "exit code (0) stands" in r.stderr

    child = proj.out / "hung-child"
    hook(proj, "post-switch", f"#!/bin/sh\nsleep 300 & echo $! > {child}\nsleep 300\n")
    started = time.monotonic()
    r = run(proj, "switch", "--to", "green")
    assert time.monotonic() - started < 60
    assert "hook post-switch: timed out" in r.stderr
    pid = int(child.read_text())
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 10), "the hook's child lives on"


def test_failed_runs_after_a_watch_reverts(proj):
    proj.app.commit("v4", kind="pages500")
    (proj.out / "failed.env").unlink(missing_ok=True)
    result = {}
    env = {"BLUEGREEN_WATCH_MIN_REQUESTS": "3", "BLUEGREEN_PRE_SWITCH_CMD": ""}
    t = threading.Thread(target=lambda: result.update(r=run(proj, "release", "--watch", "20",
                                                            code=1, env=env)))
    t.start()
    while t.is_alive():
        proj.get("/")
        time.sleep(0.1)
    t.join()
    assert "revert" in output(result["r"])
    env = hook_env(proj, "failed")
    assert env["BLUEGREEN_EXIT_CODE"] == "1" and env["BLUEGREEN_TASK"] == "release"


def test_the_secrets_are_nowhere_else(proj):
    for r in proj.runs:
        assert VAULT not in output(r) and CI not in output(r)
    for entry in history_json(proj):
        assert VAULT not in json.dumps(entry) and CI not in json.dumps(entry)
    assert VAULT not in (proj.deploy_dir / "history.jsonl").read_text()
    places = [proj.dir, proj.out, tempfile.gettempdir()]
    for top in places:
        for root, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if os.path.join(root, d) != str(proj.deploy_dir)]
            for name in files:
                path = os.path.join(root, name)
                try:
                    if os.path.islink(path) or os.path.getsize(path) > 5_000_000:
                        continue
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                assert VAULT.encode() not in data and CI.encode() not in data, path
