"""The app's runtime env: APP_ENV_FILE (its ${VAR} filled from this machine's
environment) with SECRETS_CMD's output over it, as the bytes of app.env.

Pure: cli/secrets.py runs SECRETS_CMD and hands its output here. The result
lives in memory only (uploaded from there, never written to a local file),
and its values are what output.py masks.
"""

import io
import re

from dotenv.parser import parse_stream

from ..errors import BAD_INPUT, FAILED, Failure

# python-dotenv's own pattern: ${NAME} or ${NAME:-default}.
VARIABLE_RE = re.compile(r"\$\{(?P<name>[^}:]*)(?::-(?P<default>[^}]*))?\}")
KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def read_app_env_text(text, path, environ, filled=None):
    """{key: value} of APP_ENV_FILE's text, each ${VAR} filled as python-dotenv
    does (an earlier key of the file, else the environment; not inside single
    quotes), except that a VAR set nowhere is an error, not an empty string:
    a CI job that forgot to export a secret must not deploy an empty one.
    ``filled``: a set that gets every value taken from the environment (the
    CI job's secrets, which output masks)."""
    values = {}
    filled = set() if filled is None else filled
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise Failure(f"{path} has a line python-dotenv cannot read: "
                          f"{binding.original.string.strip()[:80]!r}",
                          "write KEY=value lines", code=BAD_INPUT)
        if binding.key is None:
            continue
        value = binding.value or ""
        if not _single_quoted(binding.original.string):
            value = VARIABLE_RE.sub(lambda m: _fill(m, values, environ, path, filled), value)
        values[binding.key] = value
    return values


def _single_quoted(line):
    rest = line.split("=", 1)[1].lstrip() if "=" in line else ""
    return rest.startswith("'")


def _fill(match, earlier, environ, path, filled):
    name, default = match.group("name"), match.group("default")
    if name in earlier:
        return earlier[name]
    if name in environ:
        filled.add(environ[name])
        return environ[name]
    if default is not None:
        return default
    raise Failure(f"{path} uses ${{{name}}}, but {name} is not set in this machine's "
                  "environment", f"export {name} before running fab (a CI job: add it to the "
                  "job's secrets), or write ${" + name + ":-default}", code=BAD_INPUT)


def parse_secrets(text):
    """SECRETS_CMD's output: dotenv lines taken literally (no ${VAR}); later
    lines win. Failure names a bad key or line, never a value."""
    values = {}
    for number, binding in enumerate(parse_stream(io.StringIO(text)), 1):
        if binding.error:
            raise Failure(f"SECRETS_CMD printed a line that is not KEY=value (line {number}; "
                          "its text is not shown: it may hold a secret)",
                          "make it print dotenv lines only (KEY=value)")
        if binding.key is None:
            continue
        values[binding.key] = binding.value or ""
    return values


def merged_app_env(file_values, secrets):
    """SECRETS_CMD's keys win over APP_ENV_FILE's; each value checked to fit
    app.env's one line per key."""
    merged = {**file_values, **secrets}
    for key, value in merged.items():
        source = "SECRETS_CMD" if key in secrets else "APP_ENV_FILE"
        if not KEY_RE.fullmatch(key):
            raise Failure(f"{source} gives a variable named {key!r}, which cannot be "
                          "an environment variable", "use letters, digits and _")
        if "\n" in value or "\r" in value or "\x00" in value:
            raise Failure(f"{source} gives {key} a value over several lines (not shown)",
                          "app.env holds one line per key: encode the value "
                          "(base64, say) and decode it in the app", code=FAILED)
    return merged


def render_app_env(values):
    """app.env's bytes: plain KEY=value lines, one per key (compose reads it
    with `format: raw`, so nothing in a value is expanded or unquoted)."""
    return "".join(f"{key}={value}\n" for key, value in values.items()).encode()


def secret_values(values):
    """Of these secret values, those output can mask: long enough not to mask
    ordinary text (a one-letter value would turn every `a` into ***)."""
    return {v for v in values if len(v) >= 4}
