"""Two apps on one host share its nginx: releasing, rolling back or failing
one never touches the other's files, containers or traffic, and `check`
names a clash between them."""

import re

import loophost as lh  # `loophost` is the fixture
import loadgen
from hostile import snapshot


def two_apps(make_project, sample_app, tmp_path, same_public_port=True):
    """App A (the sample app) and app B (its own repo) on the loophost, both
    on A's PUBLIC_PORT under different names when same_public_port."""
    a = make_project()
    app_b = lh.SampleApp(tmp_path / "app-b")
    b = make_project(app=app_b)
    a.set(SERVER_NAME=f"{a.name}.test")
    b.set(SERVER_NAME=f"{b.name}.test")
    if same_public_port:
        b.set(PUBLIC_PORT=a.public_port)
        b.public_port = a.public_port
    return a, b


def load_on(project, prefix):
    host = project.settings["SERVER_NAME"]
    return loadgen.Load(project.public_port, host=host, rate_fresh=100, threads_fresh=2,
                        rate_keepalive=0, timeout=5, max_seconds=600, name=project.name,
                        accept=lambda status, headers, body: body.startswith(prefix))


def test_releasing_rolling_back_and_failing_one_app_leaves_the_other_alone(
        make_project, sample_app, tmp_path):
    a, b = two_apps(make_project, sample_app, tmp_path)
    sample_app.commit("a1")
    b.app.commit("b1")
    a.fab("setup", check=0)
    b.fab("setup", check=0)
    # logs/ is the app's access log: it grows while the app serves, by design.
    before = snapshot(b, skip=("logs",))
    assert set(before["containers"]) == {f"/{b.name}-blue-1"}

    with load_on(a, "a") as load_a, load_on(b, "b") as load_b:
        load_a.wait_for(20)
        load_b.wait_for(20)
        sample_app.commit("a2")
        a.fab("release", check=0)                  # a2 on green
        sample_app.commit("a3")
        a.fab("release", check=0)                  # a3 on blue
        a.fab("rollback", check=0)                 # a2 on green again
        sample_app.commit("a4", kind="crash")
        failed = a.fab("release", check=1)         # a4 into blue: fails, green stays
        load_a.wait_for(load_a.sent + 20)
        load_b.wait_for(load_b.sent + 20)

    assert "blue is not healthy" in failed.stderr, failed.stderr
    for load in (load_a, load_b):
        load.require(min_requests=100)
    assert set(load_a.summary().colours) == {"blue", "green"}, load_a.summary()
    assert set(load_b.summary().colours) == {"blue"}, load_b.summary()
    status, headers, body = a.get("/version", host=f"{a.name}.test")
    assert (status, headers.get("x-deploy-colour"), body.strip()) == (200, "green", "a2")

    after = snapshot(b, skip=("logs",))
    assert after["nginx"] == before["nginx"]  # byte for byte
    assert after["containers"] == before["containers"]  # same ids, never restarted
    assert after["files"] == before["files"]
    status, headers, body = b.get("/version", host=f"{b.name}.test")
    assert (status, headers.get("x-deploy-colour"), body.strip()) == (200, "blue", "b1")

    # check: sharing PUBLIC_PORT under other names is fine, and says so
    result = a.fab("check", check=0)
    assert f"shared by name with {b.nginx_file}" in result.stdout, result.stdout
    # ...an overlapping SERVER_NAME on that port is a clash naming the other file
    b.set(SERVER_NAME=f"{b.name}.test {a.name}.test")
    result = b.fab("check", check=1)
    assert "PUBLIC_PORT" in result.stdout and str(a.nginx_file) in result.stdout, result.stdout
    assert str(a.nginx_file) in result.stderr  # the one-line summary names it too

    # A third app that reuses A's APP_NAME (its own DEPLOY_DIR and ports)
    # would take over A's nginx file and compose project: check says so.
    c = make_project(name=a.name)
    c.set(SERVER_NAME="c.test")
    result = c.fab("check", check=1)
    assert re.search(rf"APP_NAME +FAIL +{re.escape(str(a.nginx_file))} proxies to port "
                     rf"{a.green_port}, neither BLUE_PORT nor GREEN_PORT", result.stdout), \
        result.stdout
    assert after["containers"] == snapshot(b, skip=("logs",))["containers"]
