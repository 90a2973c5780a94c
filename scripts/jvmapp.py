"""The JVM sample app of the e2e tests: its base image, its database, its repo.

Issue 25: the seed's own kind of app, Clojure on the JVM backed by
PostgreSQL, released with a migration in PRE_SWITCH_CMD.

- jvm_image() / build_jvm_image(): a base image made from Debian's packages
  (debootstrap + docker import, as loophost.base_image() for the Python
  apps): a headless JRE, Debian's `clojure` and PostgreSQL's JDBC driver.
  Debian's `clojure` is `java -cp clojure.jar[:CP] clojure.main "$@"`, not
  the Clojure CLI (tools.deps): `-cp X -m ns` and `clojure file.clj` run,
  `-P` and `-M:alias` do not, so the apps run with APP_CMD.
- PgCluster: a PostgreSQL cluster of its own (Debian's pg_createcluster) on
  a free loopback port, also listening on the Docker default bridge's own
  address (172.17.0.1 here): a container on a bridge network cannot reach
  the host's 127.0.0.1 (its loopback is its own), but reaches that address
  through its network's gateway, and with the daemon's masquerading and
  iptables off nothing of it leaves the machine. (DOCKER_NETWORK=host would
  let the app use 127.0.0.1, but the product's default is bridge.)
- ClojureApp: a git repo (bare + clone) with the Clojure app of
  scripts/sample_apps/clj/ and its migrations.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loophost as lh  # noqa: E402  (scripts/ is not a package)

# --- the base image -------------------------------------------------------------

JVM_REPO = "bluegreen-test-jvm"
JVM_PACKAGES = ("default-jre-headless", "clojure", "libpostgresql-jdbc-java")
JVM_CHANGES = ("ENV LANG=C.UTF-8", 'CMD ["clojure"]')
JDBC_JAR = "/usr/share/java/postgresql.jar"


def jvm_image():
    """bluegreen-test-jvm:<suite>-<digest of the recipe>: what the Clojure sample builds FROM."""
    return lh.base_image(JVM_REPO, JVM_PACKAGES, JVM_CHANGES)


def build_jvm_image(log=None):
    """debootstrap + docker import (root only); returns the image name."""
    return lh.build_base_image(log=log, repo=JVM_REPO, packages=JVM_PACKAGES,
                               changes=JVM_CHANGES)


def ensure_jvm_image(log=None):
    """The image, built first when Docker lacks it (once per machine)."""
    image = jvm_image()
    if not lh.base_image_present(image):
        build_jvm_image(log=log)
    return image


# --- PostgreSQL: a cluster of its own --------------------------------------------

PG_VERSION_DIR = Path("/usr/lib/postgresql")
PG_SOCKET_DIR = "/var/run/postgresql"


def pg_version():
    """The newest PostgreSQL major version installed from Debian's packages."""
    versions = sorted((p.name for p in PG_VERSION_DIR.glob("*") if p.name.isdigit()), key=int)
    if not versions or not shutil.which("pg_createcluster"):
        raise RuntimeError("PostgreSQL is not installed (Debian's postgresql package): "
                           "run scripts/setup-host.sh")
    return versions[-1]


def docker_bridge_address():
    """The Docker default bridge's own address on this machine (e.g. 172.17.0.1).

    Containers on the bridge reach the host there; with the daemon's
    masquerading off, nothing of it leaves the machine.
    """
    name = lh.docker("network", "inspect", "bridge", "--format",
                     '{{index .Options "com.docker.network.bridge.name"}}').stdout.strip()
    out = lh._run(["ip", "-4", "-o", "addr", "show", "dev", name or "docker0"]).stdout
    found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/(\d+)", out)
    if not found:
        raise RuntimeError(f"the Docker bridge {name or 'docker0'} has no IPv4 address: {out!r}")
    return found.group(1), int(found.group(2))


class PgCluster:
    """A PostgreSQL cluster of its own (never the machine's default one).

    `pg_createcluster VERSION NAME -p PORT`, listening on 127.0.0.1 (for the
    tests) and on the Docker bridge's address (for the app's containers on
    the default bridge network), started by start(), dropped by stop().
    """

    def __init__(self, name, port=None):
        self.version = pg_version()
        self.name = name
        self.port = port or lh.free_port()
        self.bridge_address = docker_bridge_address()[0]
        self.conf_dir = Path(f"/etc/postgresql/{self.version}/{name}")

    def start(self):
        listen = f"127.0.0.1,{self.bridge_address}"
        lh._run(["pg_createcluster", self.version, self.name, "-p", str(self.port),
                 "-o", f"listen_addresses={listen}",
                 # A client killed mid-statement (PRE_SWITCH_TIMEOUT) is noticed
                 # within a second, so its backend does not run on.
                 "-o", "client_connection_check_interval=1s",
                 "-o", "max_connections=200",
                 "--", "--auth-local=peer", "--auth-host=scram-sha-256"], timeout=120)
        # Compose puts each app on a bridge network of its own, from Docker's
        # default address pools (172.17-31.x, 192.168.x): its containers reach
        # the address above through their own gateway, from those ranges.
        with (self.conf_dir / "pg_hba.conf").open("a") as hba:
            hba.write("# containers on Docker bridge networks (bluegreen e2e tests)\n"
                      "host all all 172.16.0.0/12 scram-sha-256\n"
                      "host all all 192.168.0.0/16 scram-sha-256\n")
        lh._run(["pg_ctlcluster", self.version, self.name, "start"], timeout=120)
        self.require_bridge_listener()
        return self

    def require_bridge_listener(self):
        """PostgreSQL binds the bridge's address only if it exists when it
        starts (it warns and goes on with 127.0.0.1 alone): then containers
        get no database and every /health answers 503. Say so at once."""
        out = lh._run(["ss", "-Hltn", f"src {self.bridge_address}:{self.port}"]).stdout
        if not out.strip():
            raise RuntimeError(
                f"PostgreSQL cluster {self.name} does not listen on the Docker bridge's "
                f"{self.bridge_address}:{self.port} (was the bridge recreated while it "
                f"started?); its log: /var/log/postgresql/postgresql-{self.version}-"
                f"{self.name}.log")

    def stop(self):
        subprocess.run(["pg_dropcluster", "--stop", self.version, self.name],
                       capture_output=True, timeout=120)

    def pg_ctl(self, action):
        """pg_ctlcluster VERSION NAME stop|start (the database going away and back)."""
        lh._run(["pg_ctlcluster", self.version, self.name, action], timeout=120)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def psql(self, sql, db="postgres", check=True):
        """Run SQL as the cluster's superuser over its Unix socket; returns stdout."""
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", "psql", "-h", PG_SOCKET_DIR, "-p", str(self.port),
             "-d", db, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"psql: {sql!r} failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def create_database(self, name, user, password):
        """A role and a database it owns; returns the DATABASE_URL containers use."""
        self.psql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        self.psql(f"CREATE DATABASE {name} OWNER {user}")
        return self.url(name, user, password)

    def url(self, name, user, password, host=None):
        return f"postgresql://{user}:{password}@{host or self.bridge_address}:{self.port}/{name}"


# --- the app being released -----------------------------------------------------

CLJ_DIR = Path(__file__).resolve().parent / "sample_apps" / "clj"
MIGRATIONS = {
    "001-create-items.sql": (
        "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);\n"
        "INSERT INTO items (name) VALUES ('apple'), ('pear'), ('plum');\n"),
    # Expand only: the release before keeps working with it.
    "002-add-note.sql": (
        "ALTER TABLE items ADD COLUMN note text;\n"
        "UPDATE items SET note = 'added by 002';\n"),
    # The worker's queue (sample/worker.clj).
    "004-jobs.sql": ("CREATE TABLE jobs (id bigserial PRIMARY KEY, done_by text, "
                     "done_count int NOT NULL DEFAULT 0);\n"),
    "003-broken.sql": "ALTER TABLE items ADD COLUMN broken no_such_type;\n",
    # Waits forever without holding a lock the live app needs.
    "003-hang.sql": "SELECT pg_sleep(3600);\n",
}
ITEMS_QUERY = {
    "v1": "SELECT id, name FROM items ORDER BY id",
    "v2": "SELECT id, name, note FROM items ORDER BY id",
}
# How the app runs on an image whose `clojure` is Debian's (clojure.main).
CLASSPATH = f"src:resources:{JDBC_JAR}"
APP_CMD = f"clojure -cp {CLASSPATH} -m sample.server"
MIGRATE_CMD = f"clojure -cp {CLASSPATH} -m sample.migrate"
WORKER_CMD = f"clojure -cp {CLASSPATH} -m sample.worker"
# The same three as a Procfile: web, its release phase, and the job runner.
PROCFILE = f"web: {APP_CMD}\nrelease: {MIGRATE_CMD}\nworker: {WORKER_CMD}\n"


class ClojureApp(lh.SampleApp):
    """A git repo of the Clojure sample (scripts/sample_apps/clj/): deps.edn,
    src/, config.edn and migrations/, and no Dockerfile, so a release builds
    it with the rendered Dockerfile.clojure.j2 (FROM CLOJURE_BASE_IMAGE)."""

    def commit(self, version, migrations=("001-create-items.sql",), query="v1",
               branch="main", http_port=8080, message=None, procfile=None):
        """Commit `version` with these migrations and items query to `branch`; return the sha."""
        self._checkout(branch)
        for stale in ("src", "resources", "migrations", "app", "Dockerfile", "busybox"):
            path = self.work / stale
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        shutil.copytree(CLJ_DIR / "src", self.work / "src")
        shutil.copy2(CLJ_DIR / "deps.edn", self.work / "deps.edn")
        (self.work / "resources").mkdir()
        (self.work / "resources" / "VERSION").write_text(f"{version}\n")
        (self.work / "migrations").mkdir()
        for name in migrations:
            (self.work / "migrations" / name).write_text(MIGRATIONS[name])
        items_query = ITEMS_QUERY.get(query, query)
        (self.work / "config.edn").write_text(
            "{:version %s\n :http-port %d\n :items-query %s}\n"
            % (json.dumps(version), http_port, json.dumps(items_query)))
        (self.work / ".dockerignore").write_text(".git\n")
        if procfile is None:
            (self.work / "Procfile").unlink(missing_ok=True)
        else:
            (self.work / "Procfile").write_text(procfile)
        self._git("add", "-A")
        self._git("commit", "-q", "--allow-empty", "-m",
                  message or f"{version}: migrations {', '.join(migrations)}")
        sha = self._git("rev-parse", "HEAD")
        self._git("push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        self.commits[version] = sha
        return sha


def _main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(prog="jvmapp.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("image", help="print the JVM base image; exit 1 when Docker lacks it")
    base.add_argument("--build", action="store_true",
                      help="build it first when missing (debootstrap + docker import, as root)")
    args = parser.parse_args(argv)
    image = jvm_image()
    if not lh.base_image_present(image):
        if not args.build:
            print(f"jvmapp: {image} is missing; `jvmapp.py image --build` makes it",
                  file=sys.stderr)
            return 1
        if os.geteuid() != 0:
            print(f"jvmapp: error: building {image} needs root (debootstrap)", file=sys.stderr)
            return 1
        started = time.monotonic()
        try:
            build_jvm_image(log=lambda msg: print(f"jvmapp: {msg}", file=sys.stderr))
        except RuntimeError as e:
            print(f"jvmapp: error: {e}", file=sys.stderr)
            return 1
        print(f"jvmapp: {image} made in {time.monotonic() - started:.0f}s", file=sys.stderr)
    print(image)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
