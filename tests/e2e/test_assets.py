"""Pages that survive a switch: a page loaded from one release asks for its
fingerprinted assets after the switch to the next, and gets them
(ASSET_PATHS: the new colour's 404 is asked of the old one).

The busybox sample app names its assets by a hash of its version
(loophost.asset_fingerprint): /assets/app-<fp>.js and /static/css/main.<fp>.css
(under the default ASSET_PATHS) and /media/logo-<fp>.txt (outside them).
"""

import re

import pytest

import loophost as lh
from sslkit import ssl_project
from traffic import request, tls_context

pytestmark = pytest.mark.e2e

ASSET_RE = re.compile(r'(?:src|href)="(/[^"]+)"')


def page_assets(port, tls=None):
    """What a browser does first: load the page, read the asset URLs off it."""
    status, _, body = request(port, "/", tls=tls)
    assert status == 200, body
    assets = ASSET_RE.findall(body)
    assert len(assets) == 3, body
    return assets


def bridged(path):
    return path.startswith(("/assets/", "/static/"))  # the default ASSET_PATHS here


def release(project, version, *flags):
    project.app.commit(version)
    project.fab("release", *flags, check=0)


def test_a_page_keeps_its_assets_across_switches(make_project, any_nginx_host):
    """v1's page loaded, the switch to v2, then v1's assets: all answered
    (but the path outside ASSET_PATHS); a release later, v1's assets are
    gone and v2's still bridged; with --stop-old, a 404, never a 502."""
    project = make_project(host=any_nginx_host)
    port = project.public_port
    project.fab("setup", check=0)
    v1 = page_assets(port)
    assert [request(port, a)[0] for a in v1] == [200, 200, 200]

    release(project, "v2")  # green live, blue (v1) still runs
    for path in v1:
        status, headers, body = request(port, path)
        if bridged(path):
            assert (status, body.strip().endswith("of v1")) == (200, True), (path, body)
            assert headers["x-deploy-colour"] == "green"  # nginx routes to green...
            assert headers["x-deploy-bridge"] == "blue"  # ...which asked blue
            assert request(port, path, method="HEAD")[0] == 200
        else:
            assert status == 404, (path, status)  # /media/ is not in ASSET_PATHS
    # A 404 of a method other than GET/HEAD is never sent to the other colour.
    status, headers, _ = request(port, v1[0], method="POST")
    assert "x-deploy-bridge" not in headers and status != 200, (status, headers)
    v2 = page_assets(port)
    for path in v2:
        status, headers, _ = request(port, path)
        assert status == 200 and "x-deploy-bridge" not in headers, (path, status, headers)

    release(project, "v3")  # blue live (v3), green (v2) runs, v1 runs nowhere
    for path in v1:
        assert request(port, path)[0] == 404, path
    for path in filter(bridged, v2):
        status, headers, body = request(port, path)
        assert (status, headers.get("x-deploy-bridge"), body.strip().split(" of ")[-1]) == \
            (200, "green", "v2"), (path, status, headers, body)

    v3 = page_assets(port)
    release(project, "v4", "--stop-old")  # green live (v4), blue (v3) stopped
    for path in filter(bridged, v3):
        status, _, body = request(port, path)
        assert status == 404, (path, status, body)  # the old colour is gone: not a 502

    rendered = project.fab("render", check=0).stdout
    assert "error_page 404 = @" in rendered and "location /assets/ {" in rendered


def test_without_bridging_the_old_page_loses_its_assets(project):
    """ASSET_PATHS empty: the same switch leaves v1's page with 404s."""
    project.set(ASSET_PATHS="")
    port = project.public_port
    project.fab("setup", check=0)
    v1 = page_assets(port)
    release(project, "v2")
    assert [request(port, path)[0] for path in v1] == [404, 404, 404]
    assert "error_page 404" not in project.fab("render", check=0).stdout


def test_assets_are_bridged_over_https(make_project, tmp_path, readable_deploy_dir):
    project = ssl_project(make_project, tmp_path, deploy_dir=readable_deploy_dir)
    tls = (project.server_name, tls_context(project.cert))
    port = project.ssl_port
    project.fab("setup", check=0)
    v1 = page_assets(port, tls=tls)
    release(project, "v2")
    for path in filter(bridged, v1):
        status, headers, body = request(port, path, tls=tls)
        assert (status, headers.get("x-deploy-bridge")) == (200, "blue"), (path, body)


def test_during_a_canary_each_side_bridges_to_the_other(project):
    """blue (v1) live, green (v2) the canary for half the clients: whichever
    colour serves a client, the other release's assets are answered."""
    port = project.public_port
    project.fab("setup", check=0)
    v1 = [p for p in page_assets(port) if bridged(p)]
    release(project, "v2", "--canary", "50")
    v2 = [p.replace(lh.asset_fingerprint("v1"), lh.asset_fingerprint("v2")) for p in v1]
    seen = set()
    for client in range(40):  # split_clients picks by address and User-Agent
        agent = {"User-Agent": f"browser/{client}"}
        for path, owner in [(p, "blue") for p in v1] + [(p, "green") for p in v2]:
            status, headers, body = request(port, path, headers=agent)
            served = headers.get("x-deploy-colour")
            assert status == 200, (client, path, status, headers, body)
            assert headers.get("x-deploy-bridge") == (owner if served != owner else None)
            seen.add(served)
    assert seen == {"blue", "green"}  # both sides were asked
