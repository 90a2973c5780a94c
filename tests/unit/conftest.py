"""Helpers for the pure unit tests: settings from plain dicts, real binaries."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The checkout under test, whether or not it is installed in this interpreter.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tasks import config as cfg  # noqa: E402
# The fab of the interpreter running the tests, so a test never picks up
# another checkout's tool from PATH.
FAB = Path(sys.executable).parent / "fab"
SETUP_HINT = "run scripts/setup-host.sh (as root) to install it"


def make_settings(require_repo=False, **values):
    """Settings from built-in defaults plus ``values`` (as if from .env)."""
    layer = cfg.Layer(".env (test)", {k: str(v) for k, v in values.items()})
    return cfg.check_all(cfg.merge_layers([layer]), require_repo=require_repo)


@pytest.fixture
def settings():
    """A factory: settings(APP_NAME="shop", SSL_CERT_FILE=...)."""
    return make_settings


def require_binary(name, *candidates):
    """The path of a tool the real checks need; FAIL (not skip) when missing."""
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or (candidate if os.path.isfile(candidate)
                                            and os.access(candidate, os.X_OK) else None)
        if found:
            return found
    pytest.fail(f"{name} is not installed: {SETUP_HINT}", pytrace=False)


def clean_environ(**extra):
    """os.environ without BLUEGREEN_* variables (the caller's own), plus extra.

    Plain names such as SSL_CERT_FILE stay: the tool must ignore them.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(cfg.ENV_PREFIX)}
    env.update(extra)
    return env


def run_fab(args, cwd, env=None, timeout=60):
    """Run the real `fab -r REPO ...` in ``cwd``; returns CompletedProcess."""
    if not FAB.exists():
        pytest.fail(f"{FAB} not found: install the project into this interpreter's "
                    f"environment ({SETUP_HINT})", pytrace=False)
    return subprocess.run(
        [str(FAB), "-r", str(REPO), *args], cwd=str(cwd),
        env=clean_environ() if env is None else env,
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# --- steps of the remote shell, run by a local one ---------------------------------

# A token like the one RemoteShell draws (secrets.token_hex(8)); samples and
# local runs print their markers with it.
TOKEN = "0123456789abcdef"
M = f"::{TOKEN}"


def read_step(stdout, code=0, stderr="", token=TOKEN):
    """A StepResult from a step's output, as RemoteShell reads it.

    ``stdout`` is what the step printed (markers as ``{M} key value``); the
    end markers that step_input prints after it are added here.
    """
    from tasks.shell import StepReader

    reader = StepReader(token)
    out = f"{stdout}\n::{token} exit {code}\n"
    err = f"{stderr}\n::{token} exit\n"
    for stream, text in (("stdout", out), ("stderr", err)):
        for line in text.split("\n")[:-1]:
            reader.feed(stream, line)
    assert reader.done
    return reader.result()


def parse_streams(stdout, stderr, token=TOKEN):
    """Feed a whole run's stdout and stderr to StepReaders, one per step."""
    from tasks.shell import StepReader

    results, readers = [], []
    out_lines = stdout.split("\n")[:-1] if stdout.endswith("\n") else stdout.split("\n")
    err_lines = stderr.split("\n")[:-1] if stderr.endswith("\n") else stderr.split("\n")
    # stdout and stderr are separate pipes: read each stream step by step.
    for stream, lines in (("stdout", out_lines), ("stderr", err_lines)):
        index = 0
        for line in lines:
            while len(readers) <= index:
                readers.append(StepReader(token))
            reader = readers[index]
            reader.feed(stream, line)
            ended = (reader.code is not None) if stream == "stdout" else reader.stderr_done
            if ended:
                index += 1
    for reader in readers:
        results.append(reader.result() if reader.done else None)
    return results


def run_steps(scripts, cwd=None, env=None, timeout=30):
    """Run scripts as the steps of one local `sh -s`, the way RemoteShell does.

    The shell gets M in its environment (RemoteShell exports it first) and
    each script wrapped by step_input. Returns (StepResults, CompletedProcess).
    """
    from tasks.shell import step_input

    env = dict(os.environ if env is None else env)
    env["M"] = M
    text = "".join(step_input(script) for script in scripts)
    proc = subprocess.run(["/bin/sh", "-s"], input=text, cwd=None if cwd is None else str(cwd),
                          env=env, capture_output=True, text=True, timeout=timeout)
    return parse_streams(proc.stdout, proc.stderr), proc


def run_step(script, cwd=None, env=None, timeout=30):
    """One script as one step of a local `sh -s` -> StepResult."""
    results, proc = run_steps([script], cwd=cwd, env=env, timeout=timeout)
    assert len(results) == 1 and results[0] is not None, (proc.stdout, proc.stderr)
    return results[0]
