"""Every failure an operator is expected to see, with its exit code."""

# Exit codes are part of the interface (docs/exit-codes.md).
OK = 0
FAILED = 1  # the task failed; nothing live changed
BAD_INPUT = 2  # bad input or configuration; nothing ran on the host
NO_CONNECTION = 3  # could not connect or authenticate
LOCKED = 4  # another task holds the host's lock


class Failure(Exception):
    """An expected failure: one line of cause, one of what to do.

    ``extra``: keys the task's JSON summary of this failure adds (a watch's
    revert and its figures, say). ``printed_json``: the per-host objects are
    on stdout already, so the task prints no summary of its own.
    """

    def __init__(self, message, hint=None, code=FAILED, extra=None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code
        self.extra = extra or {}
        self.printed_json = False

    def __str__(self):
        if self.hint:
            return f"error: {self.message}\n  {self.hint}"
        return f"error: {self.message}"


class ConfigError(Failure):
    """A bad value, named with the key, where it came from and what is allowed."""

    def __init__(self, key, value, origin, allowed):
        self.key, self.value, self.origin, self.allowed = key, value, origin, allowed
        super().__init__(
            f"{key}={shown_value(value)} from {origin}: {allowed}", code=BAD_INPUT
        )


def shown_value(value, limit=200):
    """A value as an error line shows it: quoted, escaped, a long one cut short."""
    if not isinstance(value, str) or len(value) <= limit:
        return repr(value)
    return f"{value[:limit // 2]!r}... ({len(value)} characters)"
