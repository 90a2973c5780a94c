"""A patch of Invoke's parser: a bad flag exits 2, as bad input does."""

import re

import invoke
from invoke import Exit
from invoke.exceptions import ParseError

from ..errors import BAD_INPUT, Failure
from ..output import emit_json
from .on_hosts import failure_json


def parse_errors_are_bad_input(program_class=invoke.Program):
    """`fab release --bogus` or `--branch` without a value: exit 2, not 1.

    Invoke parses a task's flags after it has loaded this collection and
    turns a ParseError into exit 1, which the exit code table gives to a
    failed release. Its Program has no setting for that, so its parse_tasks
    is wrapped once: a ParseError becomes Exit(code=2) with our two lines
    (and, under --json, the failure object on stdout).
    """
    original = program_class.parse_tasks
    if getattr(original, "bluegreen", False):
        return

    def parse_tasks(self):
        try:
            return original(self)
        except ParseError as exc:
            context = getattr(exc, "context", None)
            name = getattr(context, "name", None)
            hint = (f"`fab --help {name}` lists its flags" if name
                    else "`fab --list` lists the tasks")
            message = str(exc)
            flag = re.match(r"Flag <Argument: (\w+)", message)
            if flag and "needed value" in message:  # Invoke names the Argument object
                message = f"--{flag.group(1).replace('_', '-')} needs a value"
            failure = Failure(message, hint, code=BAD_INPUT)
            if "--json" in (self.core.unparsed if self.core else []):
                emit_json(failure_json(failure, name))
            raise Exit(str(failure), code=BAD_INPUT) from None

    parse_tasks.bluegreen = True
    program_class.parse_tasks = parse_tasks
