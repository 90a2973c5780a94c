"""The seed's own kind of app: Clojure on the JVM with PostgreSQL and migrations.

One project for the whole module (a JVM starts slowly): the Clojure sample
of scripts/jvmapp.py, a repository with no Dockerfile, built with the
rendered Dockerfile.clojure.j2 FROM CLOJURE_BASE_IMAGE (the Debian-made JVM
image), run with APP_CMD, migrated by PRE_SWITCH_CMD (a Clojure program
using JDBC) in the new colour's container, against a PostgreSQL cluster of
its own. DATABASE_URL reaches both colours through APP_ENV_FILE.

The database: the cluster listens on 127.0.0.1 (the tests' psql uses its
Unix socket) and on the Docker bridge's own address (172.17.0.1 here), which
is where containers on the product's default DOCKER_NETWORK=bridge reach the
host; with the test daemon's masquerading and iptables off, that traffic
never leaves the machine. (A container on the bridge cannot reach the
host's 127.0.0.1: that is its own loopback.)

The tests run in file order and build on each other: setup (v1), an expand
migration (v2 in green), a failing migration, a hanging one, a plain
release after both, and the database going away.
"""

import secrets
import time

import pytest

import jvmapp
import loadgen
from released import fab, output, serves, state_file, status_json, version, wait_until
from support.project import Project

FAB_TIMEOUT = 300
# 100 requests/s through nginx to `/`, which queries the items table: the
# live colour must keep answering from its own schema through every release.
RATE = 50.0  # per kind: fresh connections and keep-alive ones


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL cluster of its own on a free loopback port; dropped after."""
    cluster = jvmapp.PgCluster(f"bgt_{secrets.token_hex(3)}")
    try:
        cluster.start()
    except RuntimeError as e:
        cluster.stop()
        pytest.fail(f"could not start a PostgreSQL cluster: {e}\n"
                    "run scripts/setup-host.sh as root (it installs postgresql)", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def jvm_image():
    image = jvmapp.jvm_image()
    if not jvmapp.lh.base_image_present(image):
        pytest.fail(f"the JVM base image {image} is missing: run scripts/setup-host.sh as root "
                    "(debootstrap + docker import, about 2.5 minutes once per machine)",
                    pytrace=False)
    return image


@pytest.fixture(scope="module")
def clj(request, tmp_path_factory, loophost_current, postgres, jvm_image):
    """The Clojure project, set up: v1 (migration 001) released into blue.

    On the loopback host with a current nginx (1.27.4+): its
    keepalive_min_timeout spares keep-alive clients the reset a reload can
    cause on older ones (NOTES.md), so 0 failed counts both kinds of client."""
    base = tmp_path_factory.mktemp("clojure")
    app = jvmapp.ClojureApp(base / "clojure-app")
    app.commit("v1")
    project = Project(base / "p", loophost_current, app)
    url = postgres.create_database(project.name.replace("-", "_"), "app_" + secrets.token_hex(3),
                                   secrets.token_hex(12))
    env_file = base / "app.env"
    env_file.write_text(f"DATABASE_URL={url}\n")
    project.set(CLOJURE_BASE_IMAGE=jvm_image, APP_CMD=jvmapp.APP_CMD,
                PRE_SWITCH_CMD=jvmapp.MIGRATE_CMD, APP_ENV_FILE=env_file,
                HEALTH_TIMEOUT=120, HEALTH_INTERVAL=0.5, STOP_TIMEOUT=10)
    project.db = postgres
    project.db_name = project.name.replace("-", "_")
    try:
        fab(project, "setup", timeout=FAB_TIMEOUT)
        yield project
    finally:
        project.remove()


def applied(project):
    return project.db.psql("SELECT string_agg(name, ',' ORDER BY name) FROM schema_migrations",
                           db=project.db_name)


# A client's patience. The new colour's JVMs (the app, then the migration)
# take the CPU from the live one on this shared 2-core machine: at a load
# average of 40 one request to the live colour took over 5 s, during the
# migration, long before the switch. 10 s stays far below a browser's.
PATIENCE = 10.0


def items_load(project, name):
    """100 requests/s to `/` (the page that reads the database) through nginx."""
    return loadgen.Load(project.public_port, path="/", rate_fresh=RATE, rate_keepalive=RATE,
                        threads_fresh=8, keepalive_connections=8, timeout=PATIENCE,
                        max_seconds=400,
                        accept=lambda status, headers, body: " items " in body, name=name)


def release_under_load(project, *args, code):
    """`fab release ARGS` while the load runs (and 2 s after it returns); the result."""
    with items_load(project, "release") as load:
        load.wait_for(100)
        result = fab(project, "release", *args, code=code, timeout=FAB_TIMEOUT)
        time.sleep(2)
    print(load.summary().text())
    load.require(min_requests=300, max_failed=0)
    return result


def test_no_dockerfile_builds_with_the_rendered_one_and_serves(clj, jvm_image):
    rendered = (clj.deploy_dir / "blue" / "Dockerfile").read_text()
    assert rendered.startswith("# Rendered by bluegreen")
    assert f"\nFROM {jvm_image}\n" in rendered
    status, headers, body = clj.get("/")
    assert status == 200, body
    assert body.startswith("sample app v1 (blue, clojure): 3 items"), body
    assert headers.get("x-deploy-colour") == "blue"
    assert clj.get("/health", port=clj.blue_port)[0] == 200
    assert applied(clj) == "001-create-items.sql"
    # STOP_TIMEOUT is the grace the JVM gets for its shutdown hooks.
    assert jvmapp.lh.docker("inspect", "--format", "{{.Config.StopTimeout}}",
                            f"{clj.name}-blue-1").stdout.strip() == "10"


def test_expand_migration_keeps_the_old_colour_working_through_the_switch(clj):
    clj.app.commit("v2", migrations=("001-create-items.sql", "002-add-note.sql"), query="v2")
    result = release_under_load(clj, code=0)
    assert "pre-switch" in output(result)
    assert applied(clj) == "001-create-items.sql,002-add-note.sql"
    serves(clj, "v2", "green")
    assert "'added by 002'" not in clj.get("/")[2]
    assert '"added by 002"' in clj.get("/")[2]
    # The old colour, still running, reads the expanded table as before.
    status, _, body = clj.get("/", port=clj.blue_port)
    assert status == 200 and body.startswith("sample app v1 (blue, clojure): 3 items"), body


def aborted_like_a_failed_migration(clj, result):
    """Live untouched (green v2), blue back on v1 and healthy, nothing recorded."""
    serves(clj, "v2", "green")
    assert version(clj, port=clj.blue_port) == "v1"
    assert clj.get("/health", port=clj.blue_port)[0] == 200
    assert applied(clj) == "001-create-items.sql,002-add-note.sql"
    state = state_file(clj)
    assert state["live"] == "green"
    assert state["colours"]["blue"]["branch"] == "main"
    assert "nothing live changed" in output(result)


def test_failing_migration_aborts_and_rollback_still_works(clj):
    clj.app.commit("v3-broken", branch="broken", query="v2",
                   migrations=("001-create-items.sql", "002-add-note.sql", "003-broken.sql"))
    result = release_under_load(clj, "--branch", "broken", code=1)
    assert "PRE_SWITCH_CMD failed in blue" in output(result)
    assert "003-broken.sql" in output(result)
    aborted_like_a_failed_migration(clj, result)
    # The idle colour is the previous release, running: rollback switches to it.
    fab(clj, "rollback", timeout=FAB_TIMEOUT)
    serves(clj, "v1", "blue")
    fab(clj, "rollback", timeout=FAB_TIMEOUT)
    serves(clj, "v2", "green")


def test_hanging_migration_is_stopped_after_pre_switch_timeout(clj):
    clj.app.commit("v3-hang", branch="hang", query="v2",
                   migrations=("001-create-items.sql", "002-add-note.sql", "003-hang.sql"))
    clj.set(PRE_SWITCH_TIMEOUT="5s")
    try:
        result = release_under_load(clj, "--branch", "hang", code=1)
    finally:
        clj.set(PRE_SWITCH_TIMEOUT=None)
    assert "PRE_SWITCH_CMD did not finish within PRE_SWITCH_TIMEOUT=5s in blue" in output(result)
    aborted_like_a_failed_migration(clj, result)
    # The migration's client was killed in the container, so its statement ends.
    assert wait_until(lambda: clj.db.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'") == "0",
        timeout=20)


def test_plain_release_after_failed_ones_follows_the_branch_it_followed(clj):
    sha = clj.app.commit("v4", query="v2",
                         migrations=("001-create-items.sql", "002-add-note.sql"))
    result = fab(clj, "release", timeout=FAB_TIMEOUT)
    assert "main" in output(result)
    serves(clj, "v4", "blue")
    blue = status_json(clj)["colours"]["blue"]
    assert (blue["branch"], blue["commit"]) == ("main", sha)


def test_health_answers_only_while_the_database_does(clj):
    port = clj.blue_port  # live since the last test
    assert clj.get("/health", port=port)[0] == 200
    clj.db.pg_ctl("stop")
    try:
        status, _, body = clj.get("/health", port=port)
        assert status == 503, body
    finally:
        clj.db.pg_ctl("start")
    assert wait_until(lambda: clj.get("/health", port=port)[0] == 200, timeout=20)


def test_a_worker_from_the_procfile_takes_jobs_released_with_its_migration(clj):
    """The Procfile instead of APP_CMD and PRE_SWITCH_CMD: `release` migrates
    (the jobs table), `worker` takes jobs with FOR UPDATE SKIP LOCKED; across a
    release and a rollback every job is done exactly once, and workers run only
    in the serving colour."""
    clj.set(APP_CMD=None, PRE_SWITCH_CMD=None, WORKER_READY_SECONDS=5,
            WORKER_STOP_TIMEOUT=20)
    try:
        migrations = ("001-create-items.sql", "002-add-note.sql", "004-jobs.sql")
        clj.app.commit("w1", migrations=migrations, query="v2", procfile=jvmapp.PROCFILE)
        r = fab(clj, "release", timeout=FAB_TIMEOUT)
        assert "the Procfile's release ran" in output(r), output(r)

        def add_jobs(n):
            clj.db.psql(f"INSERT INTO jobs (done_by) SELECT NULL FROM generate_series(1, {n})",
                        db=clj.db_name)

        def pending():
            return int(clj.db.psql("SELECT count(*) FROM jobs WHERE done_by IS NULL",
                                   db=clj.db_name))

        add_jobs(50)
        assert wait_until(lambda: pending() == 0, timeout=120), pending()
        clj.app.commit("w2", migrations=migrations, query="v2", procfile=jvmapp.PROCFILE)
        add_jobs(50)
        fab(clj, "release", timeout=FAB_TIMEOUT)
        add_jobs(50)
        fab(clj, "rollback", timeout=FAB_TIMEOUT)
        add_jobs(50)
        assert wait_until(lambda: pending() == 0, timeout=120), pending()
        counts = clj.db.psql("SELECT count(*), max(done_count), min(done_count) FROM jobs",
                             db=clj.db_name)
        assert counts.split("|") == ["200", "1", "1"], counts
        live = status_json(clj)["live"]
        running = {c["service"] for c in clj.containers() if c["state"] == "running"}
        assert f"{live}-worker" in running and not {s for s in running if s.endswith(
            "-worker") and not s.startswith(live)}, running
    finally:
        clj.set(APP_CMD=jvmapp.APP_CMD, PRE_SWITCH_CMD=jvmapp.MIGRATE_CMD)
