"""Helpers for the release pipeline's e2e tests (test_release, test_failures,
test_lock, test_tasks): a project that lives for a whole test module, and
the checks every test makes of `fab`'s output.

A module-scoped project saves a setup (a build and a health gate) per test;
tests that need a pristine host use conftest's function-scoped `project`.
"""

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import loophost as lh
from support.project import Project, require_base_image

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
# Generous: other engineers run e2e tests on this 2-core machine at the same time.
FAB_TIMEOUT = 240


def module_project(request, tmp_path_factory, loophost, setup=False, kind="ok", slow=None,
                   **settings):
    """A Project with its own SampleApp ("v1" of ``kind`` on main), alive for the module.

    A generator for a module-scoped fixture: yields the project (set up, i.e.
    released into blue, when ``setup``), removes its containers, images,
    nginx file and directories afterwards.
    """
    if kind in lh.PYTHON_KINDS:
        require_base_image()
    base = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    app = lh.SampleApp(base / "sample-app")
    app.commit("v1", kind=kind, slow=slow)
    project = Project(base / "p", loophost, app)
    if settings:
        project.set(**settings)
    try:
        if setup:
            fab(project, "setup")
        yield project
    finally:
        project.remove()


def fab(project, *args, code=0, env=None, timeout=FAB_TIMEOUT):
    """Run `fab`, assert its exit code and that no traceback leaked out."""
    r = project.fab(*args, env=env, timeout=timeout, check=code)
    no_traceback(r)
    return r


def fab_background(project, *args, log):
    """Start `fab ARGS` in the project dir without waiting (a Popen); its
    stdout and stderr go to the file `log`."""
    cmd = [str(Path(sys.executable).parent / "fab"), "-r", str(REPO_ROOT), *map(str, args)]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=project.dir, env=project.child_env(), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)


@contextlib.contextmanager
def background(project, *args, log):
    """`fab ARGS` running in the background for the with-block; killed if
    the block leaves it running (a failed assertion, say)."""
    run = fab_background(project, *args, log=log)
    try:
        yield run
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def interrupt(run, log, once=None, timeout=60):
    """Ctrl-C a background fab (once ``once`` shows in its log, if given);
    returns its whole output."""
    if once is not None:
        assert wait_until(lambda: once in log.read_text() or run.poll() is not None,
                          timeout=timeout), log.read_text()
    assert run.poll() is None, log.read_text()
    run.send_signal(signal.SIGINT)
    run.wait(timeout=timeout)
    return log.read_text()


def no_traceback(result):
    both = result.stdout + result.stderr
    assert "Traceback" not in both, f"a traceback leaked:\n{both}"


def output(result):
    return result.stdout + result.stderr


def status_json(project):
    """The one JSON object `status --json` prints for the test host."""
    r = fab(project, "status", "--json")
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, r.stdout
    data = json.loads(lines[0])
    assert data["host"] == project.HOST_NAME
    return data


def history_json(project, *args):
    r = fab(project, "history", "--json", *args)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def summary_json(result):
    """The JSON summary `release --json` (or switch/rollback --json) prints on stdout."""
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout:\n{result.stdout}"
    return json.loads(lines[0])


def version(project, port=None):
    """The app's /version through PUBLIC_PORT (or a colour's own port)."""
    status, headers, body = project.get("/version", port=port)
    assert status == 200, (status, body)
    return body.strip()


def serves(project, label, colour=None, timeout=15):
    """Wait until PUBLIC_PORT answers /version with `label` (and the colour header)."""
    def ok(status, headers, body):
        return status == 200 and body.strip() == label and (
            colour is None or headers.get("x-deploy-colour") == colour)

    answer = project.wait_for(ok, timeout=timeout, path="/version")
    assert ok(*answer), f"wanted {label} from {colour or 'any colour'}, got {answer}"
    return answer


def state_file(project):
    return json.loads((project.deploy_dir / "state.json").read_text())


def container_states(project):
    """{service: state} of the project's containers."""
    return {c["service"]: c["state"] for c in project.containers()}


def wait_until(predicate, timeout=15, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)
