"""Keep-alive clients at a switch: the nginx file carries keepalive_min_timeout
when the host's nginx supports it (1.27.4+), and `check` and `status` say
whether keep-alive clients are protected, and what to do when they are not."""

import json

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
