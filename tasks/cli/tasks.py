"""The tasks operators call. Thin: each reads like its steps in the README.

Flags are checked here (flags.py: check_flag) before any connection;
on_hosts.py runs each task's flow (flows/) on its hosts, one Session each.
"""

from .. import flows
from ..configuration.inventory import load_inventory
from ..configuration.settings import load_settings
from ..configuration.values import check_branch, check_port, check_ref
from ..errors import BAD_INPUT, Failure
from ..flows.maintenance import check_action, check_message
from ..flows.release import ReleaseRequest
from ..flows.status import format_statuses
from ..model.compose_file import render_compose
from ..model.kept_releases import check_commit_prefix
from ..model.nginx_file import render_nginx
from ..output import Reporter, emit
from ..shipping.local_build import artifacts_for
from .flags import (check_batch, check_colour, check_flag, check_lines, check_percent,
                    check_process_type, check_release_modes, check_seconds, check_watch, task)
from .on_fleet import on_fleet
from .on_hosts import cli_hosts, on_hosts, open_session, operator_task, targets
from .parser_patch import parse_errors_are_bad_input

parse_errors_are_bad_input()


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
    "batch": "with several hosts: N at a time, each batch switched together; a failure "
             "switches back the earlier batches too",
    "plan": "a dry run: say which commit goes into which colour, built where, what "
            "would ship; reads the host, changes nothing, takes no lock",
    "force": "release even when the live colour already runs this commit with the same "
             "app env and files (the rollback target is replaced)",
})
@operator_task
def release(c, branch=None, ref=None, stop_old=False, wait_lock="0", force_unlock=False,
            parallel=False, json=False, verbose=False, accept_new_host_key=False,
            no_switch=False, canary=None, watch=None, image=None, batch=None, plan=False,
            force=False):
    """Release into the idle colour, check its health, switch nginx to it."""

    if branch is not None:
        branch = check_flag("--branch", branch, check_branch)
    if ref is not None:
        ref = check_flag("--ref", ref, check_ref)
    wait = check_flag("--wait-lock", wait_lock, check_seconds)
    percent = None if canary is None else check_flag("--canary", canary, check_percent)
    seconds = 0 if watch is None else check_flag("--watch", watch, check_watch)
    check_release_modes(no_switch, percent, seconds, stop_old)
    if batch is not None:
        batch = check_flag("--batch", batch, lambda v: check_batch(v, percent, no_switch))
    artifacts = artifacts_for(image, branch, ref)  # --image checked before SSH
    # ... and its Procfile, against each host's SCALE (a commit's is read with it).
    before = artifacts.processes if image else None
    with artifacts:
        request = ReleaseRequest(branch=branch, ref=ref, stop_old=stop_old, wait_lock=wait,
                                 force_unlock=force_unlock, watch_seconds=seconds,
                                 no_switch=no_switch, percent=percent, artifacts=artifacts,
                                 batch=batch, force=force)
        if plan:  # reads every host (side by side), changes nothing: exit 0
            on_hosts(c, "release", lambda session: flows.plan.show_plan(session, request),
                     parallel=True, rolling=False, json_mode=json,
                     accept_new_host_key=accept_new_host_key, require_repo=image is None,
                     before=before)
            return
        if percent or no_switch:  # host by host, or --parallel: nothing switches together
            on_hosts(c, "release", lambda session: flows.release.release(session, request),
                     parallel=parallel, json_mode=json, verbose=verbose,
                     accept_new_host_key=accept_new_host_key, require_repo=image is None,
                     before=before)
            return
        on_fleet(c, "release", lambda session, fleet: flows.release.release_live(
            session, request, fleet=fleet), parallel=parallel, batch=batch, json_mode=json,
            verbose=verbose, accept_new_host_key=accept_new_host_key,
            require_repo=image is None, before=before)


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

    seconds = 0 if watch is None else check_flag("--watch", watch, check_watch)
    wait = check_flag("--wait-lock", wait_lock, check_seconds)
    on_fleet(c, "promote", lambda session, fleet: flows.promote.promote_staged(
        session, watch_seconds=seconds, stop_old=stop_old, wait_lock=wait, fleet=fleet),
        parallel=True, json_mode=json, accept_new_host_key=accept_new_host_key)


@task(help={"json": "print a JSON summary per host", "verbose": "show the whole Docker build output",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def setup(c, json=False, verbose=False, accept_new_host_key=False):
    """Prepare a host (idempotent): check tools, create DEPLOY_DIR, first release."""

    with artifacts_for(None) as artifacts:
        on_hosts(c, "setup", lambda session: flows.setup.setup(session, artifacts),
                 json_mode=json, verbose=verbose, accept_new_host_key=accept_new_host_key)


@task(help={"to": "start this kept release (commit or unique prefix, see `fab releases`) "
                  "in the idle colour and switch to it; no git, no build",
            "wait_lock": "wait up to this many seconds for another task's lock",
            "json": "print a JSON summary per host", "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def rollback(c, to=None, wait_lock="0", json=False, accept_new_host_key=False):
    """Point nginx back at the other colour, or (--to COMMIT) at a kept release."""

    wait = check_flag("--wait-lock", wait_lock, check_seconds)
    if to is not None:
        commit = check_flag("--to", to, check_commit_prefix)
        on_hosts(c, "rollback", lambda session: flows.releases.rollback_to(
            session, commit, wait_lock=wait),
                 json_mode=json, accept_new_host_key=accept_new_host_key)
        return
    on_fleet(c, "rollback", lambda session, fleet: flows.switch.switch(
        session, None, wait_lock=wait, fleet=fleet), parallel=True, json_mode=json,
        accept_new_host_key=accept_new_host_key)


@task(help={"json": "one JSON object per kept release (JSON Lines), naming the host",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def releases(c, json=False, accept_new_host_key=False):
    """List the kept releases: commit, branch, built at, size, which colour runs it."""

    on_hosts(c, "releases", lambda session: flows.releases.releases(session, json),
             rolling=False, json_mode=json,
             require_repo=False, accept_new_host_key=accept_new_host_key)


@task(name="switch", help={"to": "the colour to make live: blue or green",
                           "wait_lock": "wait up to this many seconds for another task's lock",
                           "json": "print a JSON summary per host",
                           "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def switch_(c, to=None, wait_lock="0", json=False, accept_new_host_key=False):
    """Make a colour live by hand (the seed's release-blue/green.sh), with checks."""

    if to is None:
        raise Failure("switch needs --to blue or --to green",
                      "for the other colour, `fab rollback` does the same", code=BAD_INPUT)
    to = check_flag("--to", to, check_colour)
    wait = check_flag("--wait-lock", wait_lock, check_seconds)
    on_fleet(c, "switch", lambda session, fleet: flows.switch.switch(
        session, to, wait_lock=wait, fleet=fleet), parallel=True, json_mode=json,
        accept_new_host_key=accept_new_host_key)


@task(help={"json": "one JSON object per host on stdout (JSON Lines)",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def status(c, json=False, accept_new_host_key=False):
    """Show what is live where: colours, commits, containers, health, lock."""

    def show(rows):
        text = "" if json else format_statuses(rows)
        if text:
            emit(text)

    on_hosts(c, "status", lambda session: flows.status.gather_status(session, json_mode=json),
             parallel=True,
             rolling=False, json_mode=json, accept_new_host_key=accept_new_host_key,
             require_repo=False, report=show, across=flows.status.note_mixed)


@task(help={"local_port": "local port for the tunnel (default: the idle colour's port, "
                          "or a free one)",
            "colour": "the colour to preview (default: the idle one)",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def preview(c, local_port="0", colour=None, accept_new_host_key=False):
    """Open a tunnel from this machine to the idle colour, for QA before a switch."""

    if colour is not None:
        colour = check_flag("--colour", colour, check_colour)
    port = check_flag("--local-port", str(local_port),
                          lambda v: 0 if v == "0" else check_port(v))
    work = targets(c, require_repo=False)
    if len(work) != 1:
        raise Failure("preview opens one tunnel: name one host with -H", None, code=BAD_INPUT)
    entry, settings = work[0]
    reporter = Reporter(entry.name)
    session = open_session(c, entry, settings, "preview", reporter, accept_new_host_key)
    try:
        flows.preview.open_preview(session, colour, port)
    finally:
        session.close()


@task(help={"colour": "blue or green (default: the live colour)",
            "lines": "how many lines from the end (default 100)",
            "follow": "keep printing new lines until Ctrl-C",
            "process": "a worker type of the Procfile (default: web)",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def logs(c, colour=None, lines="100", follow=False, process=None, accept_new_host_key=False):
    """Print a colour's container logs (--process TYPE: a worker type's)."""

    if colour is not None:
        colour = check_flag("--colour", colour, check_colour)
    count = check_flag("--lines", str(lines), check_lines)
    if process is not None:
        process = check_flag("--process", process, check_process_type)
    # Several hosts: each line says whose it is.
    on_hosts(c, "logs", lambda session: flows.host_care.logs(
        session, colour, count, follow,
        prefix=f"{session.name} | " if session.hosts_in_run > 1 else "", process=process),
             rolling=False,
             require_repo=False, accept_new_host_key=accept_new_host_key)


@task(help={"lines": "how many entries from the end (default 20)",
            "json": "one JSON object per entry (JSON Lines)",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def history(c, lines="20", json=False, accept_new_host_key=False):
    """Show the host's audit log: every release, switch and rollback attempt."""

    count = check_flag("--lines", str(lines), check_lines)
    on_hosts(c, "history", lambda session: flows.host_care.history(session, count, json),
             rolling=False,
             require_repo=False, accept_new_host_key=accept_new_host_key)


@task(help={"force": "remove the lock even though its holder still runs on this machine",
            "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def unlock(c, force=False, accept_new_host_key=False):
    """Show who holds the host's lock and remove it (not a running task's without --force)."""

    on_hosts(c, "unlock", lambda session: flows.host_care.unlock(session, force=force),
             rolling=False,
             require_repo=False, accept_new_host_key=accept_new_host_key)


@task(help={"accept_new_host_key": HOST_KEY_HELP})
@operator_task
def repair(c, accept_new_host_key=False):
    """Rebuild state.json from the nginx file and the running containers."""

    on_hosts(c, "repair", flows.host_care.repair, require_repo=False,
             accept_new_host_key=accept_new_host_key)


@task(help={"action": "on or off",
            "message": "what the plain maintenance page says (without MAINTENANCE_PAGE_FILE)",
            "wait_lock": "wait up to this many seconds for another task's lock",
            "json": "print a JSON summary per host", "accept_new_host_key": HOST_KEY_HELP})
@operator_task
def maintenance(c, action, message=None, wait_lock="0", json=False, accept_new_host_key=False):
    """Answer every public request with 503 and a maintenance page (on), or not (off)."""

    on = check_flag("maintenance", action, check_action)
    if message is not None:
        message = check_flag("--message", message, check_message)
        if not on:
            raise Failure("--message goes with `maintenance on`; allowed: `maintenance off` "
                          "alone", code=BAD_INPUT)
    wait = check_flag("--wait-lock", wait_lock, check_seconds)
    on_hosts(c, "maintenance",
             lambda session: flows.maintenance.maintenance(session, on, message or "",
                                                           wait_lock=wait),
             json_mode=json, accept_new_host_key=accept_new_host_key, require_repo=False)


@task(help={"accept_new_host_key": HOST_KEY_HELP})
@operator_task
def check(c, accept_new_host_key=False):
    """Preflight: tools, ports, disk, nginx -t, git access, SSL files, other apps."""

    on_hosts(c, "check", flows.check.check, parallel=True, rolling=False,
             accept_new_host_key=accept_new_host_key)


@task(help={"colour": "the live colour to render the nginx file for (blue or green)"})
@operator_task
def render(c, colour="blue"):
    """Print the rendered nginx and compose files (local only, no SSH)."""

    colour = check_flag("--colour", colour, check_colour)
    inventory = load_inventory()
    # The files a release to that host would write: its env: layer counts.
    # Several -H hosts: rendered for each (their env: blocks may differ).
    names = cli_hosts(c) or inventory.default_hosts[:1]
    entries = [inventory.resolve(n) for n in names] or [None]
    for entry in entries:
        settings = load_settings(host_layer=entry.env if entry else None,
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
