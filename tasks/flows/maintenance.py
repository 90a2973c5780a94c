"""fab maintenance on|off: every public request answered 503 with a page.

The page is a file on the host (DEPLOY_DIR/maintenance/index.html): the
operator's MAINTENANCE_PAGE_FILE, or a plain page naming --message. The
nginx file is switched by the same tested reload as a release, and the
record (who, since, the message, a token) goes into state.json, which every
later render reads (state.maintenance_of): a release, promote, rollback or
switch keeps the page on. Health probes and `preview` go to the colours'
own ports, past nginx; bluegreen's checks through nginx send the token
(state.bypass_headers) and reach the colours too.
"""

import secrets
import shlex
import time
import unicodedata

from ..configuration.values import Invalid
from ..connection.http_channel import ProbeError
from ..deploy.steps import Attempt, switch_nginx
from ..errors import FAILED, Failure
from ..model.lock_owner import describe_who
from ..model.nginx_file import maintenance_root
from ..model.pending import canary_of
from ..model.state import format_state, maintenance_of, now_iso

ACTIONS = ("on", "off")
MESSAGE_MAX = 500


def check_action(value):
    """`maintenance on` or `maintenance off`."""
    if value not in ACTIONS:
        raise Invalid("allowed: on or off (`fab -H HOST maintenance on --message TEXT`)")
    return value == "on"


def check_message(value):
    """--message: one line of text for the plain page; no control characters."""
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise Invalid("allowed: text without control characters (no newlines or tabs)")
    if len(value) > MESSAGE_MAX:
        raise Invalid(f"allowed: at most {MESSAGE_MAX} characters")
    return value.strip()


# html.escape's table (quote=True). The html package itself would load its
# entity tables (about 1.5 ms) into every `fab` for these five characters.
HTML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;",
                              "'": "&#x27;"})


def escape_html(text):
    """As html.escape(text): &, <, >, " and ' as character references."""
    return text.translate(HTML_ESCAPES)


def plain_page(app_name, message):
    """The page served when MAINTENANCE_PAGE_FILE is not set (the message HTML-escaped)."""
    text = escape_html(message or "We are making changes and will be back shortly.")
    return ("<!doctype html>\n<html lang=\"en\">\n<meta charset=\"utf-8\">\n"
            f"<title>Down for maintenance</title>\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<body style=\"font-family: sans-serif; margin: 4em auto; max-width: 40em\">\n"
            "<h1>Down for maintenance</h1>\n"
            f"<p>{text}</p>\n"
            "<p>Please try again in a few minutes.</p>\n"
            f"<!-- {escape_html(app_name)}: bluegreen maintenance page -->\n</body>\n</html>\n")


def page_bytes(settings, message):
    """What DEPLOY_DIR/maintenance/index.html holds, and where it came from."""
    if settings.maintenance_page_file:
        with open(settings.maintenance_page_file, "rb") as f:
            return f.read(), f"MAINTENANCE_PAGE_FILE ({settings.maintenance_page_file})"
    return plain_page(settings.app_name, message).encode(), "a plain page"


def with_maintenance(state, record):
    """A new state with the maintenance record (None: off)."""
    new = dict(state)
    new.pop("maintenance", None)
    if record:
        new["maintenance"] = record
    new["updated_at"] = now_iso()
    return new


def public_record(record):
    """What status and --json show of a record: everything but the token."""
    if not record:
        return None
    return {k: v for k, v in record.items() if k != "token"}


def maintenance(session, on, message="", wait_lock=0.0):
    """Turn the maintenance page on (or off) for every public request; record it."""
    s, rep, name = session.settings, session.reporter, session.name
    session.connect()
    with session.locked(wait=wait_lock) as view:
        live, before = view.live, maintenance_of(view.state)
        with Attempt(session, live=live, phase="maintenance",
                     fields={"from_colour": live, "to_colour": live,
                             "maintenance": "on" if on else "off",
                             "message": message or None}) as attempt:
            if not live or view.state is None:
                raise Failure(f"nothing is live on {name} yet: there is no app to put a "
                              "maintenance page in front of",
                              f"`fab -H {name} setup` first (or `fab -H {name} repair` if "
                              "state.json is broken)", code=FAILED)
            changed = on or before is not None  # off when it is off: nothing to do
            if changed:
                record = switch_page(session, attempt, view, on, message, before)
    if not changed:
        rep.line("maintenance is off already; nothing changed")
        return session.summary("ok", timed=False, maintenance="off", changed=False,
                               record=None)
    if on:
        rep.line(f"maintenance on: every public request gets 503 (Retry-After "
                 f"{s.maintenance_retry_after}); releases keep it on; "
                 f"`fab -H {name} maintenance off` ends it")
    else:
        rep.line(f"maintenance off: {live} serves every request again")
    return session.summary("ok", timed=False, maintenance="on" if on else "off", changed=True,
                           record=public_record(record))


def switch_page(session, attempt, view, on, message, before):
    """The page (on), nginx switched to serve it or not, checked through nginx,
    recorded. Returns the new maintenance record (None: off)."""
    s = session.settings
    record = None
    if on:
        with attempt.step("page") as ph:
            data, source = page_bytes(s, message)
            upload_page(session, data, keep_old=before is not None)
            ph.detail = f"{source}, {len(data)} bytes"
        record = {"token": (before or {}).get("token") or secrets.token_hex(16),
                  "since": (before or {}).get("since") or now_iso(),
                  "by": describe_who(session.who), "message": message,
                  "page": "file" if s.maintenance_page_file else "message"}

    try:
        switch_nginx(session, view.live, nginx_version=view.nginx_version,
                     canary=canary_of(view), maintenance=record or {}, attempt=attempt)

        with attempt.step("verify") as ph:
            ph.detail = wait_for_answer(session.host, s, on)

        with attempt.step("record") as ph:
            session.record(format_state(with_maintenance(view.state, record)),
                           session.history_line("ok", **attempt.fields))
            ph.detail = "state.json, history"
    except BaseException:
        if on and before is not None:  # a page was served before this `on`: it is again
            put_back_page(session)
        raise
    if on and before is not None:
        session.run(f"rm -f {shlex.quote(maintenance_root(s) + '/index.html.before')}")
    return record


def upload_page(session, data, keep_old=False):
    """DEPLOY_DIR/maintenance/index.html, readable by nginx's workers (0644).
    ``keep_old``: the page served now is kept beside it (index.html.before)
    until the new one is recorded, so a failed `on` puts it back."""
    root = maintenance_root(session.settings)
    page = shlex.quote(root + "/index.html")
    keep = f" && {{ [ ! -f {page} ] || cp -p {page} {page}.before; }}" if keep_old else ""
    result = session.run(f"umask 022; mkdir -p {shlex.quote(root)} && "
                         f"chmod 755 {shlex.quote(root)}{keep}")
    if result.code != 0:
        raise Failure(f"could not create {root} on {session.name}: "
                      f"{(result.stderr or result.stdout).strip()[-200:]}",
                      f"let the deploy user write {session.settings.deploy_dir}", code=FAILED)
    session.host.put_bytes(data, f"{root}/index.html", mode=0o644)


def put_back_page(session):
    """The page served before a failed `maintenance on`, back in place; never raises
    (the attempt's own failure is what the operator must read)."""
    page = shlex.quote(maintenance_root(session.settings) + "/index.html")
    try:
        session.run(f"[ ! -f {page}.before ] || mv -f {page}.before {page}")
    except Exception:
        session.reporter.line("could not put the previous maintenance page back; "
                              "`fab maintenance on` again sets one")


IN_A_ROW = 3


def wait_for_answer(host, settings, on, bound=10.0, clock=time.monotonic, sleep=time.sleep):
    """Poll nginx (a reload returns before the new workers serve) until it answers
    with the maintenance page (on) or without it (off), a few times in a row."""
    port, tls = (settings.ssl_port, True) if settings.ssl else (settings.public_port, False)
    name = settings.host_header
    deadline, in_a_row, last = clock() + bound, 0, ""
    while True:
        try:
            resp = host.http(port, settings.health_path, host_header=name, timeout=2.0,
                             tls=tls, server_hostname=name if tls else None)
            ours = resp.headers.get("x-deploy-app", settings.app_name) == settings.app_name
            paged = ours and resp.headers.get("x-deploy-maintenance") == "on"
            if ours and paged == on and (not on or resp.status == 503):
                in_a_row += 1
                if in_a_row >= IN_A_ROW:
                    return (f":{port} answers HTTP {resp.status}"
                            + (f" with the page, Retry-After {resp.headers.get('retry-after')}"
                               if on else " from the app"))
                sleep(0.005)
                continue
            last = f"HTTP {resp.status}" + (" with the maintenance page" if paged else "")
        except ProbeError as exc:
            last = exc.message
        in_a_row = 0
        if clock() > deadline:
            raise Failure(f"nginx did not answer {'with' if on else 'without'} the maintenance "
                          f"page on port {port} within {bound:g}s after the reload (last: "
                          f"{last}); the file that was there is back",
                          "another server may own the port or SERVER_NAME; `fab check` "
                          "lists clashes", code=FAILED)
        sleep(0.02)
