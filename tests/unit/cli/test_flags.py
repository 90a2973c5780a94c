"""cli/flags.py: the flags checked before any connection (--canary percent,
--watch seconds, which release modes go together).
"""

import pytest

from tasks.cli.flags import check_percent, check_release_modes, check_watch
from tasks.configuration.values import Invalid
from tasks.errors import BAD_INPUT, Failure


# --- flags ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "100", "ten", "-5", "20.5", ""])
def test_bad_canary_percent(value):
    with pytest.raises(Invalid):
        check_percent(value)


@pytest.mark.parametrize("value", ["-5", "0", "soon", "86401"])
def test_bad_watch_seconds(value):
    with pytest.raises(Invalid):
        check_watch(value)


def test_no_switch_goes_with_neither_canary_nor_watch():
    with pytest.raises(Failure) as exc:
        check_release_modes(True, 10, 0, False)
    assert exc.value.code == BAD_INPUT and "--canary" in exc.value.message
    check_release_modes(True, None, 0, False)
    check_release_modes(False, 10, 30, True)
    with pytest.raises(Failure):
        check_release_modes(False, 10, 0, True)  # nobody would stop the old colour
