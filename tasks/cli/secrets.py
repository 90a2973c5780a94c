"""The run's app.env: APP_ENV_FILE and SECRETS_CMD, read once per run before
any connection, kept in memory, its secret values masked in all output.
"""

import os

from ..configuration.app_env import (merged_app_env, parse_secrets, read_app_env_text,
                                     render_app_env, secret_values)
from ..errors import BAD_INPUT, Failure
from ..output import hide
from .local_command import run_local


class AppEnvs:
    """app.env per (APP_ENV_FILE, SECRETS_CMD) of the run's hosts, each
    command run once however many hosts share it."""

    def __init__(self, config_dir, environ=None):
        self.config_dir = config_dir
        self.environ = os.environ if environ is None else environ
        self._outputs = {}  # SECRETS_CMD -> its values
        self._files = {}  # APP_ENV_FILE -> its values
        self.secrets = set()  # every secret value of the run (hooks never see them)

    def check_file(self, settings):
        """Read APP_ENV_FILE now (an unset ${VAR} is exit 2), before any hook."""
        if settings.app_env_file:
            self._file(settings.app_env_file)

    def for_settings(self, settings):
        """app.env's bytes for a host with these settings (None: it has none)."""
        if not settings.has_app_env:
            return None
        file_values = self._file(settings.app_env_file) if settings.app_env_file else {}
        secrets = self._secrets(settings) if settings.secrets_cmd else {}
        return render_app_env(merged_app_env(file_values, secrets))

    def _file(self, path):
        if path not in self._files:
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise Failure(f"APP_ENV_FILE {path} cannot be read: {exc}",
                              "make it a readable UTF-8 file of KEY=value lines",
                              code=BAD_INPUT) from None
            filled = set()
            self._files[path] = read_app_env_text(text, path, self.environ, filled)
            self._keep_secret(filled)
        return self._files[path]

    def _secrets(self, settings):
        command = settings.secrets_cmd
        if command not in self._outputs:
            self._outputs[command] = run_secrets_cmd(command, self.config_dir,
                                                     settings.hook_timeout, self.environ)
            self._keep_secret(self._outputs[command].values())
        return self._outputs[command]

    def _keep_secret(self, values):
        self.secrets.update(v for v in values if v)
        hide(secret_values(values))


def run_secrets_cmd(command, cwd, timeout, environ):
    """SECRETS_CMD's values; Failure (exit 1) naming it and showing its stderr,
    never its stdout."""
    try:
        result = run_local(["sh", "-c", command], cwd=cwd, env=dict(environ), timeout=timeout)
    except OSError as exc:
        raise Failure(f"SECRETS_CMD could not start: {exc}",
                      "check the command and the directory of your .env") from None
    stderr = result.stderr.decode("utf-8", "replace").strip()
    shown = ("; it said: " + stderr[-1500:]) if stderr else " (nothing on stderr)"
    if result.timed_out:
        raise Failure(f"SECRETS_CMD did not finish within HOOK_TIMEOUT ({timeout:g}s) and "
                      f"was stopped{shown}",
                      "check that it does not wait for a login or a prompt; nothing was changed")
    if result.code != 0:
        raise Failure(f"SECRETS_CMD failed (exit {result.code}){shown}",
                      "fix the command or sign in to your vault, then run again; "
                      "nothing was changed")
    try:
        text = result.stdout.decode("utf-8")
    except UnicodeDecodeError:
        raise Failure("SECRETS_CMD printed bytes that are not UTF-8 (not shown)",
                      "make it print KEY=value lines") from None
    return parse_secrets(text)
