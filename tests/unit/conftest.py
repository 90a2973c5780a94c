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
