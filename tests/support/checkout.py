"""The checkout under test, its real `fab`, and the real binaries unit tests
need (they fail, never skip, when one is missing)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.configuration.env_layers import ENV_PREFIX


REPO = Path(__file__).resolve().parents[2]

# The fab of the interpreter running the tests, so a test never picks up
# another checkout's tool from PATH.
FAB = Path(sys.executable).parent / "fab"
SETUP_HINT = "run scripts/setup-host.sh (as root) to install it"


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
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
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
