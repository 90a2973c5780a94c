"""The checks of task flags that are not settings keys (--colour, --watch...).

Each returns the value it allows or raises config.Invalid, which
check_flag turns into one line naming the flag: exit 2, before any
connection.
"""

import invoke

from ..configuration import values
from ..configuration.process_values import PROCESS_TYPE_RE
from ..configuration.settings import COLOURS, is_utf8
from ..configuration.durations import SECONDS_SYNTAX, seconds_of
from ..configuration.values import Invalid, whole_number
from ..errors import BAD_INPUT, ConfigError, Failure


# One meaning per short flag across every task; a flag not named here has
# only its long name (Invoke would otherwise take a letter of its name, so
# `-c` was --colour, --canary or --accept-new-host-key depending on the task).
SHORT_FLAGS = {
    "accept_new_host_key": "a", "branch": "b", "colour": "c", "follow": "f",
    "interactive": "i", "json": "j", "lines": "l", "message": "m", "no_switch": "n",
    "parallel": "p", "ref": "r", "stop_old": "s", "to": "t", "verbose": "v",
    "wait_lock": "w",
}


class OneMeaningTask(invoke.Task):
    """A task whose short flags come from SHORT_FLAGS only."""

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(name)
        if short and short not in taken_names:
            opts["names"].append(short)
        return opts


def task(*args, **kwargs):
    """invoke's @task(...) with one meaning per short flag (SHORT_FLAGS)."""
    return invoke.task(*args, klass=OneMeaningTask, auto_shortflags=False, **kwargs)


def check_colour(value):
    if value not in COLOURS:
        raise values.Invalid("allowed: blue or green")
    return value


def check_seconds(value, least=0):
    """--wait-lock (from 0) and --watch (from 1s): seconds up to 24h, in the one syntax."""
    seconds = seconds_of(str(value))
    if seconds is None or not least <= seconds <= 86400:
        raise values.Invalid(f"allowed: {SECONDS_SYNTAX}, from {least or 0}"
                             f"{'s' if least else ''} to 24h")
    return float(seconds)


def check_percent(value):
    """--canary: a whole percentage of clients, 1 to 99."""
    percent = whole_number(str(value))
    if percent is None or not 1 <= percent <= 99:
        raise values.Invalid("allowed: a whole number of percent from 1 to 99")
    return percent


def check_batch(value, percent, no_switch):
    """--batch N: hosts N at a time, each batch switched together; a canary or a
    staged release switches no batch."""
    n = whole_number(str(value))
    if n is None or n < 1:
        raise values.Invalid("allowed: a whole number of hosts, 1 or more")
    for flag, given in (("--canary", percent), ("--no-switch", no_switch)):
        if given:
            raise Failure(f"--batch with {flag}: batches switch hosts together, and {flag} "
                          "switches no host; allowed: --batch on a release that switches",
                          code=BAD_INPUT)
    return n


def check_watch(value):
    """--watch: seconds of watching, at least one."""
    return check_seconds(value, least=1)


def check_lines(value):
    count = whole_number(str(value))
    if count is None or not 1 <= count <= 100000:
        raise values.Invalid("allowed: a whole number from 1 to 100000")
    return count


def check_release_modes(no_switch, percent, seconds, stop_old):
    """--no-switch switches nothing: no canary, nothing to watch, nothing old to stop."""
    for flag, given, allowed in (
            ("--canary", percent, "one of --no-switch, --canary PERCENT"),
            ("--watch", seconds, "--watch on a release that switches (or on promote)"),
            ("--stop-old", stop_old, "--stop-old on a release that switches (or on promote)")):
        if no_switch and given:
            raise Failure(f"--no-switch with {flag}: a staged release switches nothing, so "
                          f"there is nothing for {flag} to do; allowed: {allowed}",
                          code=BAD_INPUT)
    if percent and stop_old and not seconds:
        raise Failure("--canary with --stop-old but no --watch: the old colour serves the "
                      "other clients; allowed: --stop-old with --watch (stopped after a clean "
                      "watch promotes the canary)", code=BAD_INPUT)


def check_flag(flag, value, check):
    """Check one task flag's value; a bad one names the flag."""
    try:
        if isinstance(value, str) and ("\x00" in value or not is_utf8(value)):
            raise Invalid("allowed: UTF-8 text without NUL characters")
        return check(value)
    except Invalid as exc:
        raise ConfigError(flag, value, "the command line", str(exc)) from None


def check_process_type(value):
    """--process: a Procfile type ([A-Za-z0-9_-]+)."""
    if not PROCESS_TYPE_RE.fullmatch(value or ""):
        raise Invalid("allowed: a process type of the Procfile ([A-Za-z0-9_-]+): web, worker, ...")
    return value
