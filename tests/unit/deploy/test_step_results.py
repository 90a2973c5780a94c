"""What the operator sees of a step's output (tasks/deploy/step_results.py)."""

import pytest

from support.local_step import M, read_step
from tasks.deploy.step_results import is_progress, last_line, step_failed


def test_step_failed_names_the_error_or_the_exit_and_the_last_output():
    r = read_step("Cloning...\n\n  fatal: could not read from remote  \n"
                  f"{M} error git fetch from GIT_REPO failed", code=42)
    f = step_failed(r, "git", "check GIT_REPO")
    assert f.message == "git fetch from GIT_REPO failed; nothing live changed"
    assert f.hint == "check GIT_REPO; last output: fatal: could not read from remote"
    f = step_failed(read_step("", code=43), "build", "see above")
    assert (f.message, f.hint) == ("the build step failed (exit 43); nothing live changed",
                                   "see above")


def test_last_line_prefers_what_nginx_calls_an_emergency():
    assert last_line("a\n[emerg] x\nb\n") == "[emerg] x"
    assert last_line("a\n  b  \n\n") == "b"
    assert last_line("") == last_line(None) == "(no output)"


@pytest.mark.parametrize("line, shown", [
    ("#5 [2/3] RUN make", True), ("#1 [internal] load build definition", False),
    ("ERROR: failed to solve", True), ("Step 2/7 : COPY . .", True),
    (" Container shop-green-1  Built", True), ("#5 0.312 compiling", False),
])
def test_is_progress(line, shown):
    assert is_progress(line) is shown
