"""Seconds: the one syntax of every flag and key that takes them (plain
seconds, or a duration in h, m and s), and their checks."""

from .values import MAX_SECONDS, Invalid, decimal_number, duration_seconds


SECONDS_SYNTAX = "plain seconds (90, 0.5) or a duration such as 90s, 2m or 1h30m"


def seconds_of(v):
    """Seconds in plain seconds ('90', '0.5') or a duration in h, m and s
    ('2m', '90s', '1h30m'): the one syntax of every flag and key that takes
    seconds. None when it is neither."""
    n = decimal_number(v)
    return n if n is not None else duration_seconds(v, units=("h", "m", "s"))


def check_positive_seconds(v):
    n = seconds_of(v)
    if n is None or not 0 < n <= MAX_SECONDS:
        raise Invalid(f"allowed: {SECONDS_SYNTAX}, more than 0 and at most 24h")
    return float(n)


def check_whole_seconds(v, least=0):
    n = seconds_of(v)
    if n is None or n != int(n) or not least <= n <= MAX_SECONDS:
        raise Invalid(f"allowed: whole seconds, {least} or more and at most 24h: "
                      f"{SECONDS_SYNTAX}")
    return int(n)


def check_non_negative_seconds(v):
    return check_whole_seconds(v, 0)


def check_positive_whole_seconds(v):
    return check_whole_seconds(v, 1)
