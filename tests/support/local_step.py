"""Steps of the remote shell, run by a local one and read back as StepShell
reads them."""

import os
import subprocess

from tasks.connection.step_shell import StepReader, step_input


# A token like the one StepShell draws (secrets.token_hex(8)); samples and
# local runs print their markers with it.
TOKEN = "0123456789abcdef"
M = f"::{TOKEN}"


def read_step(stdout, code=0, stderr="", token=TOKEN):
    """A StepResult from a step's output, as StepShell reads it.

    ``stdout`` is what the step printed (markers as ``{M} key value``); the
    end markers that step_input prints after it are added here.
    """


    reader = StepReader(token)
    out = f"{stdout}\n::{token} exit {code}\n"
    err = f"{stderr}\n::{token} exit\n"
    for stream, text in (("stdout", out), ("stderr", err)):
        for line in text.split("\n")[:-1]:
            reader.feed(stream, line)
    assert reader.done
    return reader.result()


def parse_streams(stdout, stderr, token=TOKEN):
    """Feed a whole run's stdout and stderr to StepReaders, one per step."""


    results, readers = [], []
    out_lines = stdout.split("\n")[:-1] if stdout.endswith("\n") else stdout.split("\n")
    err_lines = stderr.split("\n")[:-1] if stderr.endswith("\n") else stderr.split("\n")
    # stdout and stderr are separate pipes: read each stream step by step.
    for stream, lines in (("stdout", out_lines), ("stderr", err_lines)):
        index = 0
        for line in lines:
            while len(readers) <= index:
                readers.append(StepReader(token))
            reader = readers[index]
            reader.feed(stream, line)
            ended = (reader.code is not None) if stream == "stdout" else reader.stderr_done
            if ended:
                index += 1
    for reader in readers:
        results.append(reader.result() if reader.done else None)
    return results


def run_steps(scripts, cwd=None, env=None, timeout=30):
    """Run scripts as the steps of one local `sh -s`, the way StepShell does.

    The shell gets M in its environment (StepShell exports it first) and
    each script wrapped by step_input. Returns (StepResults, CompletedProcess).
    """


    env = dict(os.environ if env is None else env)
    env["M"] = M
    text = "".join(step_input(script) for script in scripts)
    proc = subprocess.run(["/bin/sh", "-s"], input=text, cwd=None if cwd is None else str(cwd),
                          env=env, capture_output=True, text=True, timeout=timeout)
    return parse_streams(proc.stdout, proc.stderr), proc


def run_step(script, cwd=None, env=None, timeout=30):
    """One script as one step of a local `sh -s` -> StepResult."""
    results, proc = run_steps([script], cwd=cwd, env=env, timeout=timeout)
    assert len(results) == 1 and results[0] is not None, (proc.stdout, proc.stderr)
    return results[0]
