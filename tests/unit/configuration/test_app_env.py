"""app.env from APP_ENV_FILE (${VAR} from the environment) and SECRETS_CMD's output."""

import pytest

from tasks.configuration.app_env import (merged_app_env, parse_secrets, read_app_env_text,
                                         render_app_env, secret_values)
from tasks.configuration.env_layers import HOOK_VARS, environ_layer
from tasks.configuration.settings import load_settings
from tasks.errors import Failure


def test_var_is_filled_from_the_environment_and_remembered_as_secret():
    filled = set()
    values = read_app_env_text("A=plain\nB=${CI_TOKEN}\nC=x-${A}\n", "app.env",
                               {"CI_TOKEN": "s3cret-value"}, filled)
    assert values == {"A": "plain", "B": "s3cret-value", "C": "x-plain"}
    assert filled == {"s3cret-value"}


def test_an_unset_var_is_bad_input_naming_it_and_the_file():
    with pytest.raises(Failure) as err:
        read_app_env_text("B=${NOT_EXPORTED}\n", "/x/app.env", {})
    assert err.value.code == 2
    assert "NOT_EXPORTED" in err.value.message and "/x/app.env" in err.value.message


def test_a_default_and_single_quotes_are_dotenv_semantics():
    values = read_app_env_text("A=${NOPE:-fallback}\nB='${KEPT}'\n", "f", {})
    assert values == {"A": "fallback", "B": "${KEPT}"}


def test_secrets_cmd_output_is_taken_literally_and_wins():
    secrets = parse_secrets("A=from-vault\nB=${HOME}$x\nA=later\n")
    assert secrets == {"A": "later", "B": "${HOME}$x"}
    merged = merged_app_env({"A": "file", "C": "c"}, secrets)
    assert merged == {"A": "later", "C": "c", "B": "${HOME}$x"}
    assert render_app_env(merged) == b"A=later\nC=c\nB=${HOME}$x\n"


def test_a_bad_secrets_line_is_named_by_number_never_shown():
    with pytest.raises(Failure) as err:
        parse_secrets("A=1\nthis is not dotenv 'hunter2\n")
    assert "hunter2" not in str(err.value) and "line 2" in err.value.message


def test_a_multiline_value_is_refused_without_showing_it():
    with pytest.raises(Failure) as err:
        merged_app_env({}, {"KEY": "line1\nhunter2"})
    assert "KEY" in err.value.message and "hunter2" not in str(err.value)


def test_short_values_are_not_masked_everywhere():
    assert secret_values(["a", "abc", "abcd"]) == {"abcd"}


def test_hook_names_are_reserved_and_other_unknown_names_still_fail(tmp_path):
    assert environ_layer({name: "x" for name in HOOK_VARS}).values == {}
    env = tmp_path / ".env"
    env.write_text("GIT_REPO=/srv/repo\n")
    load_settings(env_file=str(env), environ={"BLUEGREEN_COMMIT": "abc",
                                              "BLUEGREEN_PREVIOUS_COLOUR": "blue"})
    with pytest.raises(Failure) as err:
        load_settings(env_file=str(env), environ={"BLUEGREEN_COMMITT": "abc"})
    assert err.value.code == 2
