"""Every `fab` command in README.md and docs/ works as written.

Commands are read from the pages themselves: lines of fenced blocks that
run `fab` (CI `run:` lines too) and inline code spans that start with
`fab `. Each must name a task that exists and only flags that task has
(`fab --help TASK`). The read-only ones (status, check, render, history,
logs) also run, against the loopback test host in place of the page's
host name. docs/ci.md's release command runs in test_ci_recipe.py.
"""

import functools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from released import REPO_ROOT, fab, module_project

PAGES = [REPO_ROOT / "README.md"] + sorted(
    p for p in (REPO_ROOT / "docs").glob("*.md") if p.name != "architecture.md")

# Read-only tasks: they run against the test host, exit 0 expected.
RUN = {"status", "check", "render", "history", "logs", "releases"}

CORE_WITH_VALUE = {"-H", "--hosts", "-r", "--search-root", "-c", "--collection", "-f",
                   "--config"}


def doc_commands():
    """[(page name, line number, command text)] of every fab command in the pages."""
    found = []
    for page in PAGES:
        fenced = False
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            if fenced:
                code = re.sub(r"(^|\s)#.*$", "", line)  # a shell comment is prose
                match = re.search(r"(?:^|[\s:&;])((?:[A-Z_]+=\S+\s+)*fab\s.*)$", code)
                if match and not line.lstrip().startswith(("#", "|")):
                    found.append((page.name, number, match.group(1)))
                continue
            for span in re.findall(r"`((?:[A-Z_]+=\S+\s+)*fab(?:\s[^`]*)?)`", line):
                found.append((page.name, number, span))
    return found


def parse(command):
    """(env, core args, task, flags) of a documented command line."""
    command = re.sub(r"\s+#.*$", "", command)  # a shell comment after the command
    command = re.split(r"\s(?:>|\|\||&&|\|)\s", command)[0]  # redirections, pipes
    words = shlex.split(command.replace("\\|", "|"))
    env = {}
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    assert words and words[0] == "fab", command
    words.pop(0)
    core, task = [], None
    while words:
        word = words.pop(0)
        if word in CORE_WITH_VALUE:
            core += [word, words.pop(0) if words else ""]
        elif word.startswith("-"):
            core.append(word)
        else:
            task = word
            break
    flags = [w.split("=")[0] for w in words if w.startswith("--")]
    return env, core, task, flags


@functools.lru_cache(maxsize=None)
def task_flags(task):
    """The flags `fab --help TASK` lists, or None when there is no such task."""
    r = subprocess.run([str(Path(sys.executable).parent / "fab"), "-r", str(REPO_ROOT),
                        "--help", task], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return None
    return set(re.findall(r"--[a-z][a-z-]*", "\n".join(
        line for line in r.stdout.splitlines() if line.lstrip().startswith("-"))))


COMMANDS = doc_commands()


def test_the_pages_have_commands_to_check():
    assert len(COMMANDS) > 30, COMMANDS
    assert {page for page, _, _ in COMMANDS} >= {"README.md", "ci.md", "hosts.md", "ssl.md"}


@pytest.mark.parametrize("page, line, command", COMMANDS,
                         ids=[f"{p}:{n}" for p, n, _ in COMMANDS])
def test_every_documented_command_names_real_tasks_and_flags(page, line, command):
    _, core, task, flags = parse(command)
    if task is None:  # `fab --list`, `fab -r ..`: core flags only
        return
    if task.isupper() or task in ("TASK",):  # a placeholder: `fab --help TASK`
        return
    known = task_flags(task)
    assert known is not None, f"{page}:{line}: `{command}`: there is no task {task!r}"
    missing = [f for f in flags if f not in known]
    assert not missing, f"{page}:{line}: `{command}`: {task} has no {missing}"


@pytest.fixture(scope="module")
def proj(request, tmp_path_factory, loophost):
    """Set up (v1 in blue), so every read-only command has something to show."""
    yield from module_project(request, tmp_path_factory, loophost, setup=True)


RUNNABLE = sorted({(page, line, command) for page, line, command in COMMANDS
                   if parse(command)[2] in RUN and "--follow" not in parse(command)[3]
                   and not parse(command)[0]}, key=lambda c: (c[0], c[1]))


def test_read_only_commands_are_documented():
    assert {parse(c)[2] for _, _, c in RUNNABLE} >= {"status", "check", "render"}


@pytest.mark.parametrize("page, line, command", RUNNABLE,
                         ids=[f"{p}:{n}" for p, n, _ in RUNNABLE])
def test_read_only_commands_run_as_written(proj, page, line, command):
    """The page's host (prod, web1,web2, h ...) becomes the test host; the rest as written."""
    _, core, task, flags = parse(command)
    words = shlex.split(re.split(r"\s(?:>|\||#)", command.replace("\\|", "|"))[0])[1:]
    args, skip = [], False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word in ("-H", "--hosts"):
            args += ["-H", proj.HOST_NAME]
            skip = True
        elif word in ("-r", "--search-root"):
            skip = True  # the test's fab already has -r
        elif word in ("C", "N"):  # a placeholder value in a table: `--colour C`
            args.append({"C": "blue", "N": "5"}[word])
        else:
            args.append(word)
    r = fab(proj, *args)
    assert r.stdout.strip(), f"{page}:{line}: `{command}` printed nothing"


def test_readme_task_table_lists_every_flag():
    """Each task's row in the README names every flag `fab --help TASK` shows
    (--accept-new-host-key is described once, below the table)."""
    readme = (REPO_ROOT / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        match = re.match(r"\| `fab (?:-H h )?(\w+)[^`]*` \|(.*?[^\\])\|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    assert len(rows) >= 12, rows
    for task, cell in rows.items():
        known = task_flags(task)
        assert known is not None, task
        missing = sorted(f for f in known - {"--accept-new-host-key"} if f"`{f}" not in cell)
        assert not missing, f"README's row for {task} lacks {missing}"
