"""The task's one remote shell (tasks/connection/step_shell.py), with a real local shell instead of SSH.

StepReader is pure: lines in, a StepResult out. step_input is what
StepShell writes to `sh -s` for each step; here several steps go
through one local `sh -s` over pipes, as they go through one SSH channel.
"""

import pytest

from support.local_step import M, TOKEN, read_step, run_step, run_steps
from tasks.connection.step_shell import StepReader, StepResult, StepShell, step_input
from tasks.errors import Failure

OTHER = "::ffffffffffffffff"  # another task's token


def feed(reader, stream, text):
    for line in text.split("\n")[:-1]:
        reader.feed(stream, line)


def ended(stdout, code=0, stderr=""):
    """A reader fed what one step printed, followed by the end markers."""
    reader = StepReader(TOKEN)
    feed(reader, "stdout", f"{stdout}\n{M} exit {code}\n")
    feed(reader, "stderr", f"{stderr}\n{M} exit\n")
    return reader


# --- StepReader -------------------------------------------------------------


def test_markers_are_values_and_the_last_one_wins():
    r = read_step(f"{M} commit 0123abcd\n{M} subject  Fix the login page  \n{M} switched\n"
                  f"{M} created /srv/shop\n{M} created state.json\n")
    assert r.values == {"commit": "0123abcd", "subject": "Fix the login page",
                        "switched": "", "created": "state.json"}
    assert r.marks == (("commit", "0123abcd"), ("subject", "Fix the login page"),
                       ("switched", ""), ("created", "/srv/shop"),
                       ("created", "state.json"))
    assert r.stdout == "" and r.blocks == {} and r.code == 0 and r.ok


def test_plain_lines_keep_their_order_and_newlines():
    r = read_step(f"Step 1/3\n{M} phase build\n\n  indented\n#5 DONE\n")
    assert r.stdout == "Step 1/3\n\n  indented\n#5 DONE\n"
    assert r.values == {"phase": "build"}


def test_a_step_whose_output_does_not_end_in_a_newline():
    # step_input prints the end marker after a newline of its own.
    reader = StepReader(TOKEN)
    feed(reader, "stdout", f"no newline at the end\n{M} exit 0\n")
    feed(reader, "stderr", f"\n{M} exit\n")
    assert reader.result().stdout == "no newline at the end\n"
    assert read_step("last line").stdout == "last line\n"


def test_blank_lines_at_the_end_of_a_step_are_kept():
    assert read_step("one\n\n").stdout == "one\n\n"
    assert read_step("").stdout == ""
    assert read_step("\n").stdout == "\n"


def test_blocks_with_and_without_a_trailing_newline():
    out = (f"{M} begin logs\nline 1\n\nline 3\n\n{M} end logs\n"
           f"{M} begin cut\nno newline at the end\n{M} end cut\n"
           f"{M} begin empty\n\n{M} end empty\n"
           f"{M} begin blank\n\n\n{M} end blank\n")
    r = read_step(out)
    assert r.blocks == {"logs": "line 1\n\nline 3\n", "cut": "no newline at the end\n",
                        "empty": "", "blank": "\n"}
    assert r.stdout == "" and r.values == {}


def test_a_block_is_text_even_where_it_looks_like_markers():
    out = (f"{M} begin state\n{M} commit inside a block is text\n{M} begin nested\n"
           f"{M} end other\n{OTHER} end state\n\n{M} end state\n{M} commit real\n")
    r = read_step(out)
    assert r.blocks == {"state": f"{M} commit inside a block is text\n{M} begin nested\n"
                                 f"{M} end other\n{OTHER} end state\n"}
    assert r.values == {"commit": "real"}


def test_markers_with_another_token_are_plain_lines():
    # What a docker build, a git message or an app's log could print.
    forged = (f"{OTHER} commit evil\n::commit evil\n{OTHER} exit 0\n{M}commit glued\n"
              f" {M} commit indented\n")
    r = read_step(forged + f"{M} commit good\n")
    assert r.values == {"commit": "good"}
    assert r.stdout == forged


def test_exit_codes():
    assert read_step("", code=3).code == 3
    assert not read_step("", code=3).ok
    assert read_step("", code=127).code == 127
    reader = StepReader(TOKEN)
    feed(reader, "stdout", f"{M} exit nonsense\n")
    assert reader.code == 255


def test_a_step_ends_when_both_streams_have_their_end_marker():
    reader = StepReader(TOKEN)
    feed(reader, "stdout", f"out\n\n{M} exit 0\n")
    assert reader.code == 0 and not reader.done
    feed(reader, "stderr", f"warning: x\n{M} exit\n")
    assert reader.done
    assert reader.result() == StepResult(0, "out\n", "warning: x\n", {}, {}, ())
    # The other order.
    reader = StepReader(TOKEN)
    feed(reader, "stderr", f"\n{M} exit\n")
    assert not reader.done
    feed(reader, "stdout", f"\n{M} exit 2\n")
    assert reader.done and reader.result().code == 2


def test_stderr_keeps_its_lines_and_ignores_markers():
    r = read_step("", stderr=f"err 1\n{M} commit not on stderr\nno newline")
    assert r.stderr == f"err 1\n{M} commit not on stderr\nno newline\n"
    assert r.values == {}


def test_callbacks_see_lines_and_marks_as_they_come():
    seen = []
    reader = StepReader(TOKEN, on_line=lambda stream, line: seen.append((stream, line)),
                        on_mark=lambda key, value: seen.append(("mark", key, value)))
    feed(reader, "stdout", f"Step 1\n{M} commit abc\n{M} begin b\nin block\n{M} end b\n"
                           f"Step 2\n\n{M} exit 0\n")
    feed(reader, "stderr", f"oops\n\n{M} exit\n")
    assert [s for s in seen if s[0] != "mark"] == [("stdout", "Step 1"), ("stdout", "Step 2"),
                                                   ("stderr", "oops")]
    assert [s for s in seen if s[0] == "mark"] == [("mark", "commit", "abc")]


# Was a bug (tasks/connection/step_shell.py, StepReader._plain): every plain line is held back until
# the next plain line of its stream arrives (only so that a last empty line,
# the one the end marker starts with, can be dropped). on_line so always
# shows one line late: `fab logs --follow` (maintain.logs) keeps the newest
# log line hidden until the app prints another, and a build's current step
# shows only when the next one starts. Holding back only an empty line
# would do.
def test_on_line_sees_a_line_when_it_arrives():
    seen = []
    reader = StepReader(TOKEN, on_line=lambda stream, line: seen.append(line))
    reader.feed("stdout", "2024-05-01 app started")
    assert seen == ["2024-05-01 app started"]


def test_a_result_before_the_end_is_a_failure():
    reader = StepReader(TOKEN)
    feed(reader, "stdout", "half\n")
    assert not reader.done and reader.result().code == 255


# Was a bug (tasks/connection/step_shell.py, StepReader.feed): inside a block every stdout line is
# block text, the step's own end marker too. A step that ends between
# `begin` and `end` (killed, `exit`, a `set -u` error in the block's
# command) prints `::<token> exit N` after a newline, but the reader takes
# it into the block, never sets `code`, and StepShell.run waits forever
# (most steps run without a timeout: lock, switch, record, health's
# container check).
def test_a_step_that_ends_inside_a_block_still_ends():
    r = run_step('echo "$M begin logs"; echo partial; exit 3')
    assert r.code == 3


# --- step_input through one local `sh -s` -------------------------------------


def test_several_steps_in_one_shell_each_with_its_exit_code():
    results, proc = run_steps([
        'echo "$M first 1"',
        "echo plain; false",
        'echo "$M third $((1 + 2))"; echo to stderr >&2; exit 7',
    ])
    assert [r.code for r in results] == [0, 1, 7]
    assert results[0].values == {"first": "1"}
    assert results[1].stdout == "plain\n"
    assert results[2].values == {"third": "3"} and results[2].stderr == "to stderr\n"
    assert proc.returncode == 0


def test_exit_in_a_step_does_not_end_the_shell():
    results, _ = run_steps(["exit 3", 'echo "$M after yes"'])
    assert [r.code for r in results] == [3, 0]
    assert results[1].values == {"after": "yes"}


def test_set_u_cd_and_variables_do_not_leak_into_the_next_step(tmp_path):
    results, _ = run_steps([
        f"set -u; cd {tmp_path}; leaked=yes",
        'echo "$M unset [${NOT_SET_ANYWHERE}]"; echo "$M var [${leaked:-}]"; '
        'echo "$M cwd $PWD"',
    ], cwd="/")
    assert [r.code for r in results] == [0, 0]
    assert results[1].values == {"unset": "[]", "var": "[]", "cwd": "/"}


def test_a_step_reading_stdin_does_not_swallow_the_next_step():
    results, _ = run_steps([
        'cat; if read -r line; then echo "$M read $line"; else echo "$M read nothing"; fi',
        'echo "$M next ran"',
    ])
    assert results[0].values == {"read": "nothing"}
    assert results[1].values == {"next": "ran"} and results[1].code == 0


def test_m_is_exported_to_the_commands_a_step_runs():
    assert run_step("sh -c 'echo \"$M child 1\"'").values == {"child": "1"}


def test_output_without_a_newline_and_a_block_from_a_real_shell():
    r = run_step('printf "no newline"; echo "$M begin b" >/dev/null; '
                 'printf "\\n"; echo "$M begin b"; printf "x\\ny"; '
                 'printf "\\n%s end b\\n" "$M"; printf "tail"')
    assert r.stdout == "no newline\ntail\n"
    assert r.blocks == {"b": "x\ny\n"}


def test_quotes_heredocs_and_parentheses_in_a_step():
    script = ("case x in x) echo \"$M case ok\";; esac\n"
              "cat <<'EOF'\n)\nit's ( $not expanded\nEOF\n"
              "echo \"$M paren $( (echo in) )\"\n")
    r = run_step(script)
    assert r.code == 0
    assert r.values == {"case": "ok", "paren": "in"}
    assert r.stdout == ")\nit's ( $not expanded\n"


def test_step_input_shape():
    text = step_input("echo hi\n\n")
    assert text.startswith("bluegreen_step() (\n:\necho hi\n)\n")
    assert "bluegreen_step </dev/null\n" in text
    assert text.endswith("printf '\\n%s exit %d\\n' \"$M\" $?; printf '\\n%s exit\\n' \"$M\" >&2\n")


# Was a bug (tasks/connection/step_shell.py, step_input): an empty script, or one that is only
# comments, makes `bluegreen_step() (\n)` - a syntax error that ends a
# non-interactive sh (dash) outright: the step gets no end marker and every
# later step of the task is lost ("the remote shell ... ended"). A `:` line
# before the script would make any script a valid body.
def test_a_step_of_only_comments_is_a_step():
    results, proc = run_steps(["# nothing to do", 'echo "$M next ran"'])
    assert [r and r.code for r in results] == [0, 0], proc.stderr


def test_a_connection_cut_right_after_the_channel_opened_is_a_lost_connection():
    """The fault matrix's cut right after `connect`: the channel opened, then
    the first write met a closed socket. Exit 3 naming the loss, no traceback."""

    class Chan:
        def exec_command(self, command):
            pass

        def sendall(self, data):
            raise OSError("Socket is closed")

    class Transport:
        def open_session(self, timeout=None):
            return Chan()

        def is_active(self):
            return False

    def lost(when):
        return Failure(f"lost the SSH connection to h {when}", "check the host", code=3)

    shell = StepShell(Transport(), "h", {}, lost, open_timeout=1.0)
    with pytest.raises(Failure) as err:
        shell.start()
    assert err.value.code == 3
    assert err.value.message == "lost the SSH connection to h while starting the remote shell"
    assert shell.alive is False
