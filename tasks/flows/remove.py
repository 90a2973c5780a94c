"""fab remove: take the app off a host (containers, images, nginx file, DEPLOY_DIR).

Without --yes it only says what it would remove (exit 2). With it, under
the app's lock when DEPLOY_DIR is there: the nginx file goes first (tested
and reloaded, put back if nginx refuses), then the containers of both
colours and any other of the app's, its images, and DEPLOY_DIR (the lock
and history with it). Other apps on the host are untouched.
"""

from ..commands import removal
from ..errors import BAD_INPUT, FAILED, Failure


def describe(settings, found):
    """What a removal takes off the host, one line each."""
    lines = [f"container {name}" for _, name in found["containers"]]
    lines += [f"image {image[:19] if image.startswith('sha256:') else image}"
              for image in found["images"]]
    if found["nginx"]:
        lines.append(f"nginx file {settings.nginx_file} (then a tested reload)")
    if found["deploy_dir"]:
        lines.append(f"{settings.deploy_dir} (state, history, checkouts, app.env)")
    return lines


def remove(session, yes):
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    found = removal.parse_facts(session.run(removal.facts(s)))
    if found["foreign_nginx"]:
        rep.line(f"{s.nginx_file} is not this app's (its header names no app {s.app_name}): "
                 "left alone")
    what = describe(s, found)
    if not what:
        rep.line(f"nothing of {s.app_name} on {name}: nothing to remove")
        return session.summary("ok", timed=False, removed=[])
    if not yes:
        for line in what:
            rep.line(f"would remove: {line}")
        raise Failure(f"remove takes {s.app_name} off {name} for good ({len(what)} items "
                      "above); nothing was removed",
                      f"to go on: fab -H {name} remove --yes", code=BAD_INPUT)
    if found["deploy_dir"]:
        with session.locked(ports=False):
            result = removed(session, found)
            session.holds_lock = False  # it went with DEPLOY_DIR
    else:
        result = removed(session, found)
    gone = [value for key, value in result.marks if key == "removed"]
    summary = session.summary("ok", removed=gone)
    rep.line(f"removed {s.app_name} from {name}: {len(gone)} of {len(what)} items in "
             f"{summary['seconds']:.1f}s; other apps untouched")
    return summary


def removed(session, found):
    """Run the removal; Failure (exit 1, nothing else removed) when nginx refuses."""
    s, name = session.settings, session.name
    with session.reporter.phase("remove") as ph:
        result = session.run(removal.remove(s, found), timeout=600)
        if result.code != 0:
            output = (result.blocks.get("output") or "").strip().splitlines()
            raise Failure(f"nginx refused the configuration without {s.nginx_file} on "
                          f"{name}: {output[-1] if output else 'no output'}; the file is "
                          "back and nothing was removed",
                          "fix what nginx names, then remove again", code=FAILED)
        ph.detail = f"{len(result.marks)} removed"
    return result
