"""cli/parser_patch.py: a flag Invoke cannot parse exits 2 (bad input), with
our two lines, and under --json the failure object on stdout."""

import json
from types import SimpleNamespace

import pytest
from invoke import Exit
from invoke.exceptions import ParseError

from tasks.cli.parser_patch import parse_errors_are_bad_input


def program(error, unparsed=()):
    """A Program class whose parse_tasks raises ``error`` (None: parses)."""

    class Program:
        def __init__(self):
            self.core = SimpleNamespace(unparsed=list(unparsed))

        def parse_tasks(self):
            if error is not None:
                raise error
            return "parsed"

    parse_errors_are_bad_input(Program)
    return Program


def parse_error(message, task=None):
    return ParseError(message, SimpleNamespace(name=task) if task else None)


def test_an_unknown_flag_exits_2_and_names_the_help():
    with pytest.raises(Exit) as exc:
        program(parse_error("No idea what '--bogus' is!", "release"))().parse_tasks()
    assert exc.value.code == 2
    assert exc.value.message == ("error: No idea what '--bogus' is!\n"
                                 "  `fab --help release` lists its flags")


def test_a_flag_without_its_value_is_named_as_a_flag():
    error = parse_error("Flag <Argument: branch (b) [str]> needed value and was not given one!",
                        "release")
    with pytest.raises(Exit) as exc:
        program(error)().parse_tasks()
    assert exc.value.message.splitlines()[0] == "error: --branch needs a value"


def test_an_unknown_task_points_at_the_list():
    with pytest.raises(Exit) as exc:
        program(parse_error("No idea what 'relase' is!"))().parse_tasks()
    assert exc.value.message.endswith("`fab --list` lists the tasks")


def test_under_json_the_failure_object_is_printed(capsys):
    with pytest.raises(Exit):
        program(parse_error("No idea what '--x' is!", "status"), ["--json"])().parse_tasks()
    obj = json.loads(capsys.readouterr().out)
    assert (obj["task"], obj["result"], obj["code"]) == ("status", "failed", 2)
    assert "--x" in obj["error"] and obj["hint"] == "`fab --help status` lists its flags"


def test_the_patch_is_applied_once_and_passes_a_good_parse_through():
    cls = program(None)
    patched = cls.parse_tasks
    parse_errors_are_bad_input(cls)
    assert cls.parse_tasks is patched and cls().parse_tasks() == "parsed"
