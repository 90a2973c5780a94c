"""Hooks: executables in HOOKS_DIR run on this machine once per run.

`pre-TASK` before any connection (a non-zero exit stops the task: exit 1,
nothing changed), `post-TASK` after it, and `failed` after a task that
changes hosts failed or was reverted once connected (exit 1 or 3). A
`post-` or `failed` hook's failure is said and recorded (`hooks` in --json),
and the task's exit code stands. docs/hooks.md is the operator's page.
"""

import json as jsonlib
import os
import sys
import tempfile
import time

from ..configuration.env_layers import ENV_FILE_VAR, HOOK_VARS
from ..errors import BAD_INPUT, FAILED, NO_CONNECTION, Failure
from ..model.lock_owner import describe_who
from ..output import emit, masked
from .local_command import run_local

# Task name (as on_hosts knows it) -> the TASK part of its hooks' names.
HOOK_TASKS = {"setup": "setup", "release": "release", "promote": "promote",
              "rollback": "rollback", "switch": "switch", "maintenance": "maintenance",
              "exec": "exec"}
# A task whose failure runs `failed` (exec's own exit code is its command's).
FAILED_HOOK_TASKS = frozenset(HOOK_TASKS) - {"exec"}


def config_dir(environ=None):
    """The directory of the .env in use: HOOKS_DIR and SECRETS_CMD start there."""
    environ = os.environ if environ is None else environ
    return os.path.dirname(os.path.abspath(environ.get(ENV_FILE_VAR) or ".env"))


def hook_names(task):
    return [f"pre-{task}", f"post-{task}", "failed"]


def find_hooks(hooks_dir, task):
    """{name: path} of this task's hooks present in ``hooks_dir``; a file with
    a hook's name that is not executable is bad input (exit 2)."""
    found = {}
    for name in hook_names(task):
        path = os.path.join(hooks_dir, name)
        if not os.path.lexists(path):
            continue
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise Failure(f"hook {path} is not an executable file, so it would not run",
                          f"chmod +x {path}, or rename it if it is not meant as a hook",
                          code=BAD_INPUT)
        found[name] = path
    return found


def failed_hook_due(task, code):
    """Whether `failed` runs after ``task`` ended with exit ``code`` (a watch's
    revert is exit 1). Not for bad input, a held lock, or a pre- hook's stop."""
    return task in FAILED_HOOK_TASKS and code in (FAILED, NO_CONNECTION)


def fields_of(objects):
    """BLUEGREEN_COMMIT, _BRANCH, _COLOUR, _PREVIOUS_COLOUR from the first
    host's --json object (empty when the task did not say)."""
    first = objects[0] if objects else {}
    colour = first.get("live") or first.get("to") or ""
    if first.get("result") == "reverted":  # the colour that went live, then back
        colour = first.get("reverted") or colour
    return {"COMMIT": first.get("commit") or "", "BRANCH": first.get("branch") or "",
            "COLOUR": colour, "PREVIOUS_COLOUR": first.get("previous") or ""}


def hook_environ(base, secrets, values):
    """The hook's environment: this machine's, without any variable that holds
    one of the run's secrets, and without an outer hook's BLUEGREEN_ names,
    plus ``values`` (names without the prefix)."""
    env = {k: v for k, v in base.items()
           if k not in HOOK_VARS and not holds_secret(v, secrets)}
    env.update({f"BLUEGREEN_{k}": str(v) for k, v in values.items()})
    return env


def holds_secret(value, secrets):
    """Whether an environment value is, or (for a secret of 4 characters or
    more) contains, one of the run's secrets."""
    return value in secrets or any(len(s) >= 4 and s in value for s in secrets)


class RunHooks:
    """One run's hooks: found and checked before connecting (``check``), then
    ``before`` and ``after`` around the task."""

    def __init__(self, task, settings, hosts, who, environ=None):
        self.task = HOOK_TASKS.get(task)
        self.settings = settings
        self.hosts = hosts
        self.who = who  # () -> the identity dict (model/lock_owner.py)
        self.environ = os.environ if environ is None else environ
        self.started = time.monotonic()
        self.results = []  # [{"name", "result", "code", "seconds"}], for --json
        self.secrets = set()
        self.found = {}
        if self.task is not None:
            directory = os.path.join(config_dir(self.environ),
                                     os.path.expanduser(settings.hooks_dir))
            self.found = find_hooks(directory, self.task)

    def base_values(self):
        return {"TASK": self.task, "HOSTS": ",".join(self.hosts),
                "APP": self.settings.app_name, "PERFORMER": describe_who(self.who())}

    def before(self):
        """Run pre-TASK; Failure (exit 1) when it fails: nothing was touched."""
        name = f"pre-{self.task}"
        if name not in self.found:
            return
        result = self._run(name, self.base_values())
        if not result["result"] == "ok":
            raise Failure(f"hook {name} {describe_result(result)}: {self.task} stopped before "
                          "connecting to any host; nothing changed",
                          "its lines above (`hook " + name + ": `) say why", code=FAILED)

    def after(self, objects, code):
        """Run post-TASK, and `failed` when due; their results are added to
        ``objects`` (the --json ones) and said; never raises."""
        values = {**self.base_values(), **fields_of(objects),
                  "SECONDS": f"{time.monotonic() - self.started:.3f}", "EXIT_CODE": str(code)}
        names = [f"post-{self.task}"]
        if failed_hook_due(self.task, code):
            names.append("failed")
        for name in names:
            if name not in self.found:
                continue
            result = self._run(name, values, summary=objects)
            if result["result"] != "ok":
                emit(f"warning: hook {name} {describe_result(result)}; the task's exit code "
                     f"({code}) stands", sys.stderr)
        for obj in objects:
            if self.results:
                obj["hooks"] = list(self.results)

    def _run(self, name, values, summary=None):
        path = self.found[name]
        env_values = dict(values)
        summary_file = None
        if summary is not None:
            fd, summary_file = tempfile.mkstemp(prefix="bluegreen-summary-", suffix=".jsonl")
            with os.fdopen(fd, "w") as f:
                for obj in summary:
                    f.write(masked(jsonlib.dumps(obj, sort_keys=True, default=str)) + "\n")
            env_values["SUMMARY"] = summary_file
        env = hook_environ(self.environ, self.secrets, env_values)
        try:
            outcome = run_local([path], cwd=config_dir(self.environ), env=env,
                                timeout=self.settings.hook_timeout,
                                on_line=lambda line: emit(f"hook {name}: {line}", sys.stderr))
        except OSError as exc:
            outcome = None
            emit(f"hook {name}: could not start: {exc}", sys.stderr)
        finally:
            if summary_file:
                os.unlink(summary_file)
        result = {"name": name, "seconds": round(outcome.seconds, 3) if outcome else 0.0,
                  "code": outcome.code if outcome else None}
        if outcome is None:
            result["result"] = "failed"
        elif outcome.timed_out:
            result["result"] = "timed out"
            emit(f"hook {name}: timed out after HOOK_TIMEOUT ({self.settings.hook_timeout:g}s): "
                 "its process group got SIGTERM (SIGKILL 5 s later if left)", sys.stderr)
        else:
            result["result"] = "ok" if outcome.code == 0 else "failed"
        self.results.append(result)
        return result


def describe_result(result):
    if result["result"] == "timed out":
        return "timed out"
    if result["code"] is None:
        return "could not start"
    if result["code"] < 0:
        return f"was killed by signal {-result['code']}"
    return f"failed (exit {result['code']})"
