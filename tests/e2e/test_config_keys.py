"""Keys that only show at the edges, each proved end to end: the test
would fail if the tool ignored the key.

CLIENT_MAX_BODY_SIZE  413 above the limit, the app reached just below it,
                      a custom value, and 0 (no limit)
PROXY_READ_TIMEOUT    shorter than a slow answer: 504; the default waits
BIND_ADDRESS          another loopback address: the colour port answers
                      there and not on 127.0.0.1
HEALTH_PASSES         an app whose health flips good/bad: one pass is
                      enough with HEALTH_PASSES=1, never with 2
MIN_FREE_DISK         larger than the disk: `check` fails naming it
"""

import http.client

import pytest

import loophost as lh
from released import fab, module_project, output, serves

# CGI scripts added to the busybox sample app (written by its start.sh).
UPLOAD_CGI = r"""
cat > /www/cgi-bin/upload <<'CGI'
#!/bin/sh
# POST /cgi-bin/upload: counts the bytes of the body it was sent.
n=$(head -c "${CONTENT_LENGTH:-0}" | wc -c)
printf 'Content-Type: text/plain\r\n\r\nreceived %s\n' "$n"
CGI
chmod 755 /www/cgi-bin/upload
"""

FLIP_CGI = r"""
cat > /www/cgi-bin/flip <<'CGI'
#!/bin/sh
# Good, bad, good, bad...: never two good answers in a row.
if [ -e /www/flip-state ]; then
    rm /www/flip-state
    printf 'Status: 500\r\nContent-Type: text/plain\r\n\r\nbad\n'
else
    : > /www/flip-state
    printf 'Content-Type: text/plain\r\n\r\ngood\n'
fi
CGI
chmod 755 /www/cgi-bin/flip
"""


def commit_with(app, label, shell):
    """Commit `label` of the busybox app with `shell` run by its start.sh
    before the server starts; push it."""
    app.commit(label)
    start = app.work / "app" / "start.sh"
    text = start.read_text()
    start.write_text(text.replace("exec httpd ", shell + "exec httpd ", 1))
    app._git("add", "-A")
    app._git("commit", "-q", "-m", f"{label}: with CGI scripts")
    app._git("push", "-q", "origin", "HEAD:refs/heads/main")


@pytest.fixture(scope="module")
def shared_project(request, tmp_path_factory, loophost):
    """Set up with the upload endpoint, then released once more so both
    colours run: a `rollback` re-renders the nginx file with the current .env."""
    for p in module_project(request, tmp_path_factory, loophost):
        commit_with(p.app, "v1", UPLOAD_CGI)
        fab(p, "setup")
        fab(p, "release", "--force")  # the same commit: without --force, nothing to release
        yield p


def apply(p, **settings):
    """Set .env keys and put them into nginx's file (a rollback renders it)."""
    p.set(**settings)
    fab(p, "rollback")


def post(p, size, timeout=60):
    """POST `size` bytes to /cgi-bin/upload through nginx -> (status, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", p.public_port, timeout=timeout)
    try:
        conn.request("POST", "/cgi-bin/upload", body=b"x" * size,
                     headers={"Content-Type": "application/octet-stream"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except (ConnectionError, http.client.HTTPException) as exc:
        # nginx may answer 413 and close before it read the whole body.
        return None, repr(exc)
    finally:
        conn.close()


def refused(p, size):
    status, body = post(p, size)
    # nginx answers 413 on the headers and drains the body (lingering
    # close); a client still sending may see the connection closed first.
    assert status == 413 or (status is None and ("Reset" in body or "Pipe" in body)), \
        (size, status, body)


def test_client_max_body_size_default_custom_and_off(shared_project):
    p = shared_project
    mib = 1024 * 1024
    # The default, 10m: just below reaches the app, just above is nginx's 413.
    assert "CLIENT_MAX_BODY_SIZE" not in p.settings
    assert post(p, 10 * mib - 4096) == (200, f"received {10 * mib - 4096}\n")
    refused(p, 10 * mib + 1)

    # A custom value: 64k.
    apply(p, CLIENT_MAX_BODY_SIZE="64k")
    assert "client_max_body_size 64k;" in p.nginx_file.read_text()
    assert post(p, 64 * 1024) == (200, f"received {64 * 1024}\n")
    refused(p, 64 * 1024 + 1)
    refused(p, 1 * mib)

    # 0: no limit; well over the default goes through.
    apply(p, CLIENT_MAX_BODY_SIZE="0")
    assert "client_max_body_size 0;" in p.nginx_file.read_text()
    assert post(p, 12 * mib) == (200, f"received {12 * mib}\n")
    apply(p, CLIENT_MAX_BODY_SIZE=None)


def test_proxy_read_timeout_shorter_than_a_slow_answer_is_a_504(shared_project):
    p = shared_project
    # The default (60s) waits for an answer that takes 3 s.
    status, _, body = p.get("/cgi-bin/slow?3", timeout=30)
    assert (status, body.split()[0]) == (200, "slow"), (status, body)
    apply(p, PROXY_READ_TIMEOUT="1s")
    assert "proxy_read_timeout 1s;" in p.nginx_file.read_text()
    status, headers, body = p.get("/cgi-bin/slow?3", timeout=30)
    assert status == 504, (status, body)
    # A quick answer still passes.
    status, _, body = p.get("/cgi-bin/slow?0", timeout=30)
    assert status == 200, (status, body)
    apply(p, PROXY_READ_TIMEOUT=None)


def test_min_free_disk_larger_than_the_disk_fails_check_naming_it(shared_project):
    p = shared_project
    r = fab(p, "check")
    assert "MIN_FREE_DISK" in output(r)
    r = p.fab("check", env={"BLUEGREEN_MIN_FREE_DISK": "100000g"}, timeout=120)
    out = output(r)
    assert r.returncode == 1 and "Traceback" not in out, out
    line = next(line for line in out.splitlines() if "docker disk" in line)
    assert "FAIL" in line and "MIN_FREE_DISK" in line, line


def test_bind_address_publishes_the_colour_ports_there_only(make_project):
    p = make_project()
    p.set(BIND_ADDRESS="127.0.0.2")
    fab(p, "setup")
    serves(p, "v1", colour="blue")  # nginx reaches blue at 127.0.0.2
    status, _, body = lh.http_get(p.blue_port, "/version", address="127.0.0.2")
    assert (status, body.strip()) == (200, "v1"), (status, body)
    assert not lh.port_accepts(p.blue_port, host="127.0.0.1")
    assert f"127.0.0.2:{p.blue_port}" in p.nginx_file.read_text()


def test_health_passes_counts_good_answers_in_a_row(make_project, sample_app):
    p = make_project()
    commit_with(sample_app, "v1", FLIP_CGI)
    p.set(HEALTH_PATH="/cgi-bin/flip", HEALTH_TIMEOUT=4, HEALTH_PASSES=2)
    # Good and bad by turns: never two good answers in a row.
    r = p.fab("setup", timeout=240)
    out = output(r)
    assert r.returncode == 1 and "Traceback" not in out, out
    assert "did not pass the health check" in out and "/2 good in a row" in out, out
    # One good answer is enough when HEALTH_PASSES says so.
    p.set(HEALTH_PASSES=1)
    r = fab(p, "setup")
    assert "1/1 good answers from blue" in output(r), output(r)
    serves(p, "v1", colour="blue")
