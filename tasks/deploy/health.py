"""The health gate, and the check that nginx really serves the new colour.

Both speak HTTP/1.1 (http.client) over direct-tcpip channels of the open
SSH connection: no local port, nothing to install on the host.
"""

import time

from ..commands.containers import container_state
from ..connection.http_channel import ProbeError
from ..errors import FAILED, Failure
from ..model.compose_file import parse_inspect


class HealthFailure(Failure):
    def __init__(self, message, hint):
        super().__init__(message, hint, code=FAILED)


def probe_address(settings):
    return settings.upstream_address.strip("[]")


def good(status):
    return 200 <= status < 400


def describe_answer(resp):
    """An answer in a few words; a refusal (4xx) shows what was asked, since
    the usual cause is the request itself (path, Host, HTTP version)."""
    if 400 <= resp.status < 500:
        return f"{resp.status_line} to `{resp.request}`"
    return f"HTTP {resp.status}"


def describe_probe(host, settings, colour, timeout=2.0):
    """One probe of a colour's health path: (ok, text) for status and checks."""
    try:
        resp = host.http(settings.port_of(colour), settings.health_path,
                         host_header=settings.host_header, timeout=timeout,
                         bind=probe_address(settings))
    except ProbeError as exc:
        return False, exc.message
    return good(resp.status), describe_answer(resp) + f" on {settings.health_path}"


def gate(host, settings, colour, reporter, clock=time.monotonic, sleep=time.sleep):
    """Wait for HEALTH_PASSES good answers in a row before HEALTH_TIMEOUT.

    Stops early when the container has exited or is crash-looping. Returns
    a one-line description; raises HealthFailure.
    """
    need, interval = settings.health_passes, settings.health_interval
    start = clock()
    deadline = start + settings.health_timeout
    passes = attempts = 0
    last_reason, last_shown, last_container_check = "", None, -1e9
    port, path = settings.port_of(colour), settings.health_path
    while True:
        attempts += 1
        remaining = deadline - clock()
        try:
            resp = host.http(port, path, host_header=settings.host_header,
                             timeout=round(max(0.5, min(remaining, 5.0)), 1),
                             bind=probe_address(settings))
            reason = describe_answer(resp)
            ok = good(resp.status)
        except ProbeError as exc:
            reason, ok = exc.message, False
        elapsed = clock() - start
        if ok:
            passes += 1
            if passes >= need:
                return f"{passes}/{need} good answers from {colour} ({reason} {path})"
        else:
            passes = 0
        if reason != last_shown or attempts % 5 == 0:
            reporter.progress(f"health attempt {attempts} at {elapsed:4.1f}s: {reason}"
                              + (f" ({passes}/{need} good)" if ok else ""))
            last_shown = reason
        last_reason = reason
        if not ok and clock() - last_container_check >= 1.0:
            last_container_check = clock()
            container = parse_inspect(
                host.run(container_state(settings, colour)).blocks.get("containers", ""),
                settings)[colour]
            if container.crashed or container.state == "missing":
                raise HealthFailure(
                    f"{colour} is not healthy: its container {container.describe()}; "
                    "nothing live changed",
                    "the app exits at start: its log lines are above; fix and release again")
        if clock() + interval > deadline:
            raise HealthFailure(
                f"{colour} did not pass the health check within HEALTH_TIMEOUT="
                f"{settings.health_timeout:g}s (last answer: {last_reason}; "
                f"{passes}/{need} good in a row); nothing live changed",
                f"check that the app answers {path} on $PORT; its log lines are above. "
                "Raise HEALTH_TIMEOUT if it only starts slowly")
        sleep(interval)


VERIFY_IN_A_ROW = 3


def verify_public(host, settings, colour, reporter, bound=10.0,
                  clock=time.monotonic, sleep=time.sleep, headers=None):
    """Poll nginx until its answers name ``colour`` (a reload returns before
    the new workers serve). Returns a description; raises HealthFailure.

    ``headers``: sent with every probe (state.bypass_headers: through a
    maintenance page to the colours)."""
    if settings.ssl:
        port, tls = settings.ssl_port, True
    else:
        port, tls = settings.public_port, False
    name = settings.host_header
    deadline = clock() + bound
    attempts, seen, in_a_row = 0, "", 0
    while True:
        attempts += 1
        try:
            resp = host.http(port, settings.health_path, host_header=name, timeout=2.0,
                             tls=tls, server_hostname=name if tls else None,
                             **({"headers": headers} if headers else {}))
            seen = resp.headers.get("x-deploy-colour", "")
            # Apps sharing a port all answer with a colour: another app's
            # server (the port's default while the reload is under way, or
            # the owner of a clashing SERVER_NAME) must not pass for ours.
            # Files rendered before X-Deploy-App existed name no app.
            app = resp.headers.get("x-deploy-app", settings.app_name)
            # A canary's file names the colour that served this client: after a
            # switch away from a canary, an old worker's answer can name the
            # target too (this client in its share), and must not pass.
            canary_file = resp.headers.get("x-deploy-canary")
            if seen == colour and app == settings.app_name and not canary_file:
                # After a reload nginx's master starts the new workers, waits
                # 100 ms, then tells the old ones to stop accepting; until
                # then both answer (measured here: old ones most often). A
                # few answers in a row from the new file, 5 ms apart, before
                # the operator (or the next request) is told it is done.
                in_a_row += 1
                if in_a_row >= VERIFY_IN_A_ROW:
                    scheme = "https" if tls else "http"
                    return f"{scheme} :{port} answers from {colour} (HTTP {resp.status})"
                sleep(0.005)
                continue
            seen = (f"answers from {seen or 'an unmarked server'}"
                    + (f" of app {app}" if app != settings.app_name else "")
                    + (" by the canary's nginx file" if canary_file else "")
                    + f" (HTTP {resp.status})")
        except ProbeError as exc:
            seen = exc.message
        in_a_row = 0
        if clock() > deadline:
            raise HealthFailure(
                f"nginx did not serve {colour} on port {port} within {bound:g}s after the "
                f"reload (last: {seen})",
                "another server may own the port or SERVER_NAME; `fab check` "
                "lists clashes")
        # nginx serves the new file alone 100-120 ms after `nginx -s reload`
        # returns (measured on the loopback host); a probe over the open
        # connection costs a round trip (~3 ms), so poll finely for the
        # first ~0.3 s, then back off.
        sleep(0.005 if attempts < 40 else 0.05 if attempts < 70 else 0.2)


def verify_canary(host, settings, live, canary, reporter, bound=10.0,
                  clock=time.monotonic, sleep=time.sleep, headers=None):
    """Poll nginx, as many different clients, until both colours have answered.

    split_clients picks the colour by the client's address and User-Agent:
    probes that differ in their User-Agent are different clients, so some
    fall in the canary's share. The canary answering proves the new file
    serves (the old one never sent anyone there); the live colour answering
    proves the rest still reach it. Returns a description; raises HealthFailure.
    """
    port, tls = (settings.ssl_port, True) if settings.ssl else (settings.public_port, False)
    name = settings.host_header
    deadline = clock() + bound
    seen, client, last = {}, 0, ""
    while True:
        client += 1
        try:
            resp = host.http(port, settings.health_path, host_header=name, timeout=2.0,
                             tls=tls, server_hostname=name if tls else None,
                             user_agent=f"bluegreen-verify/{client}",
                             **({"headers": headers} if headers else {}))
            colour = resp.headers.get("x-deploy-colour", "")
            app = resp.headers.get("x-deploy-app", settings.app_name)
            if app == settings.app_name and colour in (live, canary) and good(resp.status):
                seen[colour] = seen.get(colour, 0) + 1
            last = f"{colour or 'an unmarked server'} answered HTTP {resp.status}"
        except ProbeError as exc:
            last = exc.message
        if seen.get(canary) and seen.get(live):
            return (f":{port} answers from both: {live} and the {canary} canary "
                    f"({client} probes as different clients)")
        if clock() > deadline:
            missing = canary if not seen.get(canary) else live
            raise HealthFailure(
                f"nginx did not serve {missing} on port {port} within {bound:g}s after the "
                f"canary reload ({client} probes as different clients; last: {last})",
                "another server may own the port or SERVER_NAME; `fab check` lists clashes")
        sleep(0.005 if client < 400 else 0.05)
