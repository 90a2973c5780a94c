"""The layers settings come from: a .env file and the BLUEGREEN_* environment.

settings.py merges them (with hosts.yml's env: and the task's flags) and
checks every value.
"""

import functools
import io
import os
from dataclasses import dataclass

from dotenv import dotenv_values

from ..errors import BAD_INPUT, Failure

ENV_PREFIX = "BLUEGREEN_"
# Where the files come from; these two names are not settings of their own.
ENV_FILE_VAR = "BLUEGREEN_ENV_FILE"
HOSTS_FILE_VAR = "BLUEGREEN_HOSTS_FILE"
# What a hook's environment holds (cli/hooks.py): no key may take these
# names, so a hook that runs `fab` again is not stopped by an unknown key.
HOOK_VARS = frozenset(f"{ENV_PREFIX}{name}" for name in (
    "TASK", "HOSTS", "APP", "PERFORMER", "COMMIT", "BRANCH", "COLOUR", "PREVIOUS_COLOUR",
    "SECONDS", "EXIT_CODE", "SUMMARY"))


@dataclass
class Layer:
    """One source of values: its name for error messages and its values."""

    origin: str
    values: dict


def read_env_file(path):
    """The .env layer; a missing file is an empty layer."""
    if not path or not os.path.exists(path):
        return Layer(f".env ({path})", {})
    if not os.path.isfile(path):
        raise Failure(f"{path} is not a file", f"point {ENV_FILE_VAR} at your .env file",
                      code=BAD_INPUT)
    # No ${VAR} interpolation: it would pull plain environment names (the
    # machine's SSL_CERT_FILE) into settings, and APP_CMD's `${PORT}` is for
    # the container's shell, not for this machine's environment.
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise Failure(f"{path} is not UTF-8 text (byte {exc.start})",
                      "save the .env file as UTF-8", code=BAD_INPUT) from None
    return Layer(f".env ({path})", dict(_parse_env(text)))


@functools.lru_cache(maxsize=4)
def _parse_env(text):
    """The .env text's values, parsed once per content: every host of a run
    reads the same file (its parse is most of a host's settings)."""
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return tuple((k, "" if v is None else v) for k, v in values.items())


def environ_layer(environ):
    values = {}
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX) and name not in (ENV_FILE_VAR, HOSTS_FILE_VAR) \
                and name not in HOOK_VARS:
            values[name[len(ENV_PREFIX):]] = value
    return Layer("the environment (BLUEGREEN_{key})", values)
