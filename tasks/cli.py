"""The tasks operators call. Thin: each reads like its steps in the README.

Every value is checked for every named host before the first connection.
With several hosts, changing tasks go host by host and stop at the first
failure (or all at once with --parallel); read-only ones run concurrently.
"""

import functools
import re
import signal
import socket
import sys
import threading

import invoke
from invoke import Exit, task
from invoke.exceptions import ParseError

from . import config as cfg
from .errors import BAD_INPUT, Failure
from .inventory import check_identity_file, load_inventory
from .output import Reporter, emit, emit_json


# Tasks that take the lock and record their attempt: only their Ctrl-C
# message speaks of the lock and history.
CHANGING_TASKS = ("setup", "release", "rollback", "switch_", "repair", "promote", "maintenance")


def failure_json(exc, task_name, host=None):
    """What --json prints on stdout for a failure: docs/ci.md's release.json."""
    obj = {"task": task_name, "result": "failed", "error": exc.message, "hint": exc.hint,
           "code": exc.code}
    if host is not None:
        obj["host"] = host
    obj.update(exc.extra)  # e.g. a watch's revert and its figures
    return obj


def operator_task(fn):
    """Turn expected failures into two lines and an exit code, never a traceback.

    With --json, a failure is also one JSON object on stdout (error, hint,
    code), whatever its code: a CI job keeps stdout as its record.
    """

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        # A cancelled CI job sends SIGTERM: clean up (lock, history) as on Ctrl-C.
        signal.signal(signal.SIGTERM, interrupt)
        try:
            return fn(c, *args, **kwargs)
        except Failure as exc:
            if kwargs.get("json") and not exc.printed_json:
                emit_json(failure_json(exc, fn.__name__.rstrip("_")))
            sys.stdout.flush()
            raise Exit(str(exc), code=exc.code) from None
        except BrokenPipeError:  # `fab render | head`
            sys.stderr.close()
            raise Exit(code=0) from None
        except KeyboardInterrupt:
            sys.stdout.flush()
            if fn.__name__ not in CHANGING_TASKS:
                raise Exit("interrupted", code=130) from None
            raise Exit("interrupted: the lock was released and the attempt recorded; "
                       "nothing live changed", code=130) from None

    return wrapper


def interrupt(signum, frame):
    raise KeyboardInterrupt


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


parse_errors_are_bad_input()


def cli_hosts(c):
    """The -H list our Executor put in the config (empty without -H)."""
    try:
        return list(c.config["bluegreen_hosts"])
    except KeyError:
        return []


def check_colour(value):
    if value not in cfg.COLOURS:
        raise cfg.Invalid("allowed: blue or green")
    return value


def check_seconds(value):
    seconds = cfg.decimal_number(str(value))
    if seconds is None or not 0 <= seconds <= 86400:
        raise cfg.Invalid("allowed: a number of seconds from 0 to 86400")
    return seconds


def check_percent(value):
    """--canary: a whole percentage of clients, 1 to 99."""
    percent = cfg.whole_number(str(value))
    if percent is None or not 1 <= percent <= 99:
        raise cfg.Invalid("allowed: a whole number of percent from 1 to 99")
    return percent


def check_watch(value):
    """--watch: seconds of watching, at least one."""
    seconds = cfg.decimal_number(str(value))
    if seconds is None or not 1 <= seconds <= 86400:
        raise cfg.Invalid("allowed: a number of seconds from 1 to 86400")
    return seconds


def check_lines(value):
    count = cfg.whole_number(str(value))
    if count is None or not 1 <= count <= 100000:
        raise cfg.Invalid("allowed: a whole number from 1 to 100000")
    return count


def inventory_path():
    return load_inventory().path


def targets(c, require_repo=True):
    """(entry, settings) for every host the task runs on, all checked first."""
    inventory = load_inventory()
    entries = inventory.select(cli_hosts(c))
    for entry in entries:  # known before connecting: bad input, not the network
        check_identity_file(entry, inventory.path)
    return [(e, cfg.load_settings(host_layer=e.env, require_repo=require_repo))
            for e in entries]


def open_session(c, entry, settings, task_name, reporter, accept_new_host_key, command=None,
                 fabric_config=None):
    from .session import Session

    return Session(entry, settings, reporter, task_name, command=command,
                   accept_new_host_key=accept_new_host_key,
                   fabric_config=c.config if fabric_config is None else fabric_config)


def on_hosts(c, task_name, body, *, parallel=False, json_mode=False, verbose=False,
             accept_new_host_key=False, require_repo=True, rolling=True, report=None):
    """Run ``body(session)`` on each host; say which were done, failed, not started.

    ``report``, when given, gets [(host, result or None, Failure or None)] in
    host order before the summary, failures included (status prints its table).
    """
    work = targets(c, require_repo=require_repo)
    command = " ".join(["fab"] + sys.argv[1:]) if sys.argv else f"fab {task_name}"
    results, failures = {}, {}

    def one(entry, settings, fabric_config=None):
        reporter = Reporter(entry.name, json_mode=json_mode, verbose=verbose)
        session = open_session(c, entry, settings, task_name, reporter,
                               accept_new_host_key, command, fabric_config)
        session.hosts_in_run = len(work)
        try:
            results[entry.name] = body(session)
        except Failure as exc:
            if isinstance(exc.__cause__, socket.gaierror) and not entry.listed:
                # Most often a hosts.yml name with a typo, or the wrong hosts.yml.
                exc.hint = (f"{entry.name!r} is not a host in {inventory_path()} either: "
                            "add it under hosts:, or check the spelling and your DNS")
            failures[entry.name] = exc
            if len(work) > 1:
                reporter.line(str(exc).replace("\n", "\n" + " " * (reporter.width + 2)))
        finally:
            session.close()

    if parallel and len(work) > 1:
        # A Fabric config of its own per host, cloned here before any thread
        # starts: fabric.Connection() writes into the config it is given, and
        # each write makes Invoke rebuild that config from empty, so threads
        # sharing one saw "No attribute or config key found for 'gateway'".
        threads = [threading.Thread(target=one, args=(entry, settings, c.config.clone()),
                                    daemon=True) for entry, settings in work]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for entry, settings in work:
            one(entry, settings)
            if entry.name in failures and rolling:
                break
    if json_mode:
        for entry, _ in work:
            if entry.name in results and isinstance(results[entry.name], dict):
                emit_json(results[entry.name])
            elif entry.name in failures:
                emit_json(failure_json(failures[entry.name], task_name, entry.name))
    if report is not None:
        report([(e.name, results.get(e.name), failures.get(e.name)) for e, _ in work])
    if len(work) > 1:
        done = [e.name for e, _ in work if e.name in results]
        failed = [e.name for e, _ in work if e.name in failures]
        skipped = [e.name for e, _ in work if e.name not in results and e.name not in failures]
        emit(f"{task_name}: done: {', '.join(done) or '-'}; failed: {', '.join(failed) or '-'}"
             f"; not started: {', '.join(skipped) or '-'}",
             sys.stderr if json_mode else sys.stdout)
    if failures:
        first = next(failures[e.name] for e, _ in work if e.name in failures)
        if len(work) > 1:
            first = Failure(f"{task_name} failed on {', '.join(failures)}",
                            "see each host's lines above", code=first.code)
        first.printed_json = json_mode  # one object per host is on stdout already
        raise first
    return results


HOST_KEY_HELP = "trust an unknown host key on first contact and add it to KNOWN_HOSTS"

# Numeric flags default to strings: Invoke casts a value to its default's type
# while parsing, so `--wait-lock 1.5` (or `--lines x`) with an int default
# would end in a raw ValueError traceback before our check could name the flag.


@task(help={
    "branch": "deploy this branch and, on success, record it as the colour's branch",
    "ref": "deploy this commit (sha), tag or branch",
    "stop_old": "stop the old colour once nginx no longer uses it (no instant rollback)",
    "wait_lock": "wait up to this many seconds for another task's lock",
    "force_unlock": "remove a lock whose holder process is gone from this machine",
    "parallel": "release several hosts at once instead of one by one",
    "json": "print a JSON summary per host on stdout (progress goes to stderr)",
    "verbose": "show the whole Docker build output",
    "accept_new_host_key": HOST_KEY_HELP,
    "no_switch": "stage: build, start and health-check the idle colour; switch nothing "
                 "(`fab promote` later)",
    "canary": "send this percentage of clients (1-99, sticky per client) to the new colour",
    "watch": "watch the access log this many seconds after the switch; revert on 5xx "
             "(a clean canary is promoted)",
    "image": "release this image built on this machine (NAME[:TAG]): shipped, only the "
             "layers the host lacks; no git, no build",
})
@operator_task
def release(c, branch=None, ref=None, stop_old=False, wait_lock="0", force_unlock=False,
            parallel=False, json=False, verbose=False, accept_new_host_key=False,
            no_switch=False, canary=None, watch=None, image=None):
    """Release into the idle colour, check its health, switch nginx to it."""
    from . import localbuild
    from . import promote as staging
    from . import release as pipeline

    if branch is not None:
        branch = cfg.check_flag("--branch", branch, cfg.check_branch)
    if ref is not None:
        ref = cfg.check_flag("--ref", ref, cfg.check_ref)
    wait = cfg.check_flag("--wait-lock", wait_lock, check_seconds)
    percent = None if canary is None else cfg.check_flag("--canary", canary, check_percent)
    seconds = 0 if watch is None else cfg.check_flag("--watch", watch, check_watch)
    check_release_modes(no_switch, percent, seconds, stop_old)
    artifacts = localbuild.artifacts_for(image, branch, ref)  # --image checked before SSH
    if no_switch or percent:
        body = lambda s: staging.release_idle(  # noqa: E731
            s, canary=percent, branch=branch, ref=ref, watch_seconds=seconds,
            stop_old=stop_old, wait_lock=wait, force_unlock=force_unlock)
    else:
        body = lambda s: pipeline.release(  # noqa: E731
            s, branch=branch, ref=ref, stop_old=stop_old, wait_lock=wait,
            force_unlock=force_unlock, watch_seconds=seconds)
    with artifacts:
        on_hosts(c, "release", artifacts.serving(body), parallel=parallel, json_mode=json,
                 verbose=verbose, accept_new_host_key=accept_new_host_key,
                 require_repo=image is None)


def check_release_modes(no_switch, percent, seconds, stop_old):
    """--no-switch switches nothing: no canary, nothing to watch, nothing old to stop."""
    for flag, given, allowed in (
            ("--canary", percent, "one of --no-switch, --canary PERCENT"),
            ("--watch", seconds, "--watch on a release that switches (or on promote)"),
            ("--stop-old", stop_old, "--stop-old on a release that switches (or on promote)")):
        if no_switch and given:
            raise Failure(f"--no-switch with {flag}: a staged release switches nothing, so "
                          f"there is nothing for {flag} to do; allowed: {allowed}",
                          code=BAD_INPUT)
    if percent and stop_old and not seconds:
        raise Failure("--canary with --stop-old but no --watch: the old colour serves the "
                      "other clients; allowed: --stop-old with --watch (stopped after a clean "
                      "watch promotes the canary)", code=BAD_INPUT)


@task(help={
    "watch": "watch the access log this many seconds after the switch; revert on 5xx",
    "stop_old": "stop the old colour once nginx no longer uses it (after a clean watch)",
    "wait_lock": "wait up to this many seconds for another task's lock",
    "json": "print a JSON summary per host on stdout (progress goes to stderr)",
    "accept_new_host_key": HOST_KEY_HELP,
})
@operator_task
def promote(c, watch=None, stop_old=False, wait_lock="0", json=False,
            accept_new_host_key=False):
    """Send everyone to the staged colour or the canary (health, PRE_SWITCH_CMD, switch)."""
    from . import promote as staging

    seconds = 0 if watch is None else cfg.check_flag("--watch", watch, check_watch)
    wait = cfg.check_flag("--wait-lock", wait_lock, check_seconds)
    on_hosts(c, "promote", lambda s: staging.promote(
        s, watch_seconds=seconds, stop_old=stop_old, wait_lock=wait),
        json_mode=json, accept_new_host_key=accept_new_host_key)


@task(help={"json": "print a JSON summary per host", "verbose": "show the whole Docker build output",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def setup(c, json=False, verbose=False, accept_new_host_key=False):
    """Prepare a host (idempotent): check tools, create DEPLOY_DIR, first release."""
    from . import localbuild
    from . import release as pipeline

    with localbuild.artifacts_for(None) as artifacts:
        on_hosts(c, "setup", artifacts.serving(pipeline.setup),
                 json_mode=json, verbose=verbose, accept_new_host_key=accept_new_host_key)


@task(help={"to": "start this kept release (commit or unique prefix, see `fab releases`) "
                  "in the idle colour and switch to it; no git, no build",
            "wait_lock": "wait up to this many seconds for another task's lock",
            "json": "print a JSON summary per host", "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def rollback(c, to=None, wait_lock="0", json=False, accept_new_host_key=False):
    """Point nginx back at the other colour, or (--to COMMIT) at a kept release."""
    from . import release as pipeline
    from . import releases as kept

    wait = cfg.check_flag("--wait-lock", wait_lock, check_seconds)
    if to is not None:
        commit = cfg.check_flag("--to", to, kept.check_commit_prefix)
        on_hosts(c, "rollback", lambda s: kept.rollback_to(s, commit, wait_lock=wait),
                 json_mode=json, accept_new_host_key=accept_new_host_key)
        return
    on_hosts(c, "rollback", lambda s: pipeline.switch(s, None, wait_lock=wait),
             json_mode=json, accept_new_host_key=accept_new_host_key)


@task(help={"json": "one JSON object per kept release (JSON Lines), naming the host",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def releases(c, json=False, accept_new_host_key=False):
    """List the kept releases: commit, branch, built at, size, which colour runs it."""
    from . import releases as kept

    on_hosts(c, "releases", lambda s: kept.releases(s, json), rolling=False, json_mode=json,
             require_repo=False, accept_new_host_key=accept_new_host_key)


@task(name="switch", help={"to": "the colour to make live: blue or green",
                           "wait_lock": "wait up to this many seconds for another task's lock",
                           "json": "print a JSON summary per host",
                           "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def switch_(c, to=None, wait_lock="0", json=False, accept_new_host_key=False):
    """Make a colour live by hand (the seed's release-blue/green.sh), with checks."""
    from . import release as pipeline

    if to is None:
        raise Failure("switch needs --to blue or --to green",
                      "for the other colour, `fab rollback` does the same", code=BAD_INPUT)
    to = cfg.check_flag("--to", to, check_colour)
    wait = cfg.check_flag("--wait-lock", wait_lock, check_seconds)
    on_hosts(c, "switch", lambda s: pipeline.switch(s, to, wait_lock=wait),
             json_mode=json, accept_new_host_key=accept_new_host_key)


@task(help={"json": "one JSON object per host on stdout (JSON Lines)",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def status(c, json=False, accept_new_host_key=False):
    """Show what is live where: colours, commits, containers, health, lock."""
    from .status import status as gather

    from .status import format_statuses

    def show(rows):
        text = "" if json else format_statuses(rows)
        if text:
            emit(text)

    on_hosts(c, "status", lambda s: gather(s, json_mode=json), parallel=True,
             rolling=False, json_mode=json, accept_new_host_key=accept_new_host_key,
             require_repo=False, report=show)


@task(help={"local_port": "local port for the tunnel (default: the idle colour's port, "
                          "or a free one)",
            "colour": "the colour to preview (default: the idle one)",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def preview(c, local_port="0", colour=None, accept_new_host_key=False):
    """Open a tunnel from this machine to the idle colour, for QA before a switch."""
    from .preview import preview as run_preview

    if colour is not None:
        colour = cfg.check_flag("--colour", colour, check_colour)
    port = cfg.check_flag("--local-port", str(local_port),
                          lambda v: 0 if v == "0" else cfg.check_port(v))
    work = targets(c, require_repo=False)
    if len(work) != 1:
        raise Failure("preview opens one tunnel: name one host with -H", None, code=BAD_INPUT)
    entry, settings = work[0]
    reporter = Reporter(entry.name)
    session = open_session(c, entry, settings, "preview", reporter, accept_new_host_key)
    try:
        run_preview(session, colour, port)
    finally:
        session.close()


@task(help={"colour": "blue or green (default: the live colour)",
            "lines": "how many lines from the end (default 100)",
            "follow": "keep printing new lines until Ctrl-C",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def logs(c, colour=None, lines="100", follow=False, accept_new_host_key=False):
    """Print a colour's container logs."""
    from .maintain import logs as show_logs

    if colour is not None:
        colour = cfg.check_flag("--colour", colour, check_colour)
    count = cfg.check_flag("--lines", str(lines), check_lines)
    # Several hosts: each line says whose it is.
    on_hosts(c, "logs", lambda s: show_logs(s, colour, count, follow,
                                            prefix=f"{s.name} | " if s.hosts_in_run > 1 else ""),
             rolling=False,
             require_repo=False, accept_new_host_key=accept_new_host_key)


@task(help={"lines": "how many entries from the end (default 20)",
            "json": "one JSON object per entry (JSON Lines)",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def history(c, lines="20", json=False, accept_new_host_key=False):
    """Show the host's audit log: every release, switch and rollback attempt."""
    from .maintain import history as show_history

    count = cfg.check_flag("--lines", str(lines), check_lines)
    on_hosts(c, "history", lambda s: show_history(s, count, json), rolling=False,
             require_repo=False, accept_new_host_key=accept_new_host_key)


@task(help={"force": "remove the lock even though its holder still runs on this machine",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def unlock(c, force=False, accept_new_host_key=False):
    """Show who holds the host's lock and remove it (not a running task's without --force)."""
    from .maintain import unlock as remove_lock

    on_hosts(c, "unlock", lambda s: remove_lock(s, force=force), rolling=False,
             require_repo=False, accept_new_host_key=accept_new_host_key)


@task(help={"accept_new_host_key": HOST_KEY_HELP})
@operator_task
def repair(c, accept_new_host_key=False):
    """Rebuild state.json from the nginx file and the running containers."""
    from .maintain import repair as rebuild

    on_hosts(c, "repair", rebuild, require_repo=False,
             accept_new_host_key=accept_new_host_key)


@task(help={"action": "on or off",
            "message": "what the plain maintenance page says (without MAINTENANCE_PAGE_FILE)",
            "wait_lock": "wait up to this many seconds for another task's lock",
            "json": "print a JSON summary per host", "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def maintenance(c, action, message=None, wait_lock="0", json=False, accept_new_host_key=False):
    """Answer every public request with 503 and a maintenance page (on), or not (off)."""
    from . import maintenance_mode as mode

    on = cfg.check_flag("maintenance", action, mode.check_action)
    if message is not None:
        message = cfg.check_flag("--message", message, mode.check_message)
        if not on:
            raise Failure("--message goes with `maintenance on`; allowed: `maintenance off` "
                          "alone", code=BAD_INPUT)
    wait = cfg.check_flag("--wait-lock", wait_lock, check_seconds)
    on_hosts(c, "maintenance", lambda s: mode.maintenance(s, on, message or "", wait_lock=wait),
             json_mode=json, accept_new_host_key=accept_new_host_key, require_repo=False)


@task(help={"accept_new_host_key": HOST_KEY_HELP})
@operator_task
def check(c, accept_new_host_key=False):
    """Preflight: tools, ports, disk, nginx -t, git access, SSL files, other apps."""
    from .check import check as preflight

    on_hosts(c, "check", preflight, parallel=True, rolling=False,
             accept_new_host_key=accept_new_host_key)


@task(help={"colour": "the live colour to render the nginx file for (blue or green)"})
@operator_task
def render(c, colour="blue"):
    """Print the rendered nginx and compose files (local only, no SSH)."""
    from .compose import render_compose
    from .nginx import render_nginx

    colour = cfg.check_flag("--colour", colour, check_colour)
    inventory = load_inventory()
    # The files a release to that host would write: its env: layer counts.
    # Several -H hosts: rendered for each (their env: blocks may differ).
    names = cli_hosts(c) or inventory.default_hosts[:1]
    entries = [inventory.resolve(n) for n in names] or [None]
    for entry in entries:
        settings = cfg.load_settings(host_layer=entry.env if entry else None,
                                     require_repo=False)
        print(f"# ---- rendered for {render_source(entry, inventory, bool(cli_hosts(c)))}")
        print(f"# ---- {settings.nginx_file}")
        print(render_nginx(settings, colour), end="")
        print(f"# ---- {settings.deploy_dir}/compose.yml")
        print(render_compose(settings), end="")


def render_source(entry, inventory, named):
    """Whose settings `fab render` used, in one line."""
    if entry is None:
        return ".env and the environment (no -H, no default_hosts)"
    if not entry.listed:
        return f"host {entry.name} (not in {inventory.path}: .env and the environment)"
    how = "-H" if named else "the first of default_hosts; -H picks another"
    return f"host {entry.name} ({how}): .env, its env: in {inventory.path}, the environment"


TASKS = (setup, release, promote, status, rollback, switch_, preview, logs, history, unlock,
         repair, check, render, releases, maintenance)
