"""fab status: what is live where, read in one round trip plus a probe per colour."""

from ..configuration.settings import COLOURS
from ..deploy.health import describe_probe
from ..errors import NO_CONNECTION
from ..model.nginx_file import keepalive_verdict
from ..model.pending import canary_of
from ..model.processes import process_counts
from ..model.state import build_of, last_failure, maintenance_of, source_of
from ..output import table


def gather_status(session, json_mode=False):
    """Gather one host's status as plain data (no secrets)."""
    s, name = session.settings, session.name
    session.reporter.quiet = True
    session.host.connect()
    view = session.inspect(history_lines=50, workers=True)
    accepted = session.host.accepted_host_key
    # What runs is what is reported: each colour's drift (its container runs
    # another commit than recorded) joins nginx's in one sentence.
    drifts = [d for d in [view.drift] + [view.colour_drift(c) for c in COLOURS] if d]
    result = {"host": name, "app": s.app_name, "deploy_dir": s.deploy_dir,
              "set_up": view.deploy_dir, "live": view.live,
              "drift": "; ".join(drifts) or None,
              "state_error": view.state_error.message if view.state_error else None,
              "nginx": None, "lock": None, "colours": {},
              # --accept-new-host-key trusted this key just now: show what was trusted.
              "new_host_key": ({"name": accepted[0], "type": accepted[1],
                                "fingerprint": accepted[2], "added_to": accepted[3]}
                               if accepted else None)}
    keepalive = keepalive_verdict(s, view.nginx_version or None)
    result["keepalive"] = {"protected": keepalive.protected, "detail": keepalive.line,
                           "nginx_version": view.nginx_version or None}
    if view.nginx is not None:
        result["nginx"] = {"file": s.nginx_file, "port": view.nginx.port,
                           "colour": view.nginx.served, "header": view.nginx.header_live}
    maintenance = maintenance_of(view.state)  # its token stays on the host
    result["maintenance"] = ({k: v for k, v in maintenance.items() if k != "token"}
                             if maintenance else None)
    canary = canary_of(view)
    result["canary"] = {"colour": canary[0], "percent": canary[1]} if canary else None
    if view.holder is not None:
        result["lock"] = {"holder": view.holder.describe(), "age": round(view.holder.age),
                          "command": view.holder.record.get("command"),
                          "gone": view.holder.local_and_dead}
    for colour in COLOURS:
        record = view.record(colour)
        container = view.containers[colour]
        if container.state == "running":
            healthy, answer = describe_probe(session.host, s, colour, timeout=2.0)
        else:
            healthy, answer = False, "not running"
        attempt = last_failure(view.history, colour)
        failed = attempt is not None
        build = build_of(record)
        role = "live" if colour == view.live else "idle"
        if failed:
            role = "failed" if colour != view.live else role
        if record.get("pending") and colour != view.live:
            role = record["pending"]  # staged, canary or reverted (model/pending.py)
        if canary and colour == canary[0]:
            role = "canary"  # the nginx file is the truth about who is served
        result["colours"][colour] = {
            "role": role, "port": s.port_of(colour),
            "percent": canary[1] if canary and colour == canary[0] else None,
            # What runs there, and the branch a plain release into it follows.
            "branch": build["branch"], "ref": build["ref"], "follows": record.get("branch"),
            "source": source_of(record),
            # The commit its container runs (told by its image); state.json's when
            # no container runs: a stopped colour still has its recorded release.
            "commit": view.runs(colour) or record.get("commit"),
            "recorded_commit": record.get("commit"), "drift": view.colour_drift(colour),
            "image": container.image or record.get("image"),
            "deployed_at": record.get("deployed_at"),
            "deployed_by": record.get("deployed_by"), "signed_by": record.get("signed_by"),
            "container": container.describe(), "healthy": healthy, "health": answer,
            "processes": process_counts(view.state, colour, view.workers, s),
            "last_failure": ({"time": attempt.get("time"), "phase": attempt.get("phase"),
                              "commit": attempt.get("commit"), "error": attempt.get("error")}
                             if failed else None),
        }
    result["ssh"] = session.ssh_stats()  # round trips this status cost
    return result


COLUMNS = ["colour", "role", "branch", "commit", "deployed at", "by", "container", "health"]


def colour_rows(r):
    """One table row per colour of a host's status."""
    return [[colour, c["role"] + (f" {c['percent']}%" if c.get("percent") else ""), source_cell(c), (c["commit"] or "-")[:12],
             c["deployed_at"] or "-", (c["deployed_by"] or "-").split(" (")[0],
             c["container"], c["health"]] for colour, c in r["colours"].items()]


def source_cell(c):
    """What a colour runs; and what a plain release would follow, when that differs."""
    text = c.get("source") or c["branch"] or "-"
    follows = c.get("follows")
    if follows and follows != c["branch"]:
        text += f" (next release: {follows})"
    return text


def notes(r):
    """What needs a reader's attention on one host, a sentence each."""
    name, out = r["host"], []
    page = r.get("maintenance")
    if page:
        said = f": \"{page['message']}\"" if page.get("message") else ""
        out.append(f"MAINTENANCE ON since {page.get('since')} by {page.get('by')}{said}: "
                   f"every public request gets 503; `fab -H {name} maintenance off` ends it")
    key = r.get("new_host_key")
    if key:
        out.append(f"new host key {key['type']} {key['fingerprint']} trusted on first use "
                   f"and added to {key['added_to']}")
    for colour, c in r["colours"].items():
        if c.get("processes"):
            out.append(f"{colour} processes: " + ", ".join(
                f"{kind} {p['running']}/{p['wanted']}"
                + (f" ({p['restarts']} restarts)" if p["restarts"] else "")
                for kind, p in c["processes"].items()))
    for colour, c in r["colours"].items():
        if c.get("signed_by"):
            out.append(f"{colour}: {(c['commit'] or '?')[:12]} signed by {c['signed_by']} "
                       "(ALLOWED_SIGNERS)")
        if c["last_failure"]:
            f = c["last_failure"]
            out.append(f"{colour}: last release failed at {f['time']} in {f['phase']}: "
                       f"{f['error']}")
    if r["state_error"]:
        out.append(f"problem: {r['state_error']}; run `fab -H {name} repair`")
    if r["drift"]:
        out.append(f"drift: {r['drift']}; releases trust nginx and the containers "
                   f"(`fab -H {name} repair` records what runs)")
    keepalive = r.get("keepalive")
    if keepalive and not keepalive["protected"]:
        out.append(f"keep-alive clients: {keepalive['detail']}")
    if r["lock"]:
        lock = r["lock"]
        out.append(f"lock: held by {lock['holder']}"
                   + ("; that process is gone: `fab unlock`" if lock["gone"] else ""))
    return out


def format_status(r):
    """One host's detailed view."""
    head = f"{r['host']}  app {r['app']}"
    if not r["set_up"]:
        return "\n".join(
            [f"{head}: not set up ({r['deploy_dir']} is missing): run `fab -H {r['host']} setup`"]
            + ["  " + note for note in notes(r)][:1 if r.get("new_host_key") else 0])
    nginx = r["nginx"]
    if nginx:
        head += f"  live: {r['live'] or '-'} (nginx -> port {nginx['port']})"
        if r.get("canary"):
            head += f"  canary: {r['canary']['colour']} {r['canary']['percent']}%"
    else:
        head += f"  live: {r['live'] or 'nothing yet'} (no nginx file)"
    body = table(colour_rows(r), COLUMNS)
    lines = [head] + ["  " + line for line in body.splitlines()]
    lines += ["  " + note for note in notes(r)]
    if not r["lock"]:
        lines.append("  lock: free")
    return "\n".join(lines)


def note_mixed(results):
    """Hosts that serve different commits: each result gets ``"fleet": "mixed"``."""
    served = {r.get("live") and (r["colours"].get(r["live"]) or {}).get("commit")
              for r in results.values() if isinstance(r, dict) and r.get("set_up")}
    if len(served) > 1:
        for r in results.values():
            r["fleet"] = "mixed"


def mixed_line(rows):
    """`mixed: web1 serves 1a2b3c4d5e6f, web2 ...` when the hosts' live commits differ."""
    if not any(r and r.get("fleet") == "mixed" for _, r, _ in rows):
        return []
    served = [f"{name} serves {((r['colours'].get(r['live']) or {}).get('commit') or '-')[:12]}"
              for name, r, _ in rows if r and r.get("set_up") and r.get("live")]
    return [f"mixed: the hosts serve different commits: {', '.join(served)}"]


def format_statuses(rows):
    """What `fab status` prints for (host, result, failure) in host order.

    One host: its detailed view (format_status). Several: one table, a row
    per host and colour, with what needs a reader's attention below it.
    """
    if len(rows) == 1:
        # One host that failed: its error says everything, a table would not.
        return format_status(rows[0][1]) if rows[0][1] is not None else ""
    table_rows, host_notes = [], []
    for name, r, failure in rows:
        if r is None:
            role = "unreachable" if failure and failure.code == NO_CONNECTION else "failed"
            table_rows.append([name, "-", "-", role] + ["-"] * 6)
            if failure:
                host_notes.append(f"{name}: {failure.message}")
            continue
        if not r["set_up"]:
            table_rows.append([name, r["app"], "-", "not set up"] + ["-"] * 6)
            host_notes.append(f"{name}: {r['deploy_dir']} is missing: run `fab -H {name} setup`")
            continue
        table_rows += [[name, r["app"]] + row for row in colour_rows(r)]
        host_notes += [f"{name}: {note}" for note in notes(r)]
    body = table(table_rows, ["host", "app"] + COLUMNS)
    answered = "" if all(r for _, r, _ in rows) else " that answered"
    locks = [] if any(r and r["lock"] for _, r, _ in rows) else [
        f"locks: free on every host{answered}"]
    return "\n".join([body] + mixed_line(rows) + host_notes + locks)
