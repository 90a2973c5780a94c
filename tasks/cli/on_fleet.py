"""Several hosts that switch together or not at all (SPEC "Several hosts in one run").

``on_fleet`` runs a flow on every host at once, one thread each, with a
Fabric config of its own (fabric.Connection writes into the config it is
given); the flows meet at deploy/fleet_switch.py's points. It prints one
table (host, colour, commit, result) and the switch spread, and one failure
line naming the hosts that failed and those put back. One host: on_hosts,
as ever.
"""

import sys

from ..deploy.fleet_switch import SOLO, Fleet, FleetAbort, NotStarted
from ..errors import OK, Failure
from ..output import Reporter, emit, emit_json
from .on_hosts import (before_connecting, each_in_a_thread, failure_json, on_hosts,
                       open_session, targets)


def on_fleet(c, task_name, body, *, parallel=False, batch=None, json_mode=False,
             verbose=False, accept_new_host_key=False, require_repo=True, before=None):
    """Run ``body(session, handle)`` on every host, together (see the module).
    ``before``: as on_hosts's."""
    work = targets(c, require_repo=require_repo, before=before)
    if len(work) == 1:
        return on_hosts(c, task_name, lambda session: body(session, SOLO),
                        json_mode=json_mode, verbose=verbose,
                        accept_new_host_key=accept_new_host_key, require_repo=require_repo)
    fleet = Fleet([e.name for e, _ in work], in_order=not parallel, batch=batch)
    command = " ".join(["fab"] + sys.argv[1:]) if sys.argv else f"fab {task_name}"
    results, failures, views, crashes = {}, {}, {}, []
    hooks, app_envs = before_connecting(task_name, work)  # once per run, as on_hosts

    def one(entry, settings, fabric_config):
        reporter = Reporter(entry.name, json_mode=json_mode, verbose=verbose)
        session = open_session(c, entry, settings, task_name, reporter, accept_new_host_key,
                               command, fabric_config)
        session.hosts_in_run = len(work)
        session.app_env = app_envs.get(entry.name)
        try:
            results[entry.name] = body(session, fleet.handle(entry.name))
            fleet.done(entry.name)
        except NotStarted:
            pass
        except Failure as exc:
            failures[entry.name] = exc
            fleet.drop(entry.name, exc)
            reporter.line(str(exc).replace("\n", "\n" + " " * (reporter.width + 2)))
        except BaseException as exc:  # a bug: listed as failed, raised once all are done
            crashes.append(exc)
            failures[entry.name] = Failure(
                f"{task_name} stopped on {entry.name} by an unexpected "
                f"{type(exc).__name__}: {exc}",
                "this is a bug in the tool: the traceback below says where; please report it")
            fleet.drop(entry.name, failures[entry.name])
            reporter.line(str(failures[entry.name]))
        finally:
            views[entry.name] = session.view
            session.close()

    each_in_a_thread(c, work, one)

    names = [e.name for e, _ in work]
    spread = fleet.spread() if not failures else None
    rows = [fleet_row(name, results.get(name), failures.get(name), views.get(name))
            for name in names]
    out = sys.stderr if json_mode else sys.stdout
    objects = []  # what --json prints, one per host; hooks get them too
    for name in names:
        if name in results and isinstance(results[name], dict):
            objects.append({**results[name], **({"switch_spread_s": spread}
                                                if spread is not None else {})})
        elif name in failures:
            objects.append(failure_json(failures[name], task_name, name))
    if hooks is not None:
        failed = next((failures[n] for n in names if n in failures
                       and not isinstance(failures[n], FleetAbort)), None)
        hooks.after(objects, failed.code if failed else (1 if crashes or failures else OK))
    if json_mode:
        for obj in objects:
            emit_json(obj)
    emit(format_fleet(rows, spread), out)
    if crashes:
        raise crashes[0]
    if failures or len(results) < len(names):
        raise fleet_failure(task_name, names, failures, json_mode)
    return results


def fleet_row(name, result, failure, view):
    """(host, colour, commit, result) for the table."""
    if result is not None:
        return (name, result.get("live") or "-", (result.get("commit") or "-")[:12],
                result.get("result", "ok"))
    live = view.live if view is not None else None
    commit = (view.record(live).get("commit") or "-")[:12] if view is not None and live else "-"
    if failure is None:
        what = "not started"
    elif isinstance(failure, FleetAbort):
        what = "put back"
    elif failure.extra.get("result") == "reverted":
        live, what = failure.extra.get("live") or live, "reverted"
    else:
        what = "FAILED"
    return name, live or "-", commit, what


def format_fleet(rows, spread):
    width = max(len("host"), *(len(r[0]) for r in rows))
    lines = [f"{'host':<{width}}  {'colour':<6}  {'commit':<12}  result"]
    lines += [f"{h:<{width}}  {colour:<6}  {commit:<12}  {what}" for h, colour, commit, what in rows]
    if spread is not None:
        lines.append(f"switch spread {spread:.2f} s")
    return "\n".join(lines)


def fleet_failure(task_name, names, failures, json_mode):
    """One Failure for the run: the hosts that failed (their code: 4 a lock,
    3 unreachable, else 1), those put back, those not started."""
    failed = [n for n in names if n in failures and not isinstance(failures[n], FleetAbort)]
    back = [n for n in names if isinstance(failures.get(n), FleetAbort)]
    idle = [n for n in names if n not in failures]
    code = failures[failed[0]].code if failed else 1
    reverted = [n for n in failed if failures[n].extra.get("result") == "reverted"]
    if reverted and reverted == failed:
        exc = Failure(f"{task_name} reverted by the watch on every host: "
                      f"{', '.join(reverted)} serve their old colour again",
                      "see each host's watch lines above", code=code)
        exc.printed_json = json_mode
        return exc
    parts = [f"{task_name} failed on {', '.join(failed) or '?'}; no host changed its live colour"]
    if back:
        parts.append(f"put back: {', '.join(back)}")
    if idle:
        parts.append(f"not started: {', '.join(idle)}")
    exc = Failure("; ".join(parts), "see each host's lines above; the hosts switch together "
                  "or not at all", code=code)
    exc.printed_json = json_mode
    return exc
