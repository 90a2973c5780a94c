"""The per-host runner under every task: checks first, then host by host.

Every value is checked for every named host before the first connection.
With several hosts, changing tasks go host by host and stop at the first
failure (or all at once with --parallel); read-only ones run concurrently.
A Failure becomes two lines and an exit code (and, under --json, one JSON
object on stdout), never a traceback.
"""

import functools
import signal
import socket
import sys
import threading

from invoke import Exit

from ..configuration.inventory import check_identity_file, load_inventory
from ..configuration.settings import load_settings
from ..connection.session import Session
from ..deploy.recover import restore_unrecorded
from ..errors import BAD_INPUT, OK, Failure
from ..model.lock_owner import identity_soon
from ..output import Reporter, emit, emit_json, masked
from .hooks import HOOK_TASKS, RunHooks, config_dir
from .secrets import AppEnvs


# Tasks that take the lock and record their attempt: only their Ctrl-C
# message speaks of the lock and history.
CHANGING_TASKS = ("setup", "release", "rollback", "switch_", "repair", "promote", "maintenance",
                  "remove")
# Tasks that upload app.env (or run the app's code with it): APP_ENV_FILE and
# SECRETS_CMD are read for them, once per run, before any connection.
APP_ENV_TASKS = ("setup", "release", "exec")


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
            raise Exit(masked(str(exc)), code=exc.code) from None
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


def cli_hosts(c):
    """The -H list our Executor put in the config (empty without -H).

    Without that Executor (fabric.yaml beside fabfile.py names it), Fabric
    would run each task once per -H host on its own and this list would be
    missing: fail loudly rather than ignore -H in silence.
    """
    try:
        return list(c.config["bluegreen_hosts"])
    except KeyError:
        raise Failure("Fabric did not load this project's executor (tasks.executor.Executor), "
                      "so -H would be ignored",
                      "run fab from the directory with fabfile.py and fabric.yaml; a fabfile "
                      "of your own needs `tasks: {executor_class: tasks.executor.Executor}` in "
                      "a fabric.yaml beside it (docs/ci.md)", code=BAD_INPUT) from None


def inventory_path():
    return load_inventory().path


def targets(c, require_repo=True, before=None):
    """(entry, settings) for every host the task runs on, all checked first
    (``before(settings)`` too, when given)."""
    inventory = load_inventory()
    entries = inventory.select(cli_hosts(c))
    for entry in entries:  # known before connecting: bad input, not the network
        check_identity_file(entry, inventory.path)
    work = [(e, load_settings(host_layer=e.env, require_repo=require_repo)) for e in entries]
    for _, settings in work if before is not None else ():
        before(settings)
    return work


def before_connecting(task_name, work):
    """What a run does on this machine before it connects: check the task's
    hooks (exit 2), read APP_ENV_FILE (its ${VAR}: exit 2), run the pre-
    hook (exit 1 stops the task), then SECRETS_CMD (exit 1).
    -> (RunHooks or None, {host: app.env bytes or None})."""
    hooks = None
    if task_name in HOOK_TASKS:
        who = identity_soon()
        hooks = RunHooks(task_name, work[0][1], [e.name for e, _ in work], who)
    app_envs = {}
    if task_name in APP_ENV_TASKS:
        envs = AppEnvs(config_dir())
        for _, settings in work:
            envs.check_file(settings)
        if hooks is not None:
            hooks.secrets = envs.secrets
            hooks.before()
        app_envs = {entry.name: envs.for_settings(settings) for entry, settings in work}
    elif hooks is not None:
        hooks.before()
    return hooks, app_envs


def open_session(c, entry, settings, task_name, reporter, accept_new_host_key, command=None,
                 fabric_config=None):
    return Session(entry, settings, reporter, task_name, command=command,
                   accept_new_host_key=accept_new_host_key,
                   fabric_config=c.config if fabric_config is None else fabric_config,
                   after_takeover=restore_unrecorded)


def each_in_a_thread(c, work, one):
    """``one(entry, settings, fabric_config)`` for every host at once, each
    with its own clone of Fabric's config; returns when all are done."""
    threads = [threading.Thread(target=one, args=(entry, settings, c.config.clone()),
                                daemon=True) for entry, settings in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def on_hosts(c, task_name, body, *, parallel=False, json_mode=False, verbose=False,
             accept_new_host_key=False, require_repo=True, rolling=True, report=None,
             across=None, exit_code=None, before=None):
    """Run ``body(session)`` on each host; say which were done, failed, not started.

    ``report``, when given, gets [(host, result or None, Failure or None)] in
    host order before the summary, failures included (status prints its table).
    ``across``, when given, gets the results {host: result} before they are
    printed, to note what concerns them all (status: a mixed fleet).
    ``exit_code``, when given, says the run's exit code when no host failed
    (exec: the command's own), for the post- hook.
    ``before``, when given, checks each host's settings before anything else
    runs, here or there (release --image: the image's Procfile; exit 2).
    """
    work = targets(c, require_repo=require_repo, before=before)
    command = " ".join(["fab"] + sys.argv[1:]) if sys.argv else f"fab {task_name}"
    results, failures, crashes = {}, {}, []
    hooks, app_envs = before_connecting(task_name, work)

    def one(entry, settings, fabric_config=None):
        reporter = Reporter(entry.name, json_mode=json_mode, verbose=verbose)
        session = open_session(c, entry, settings, task_name, reporter,
                               accept_new_host_key, command, fabric_config)
        session.hosts_in_run = len(work)
        session.app_env = app_envs.get(entry.name)
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
        except Exception as exc:
            if fabric_config is None:
                raise  # one host at a time: the traceback is shown at once
            # A bug, in a thread of its own: the host is listed as failed, the
            # run does not exit 0, and the traceback is raised once every host
            # has finished (a thread's exception would otherwise only be printed).
            crashes.append(exc)
            failures[entry.name] = Failure(
                f"{task_name} stopped on {entry.name} by an unexpected "
                f"{type(exc).__name__}: {exc}",
                "this is a bug in the tool: the traceback below says where; please report it")
            reporter.line(str(failures[entry.name]))
        finally:
            session.close()

    if parallel and len(work) > 1:
        # A Fabric config of its own per host, cloned here before any thread
        # starts: fabric.Connection() writes into the config it is given, and
        # each write makes Invoke rebuild that config from empty, so threads
        # sharing one saw "No attribute or config key found for 'gateway'".
        each_in_a_thread(c, work, one)
    else:
        for entry, settings in work:
            one(entry, settings)
            if entry.name in failures and rolling:
                break
    if across is not None:
        across(results)
    objects = []  # what --json prints, one per host; hooks get them too
    for entry, _ in work:
        if entry.name in results and isinstance(results[entry.name], dict):
            objects.append(results[entry.name])
        elif entry.name in failures:
            objects.append(failure_json(failures[entry.name], task_name, entry.name))
    if hooks is not None:
        first_failed = next((failures[e.name] for e, _ in work if e.name in failures), None)
        code = OK if exit_code is None else exit_code()
        hooks.after(objects, first_failed.code if first_failed else (1 if crashes else code))
    if json_mode:
        for obj in objects:
            emit_json(obj)
    if report is not None:
        report([(e.name, results.get(e.name), failures.get(e.name)) for e, _ in work])
    if len(work) > 1:
        done = [e.name for e, _ in work if e.name in results]
        failed = [e.name for e, _ in work if e.name in failures]
        skipped = [e.name for e, _ in work if e.name not in results and e.name not in failures]
        emit(f"{task_name}: done: {', '.join(done) or '-'}; failed: {', '.join(failed) or '-'}"
             f"; not started: {', '.join(skipped) or '-'}",
             sys.stderr if json_mode else sys.stdout)
    if crashes:
        raise crashes[0]
    if failures:
        first = next(failures[e.name] for e, _ in work if e.name in failures)
        if len(work) > 1:
            first = Failure(f"{task_name} failed on {', '.join(failures)}",
                            "see each host's lines above", code=first.code)
        first.printed_json = json_mode  # one object per host is on stdout already
        raise first
    return results
