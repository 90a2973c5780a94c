"""Every `fab` command in README.md and docs/ works as written.

Commands are read from the pages themselves: lines of fenced blocks that
run `fab` (CI `run:` lines too) and inline code spans that start with
`fab `. Each must name a task that exists and only flags that task has
(`fab --help TASK`); a command with no task (`fab --list`, `fab -r DIR`,
`fab --help TASK`) runs and shows what the page says. A bare `fab` in
prose names the program, not a command. The read-only ones (status,
check, render, history, logs, releases) also run, against the loopback
test host in place of the page's host name, and their output must show
what the README's task table says each shows (SHOWS). docs/ci.md's
release command runs in test_ci_recipe.py.
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
            for span in re.findall(r"`((?:[A-Z_]+=\S+\s+)*fab\s[^`]*)`", line):
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
    if task is None or task.isupper():  # `fab --list`, `fab -r DIR`, `fab --help TASK`
        check_core_command(page, line, core, task)
        return
    known = task_flags(task)
    assert known is not None, f"{page}:{line}: `{command}`: there is no task {task!r}"
    missing = [f for f in flags if f not in known]
    assert not missing, f"{page}:{line}: `{command}`: {task} has no {missing}"


def run_fab(*args):
    return subprocess.run([str(Path(sys.executable).parent / "fab"), *args],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


@functools.lru_cache(maxsize=None)
def core_flags():
    """The core flags `fab --help` lists."""
    r = run_fab("--help")
    assert r.returncode == 0, r.stderr
    return set(re.findall(r"(?<![\w-])(-[a-zA-Z]|--[a-z][a-z-]*)", r.stdout))


def check_core_command(page, line, core, task):
    """A command with no task: its core flags exist, and it does what the page says."""
    where = f"{page}:{line}"
    flags = [w for w in core if w.startswith("-")]
    missing = [f for f in flags if f not in core_flags()]
    assert not missing, f"{where}: fab has no core flag {missing}"
    if "--list" in core:  # lists the tasks
        r = run_fab("-r", str(REPO_ROOT), "--list")
        assert r.returncode == 0, r.stderr
        listed = set(re.findall(r"^\s+([a-z][a-z-]*)\b", r.stdout, re.M))
        assert {"release", "rollback", "status", "setup", "promote", "check"} <= listed, r.stdout
    elif "--help" in core:  # `fab --help TASK`: every flag of that task
        assert task == "TASK", where
        r = run_fab("-r", str(REPO_ROOT), "--help", "release")
        assert r.returncode == 0 and "--branch" in r.stdout and "--canary" in r.stdout, r.stdout
    elif "-r" in core or "--search-root" in core:  # runs the tool from any directory
        r = subprocess.run([str(Path(sys.executable).parent / "fab"), "-r", str(REPO_ROOT),
                            "--list"], capture_output=True, text=True, timeout=60, cwd="/")
        assert r.returncode == 0 and "release" in r.stdout, r.stdout + r.stderr
    else:
        raise AssertionError(f"{where}: a documented command with no task: {core}")


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, loophost):
    """Set up (v1 in blue), so every read-only command has something to show."""
    yield from module_project(request, tmp_path_factory, loophost, setup=True)


RUNNABLE = sorted({(page, line, command) for page, line, command in COMMANDS
                   if parse(command)[2] in RUN and "--follow" not in parse(command)[3]
                   and not parse(command)[0]}, key=lambda c: (c[0], c[1]))


def test_read_only_commands_are_documented():
    assert {parse(c)[2] for _, _, c in RUNNABLE} >= {"status", "check", "render"}


@pytest.mark.parametrize("page, line, command", RUNNABLE,
                         ids=[f"{p}:{n}" for p, n, _ in RUNNABLE])
def test_read_only_commands_run_as_written(shared_project, page, line, command):
    """The page's host (prod, web1,web2, h ...) becomes the test host; the rest as written."""
    _, core, task, flags = parse(command)
    words = shlex.split(re.split(r"\s(?:>|\||#)", command.replace("\\|", "|"))[0])[1:]
    args, skip = [], False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word in ("-H", "--hosts"):
            args += ["-H", shared_project.HOST_NAME]
            skip = True
        elif word in ("-r", "--search-root"):
            skip = True  # the test's fab already has -r
        elif word in ("C", "N"):  # a placeholder value in a table: `--colour C`
            args.append({"C": "blue", "N": "5"}[word])
        else:
            args.append(word)
    r = fab(shared_project, *args)
    assert r.stdout.strip(), f"{page}:{line}: `{command}` printed nothing"
    SHOWS[task](shared_project, r.stdout, args)


# What the README's task table says each read-only task shows, checked
# against the set-up test host (v1 live in blue, green never released).


def shows_status(p, out, args):
    # "the live colour, and for each colour its branch, commit, deploy time
    # and author, container state and current health; the nginx target and
    # the lock holder"
    sha = p.app.commits["v1"][:12]
    assert f"live: blue (nginx -> port {p.blue_port})" in out, out
    blue = next(line for line in out.splitlines() if line.strip().startswith("blue "))
    for text in ("live", "main", sha, "running"):
        assert text in blue, (text, blue)
    assert re.search(r"\d{4}-\d\d-\d\d", blue), blue  # deployed at
    assert "HTTP 200" in blue or "healthy" in blue, blue  # health now
    assert re.search(r"^\s+green ", out, re.M), out
    assert "lock: free" in out, out


def shows_check(p, out, args):
    # "tools and their versions, ports free or already ours, disk space,
    # nginx -t, the host can reach GIT_REPO; the free space where Docker
    # keeps images against MIN_FREE_DISK"
    for text in ("git ", "docker ", "compose ", "nginx -t", "GIT_REPO", "MIN_FREE_DISK",
                 "docker disk"):
        assert text in out, (text, out)
    assert str(p.public_port) in out, out  # the ports


def shows_render(p, out, args):
    # "Prints the rendered nginx and compose files ... the first line says whose"
    first = out.splitlines()[0]
    assert p.HOST_NAME in first, first
    assert "server {" in out and f"listen {p.public_port}" in out.replace("127.0.0.1:", ""), out
    assert "services:" in out and "blue:" in out and "green:" in out, out


def shows_releases(p, out, args):
    # "The kept releases, newest first: commit, branch, build time, size,
    # and which colour runs each"
    sha = p.app.commits["v1"][:12]
    row = next(line for line in out.splitlines() if sha in line)
    assert "main" in row and "blue" in row and re.search(r"\d{4}-\d\d-\d\d", row), row
    assert re.search(r"\d+(\.\d+)? ?[kMG]?B", row), row  # its size


def shows_logs(p, out, args):
    # "Container logs (default: the live colour)": the sample app's start line
    assert "v1 (ok) starting on port" in out, out


def shows_history(p, out, args):
    # "The host's audit log": the setup's first release into blue
    sha = p.app.commits["v1"][:12]
    assert sha in out and "blue" in out and "ok" in out, out


SHOWS = {"status": shows_status, "check": shows_check, "render": shows_render,
         "releases": shows_releases, "logs": shows_logs, "history": shows_history}


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
