"""Keep-alive clients at a switch: the nginx file carries keepalive_min_timeout
when the host's nginx supports it (1.27.4+), and `check` and `status` say
whether keep-alive clients are protected, and what to do when they are not;
under keep-alive load across switches on the current nginx, `off` shows
resets and `auto` none (NOTES: keep-alive resets end with nginx 1.27.4+)."""

import json
import re

import loadgen
from released import fab, output


def test_current_nginx_protects_keep_alive_clients(make_project, loophost_current):
    p = make_project(host=loophost_current)
    fab(p, "setup")
    assert "keepalive_min_timeout 5s;" in p.nginx_file.read_text()
    out = output(fab(p, "check"))
    assert f"protected: nginx {loophost_current.nginx.version}" in out, out
    status = json.loads(fab(p, "status", "--json").stdout)
    assert status["keepalive"]["protected"] is True
    assert "keep-alive clients" not in fab(p, "status").stdout


def test_an_older_nginx_is_named_with_what_to_do(make_project, loophost):
    p = make_project(host=loophost)
    fab(p, "setup")
    assert "keepalive_min_timeout" not in p.nginx_file.read_text().replace(
        "# keepalive_min_timeout", "")  # auto: nothing written for 1.22
    out = output(fab(p, "check"))
    assert f"not protected: nginx {loophost.nginx.version} is older than 1.27.4" in out, out
    assert "install nginx 1.27.4+" in out
    assert "keep-alive clients: not protected" in fab(p, "status").stdout

    # A duration is always written: nginx -t on 1.22 refuses it, the old file stays.
    before = p.nginx_file.read_bytes()
    p.set(KEEPALIVE_MIN_TIMEOUT="5s")
    p.app.commit("v2")
    r = fab(p, "release", code=1)
    assert "keepalive_min_timeout needs nginx 1.27.4 or later" in output(r), output(r)
    assert p.nginx_file.read_bytes() == before


# Keep-alive clients that are idle most of the time: 16 connections, a
# request every 0.25 s each. At a reload, an old worker closes every idle
# keep-alive connection at once unless keepalive_min_timeout holds it; the
# next request on such a connection then meets a closed socket (a reset).
KEEPALIVE_CONNECTIONS, KEEPALIVE_RATE = 16, 64
SWITCHES = 4


def resets_per_switch(p, mode):
    """Set KEEPALIVE_MIN_TIMEOUT=mode, then SWITCHES rollbacks under the
    keep-alive load: [resets seen after each switch], and the load's records."""
    p.set(KEEPALIVE_MIN_TIMEOUT=mode)
    fab(p, "rollback")  # the running workers now have the file of this mode
    fab(p, "rollback")
    load = loadgen.Load(p.public_port, rate_fresh=0, rate_keepalive=KEEPALIVE_RATE,
                        keepalive_connections=KEEPALIVE_CONNECTIONS, timeout=5.0,
                        max_seconds=600, name=f"keepalive-{mode}")
    windows = []
    with load:
        load.wait_for(2 * KEEPALIVE_CONNECTIONS)  # every connection served and idle
        for _ in range(SWITCHES):
            start = load.now()
            fab(p, "rollback")
            # Each connection's next requests, after the old workers' shutdown.
            load.wait_for(load.sent + 2 * KEEPALIVE_CONNECTIONS, timeout=60)
            windows.append((start, load.now()))
    records = load.snapshot()
    resets = [[r for r in records if lo <= r.t < hi and r.error == "reset"]
              for lo, hi in windows]
    return [len(found) for found in resets], records


def test_keepalive_min_timeout_is_what_saves_keep_alive_clients(make_project, loophost_current):
    p = make_project(host=loophost_current)
    fab(p, "setup")
    p.app.commit("v2")
    fab(p, "release")  # both colours run: each rollback is a switch

    off, records = resets_per_switch(p, "off")
    assert not re.search(r"^\s*keepalive_min_timeout\b", p.nginx_file.read_text(), re.M)
    # Without the directive every switch resets idle keep-alive connections.
    assert all(n >= 1 for n in off), (off, loadgen.summarise(records).text())

    auto, records = resets_per_switch(p, "auto")
    print(f"\nresets per switch: off {off}, auto {auto}")
    assert re.search(r"^\s*keepalive_min_timeout 5s;", p.nginx_file.read_text(), re.M)
    failed = [r for r in records if not r.ok]
    assert auto == [0] * SWITCHES and not failed, loadgen.summarise(records).text()
    assert len(records) >= KEEPALIVE_RATE * SWITCHES, len(records)  # the load ran
