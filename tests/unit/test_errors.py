"""tasks/errors.py: an expected failure is one line of cause and one of what to
do, with its exit code; a bad value names key, value, origin and what is allowed."""

from tasks.errors import BAD_INPUT, FAILED, LOCKED, NO_CONNECTION, OK, ConfigError, Failure, \
    shown_value


def test_the_exit_codes_are_the_documented_ones():
    assert (OK, FAILED, BAD_INPUT, NO_CONNECTION, LOCKED) == (0, 1, 2, 3, 4)


def test_a_failure_is_one_line_of_cause_and_one_of_what_to_do():
    failure = Failure("nginx -t failed", "fix the file and run fab repair")
    assert failure.code == FAILED and failure.extra == {} and failure.printed_json is False
    assert str(failure) == "error: nginx -t failed\n  fix the file and run fab repair"
    assert str(Failure("no hint", code=LOCKED)) == "error: no hint"


def test_a_config_error_names_key_value_origin_and_what_is_allowed():
    err = ConfigError("BLUE_PORT", "80a", ".env line 3", "a port 1-65535 is allowed")
    assert err.code == BAD_INPUT
    assert (err.key, err.value, err.origin) == ("BLUE_PORT", "80a", ".env line 3")
    assert str(err) == "error: BLUE_PORT='80a' from .env line 3: a port 1-65535 is allowed"


def test_a_long_value_is_cut_short_and_says_how_long_it_was():
    assert shown_value("a\nb") == "'a\\nb'"
    assert shown_value(None) == "None"
    long = "x" * 500
    shown = shown_value(long)
    assert shown == repr("x" * 100) + "... (500 characters)"
    assert shown_value("y" * 200) == repr("y" * 200)  # at the limit: whole
