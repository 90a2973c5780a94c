"""BUILD_ON=local and release --image: the image is made (or found) on this machine.

One `Artifacts` serves a whole `fab` run: every host of the run gets the
same image, built once per commit (hosts released with --parallel wait for
the one build), and saved once (tasks/shipping/ship.py sends each host what it lacks).

The checkout it builds from is local_checkout.py's (LOCAL_BUILD_DIR/<APP_NAME>).
The local Docker is whatever the docker CLI reaches (DOCKER_HOST honoured).
"""

import io
import json
import os
import posixpath
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, replace

from ..errors import BAD_INPUT, Failure
from ..model.compose_file import render_clojure_dockerfile
from ..model.processes import read_procfile
from .gzip_archive import Encodings
from .local_checkout import checkout_dir, checkout_lock, fetch, git, signed_here
from .image_archive import read_archive

REVISION_LABEL = "org.opencontainers.image.revision"


@dataclass(frozen=True)
class LocalImage:
    """An image on this machine that a release ships."""

    name: str  # what the local docker calls it
    commit: str  # what the host tags it by: bluegreen-APP:<commit>
    image_id: str
    diff_ids: tuple
    source: str  # "local" (BUILD_ON=local) or "image" (--image)
    subject: str = ""


def docker(*args, timeout=120):
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise Failure("no docker CLI on this machine",
                      "install Docker here, or set BUILD_ON=host", code=BAD_INPUT) from None
    except subprocess.TimeoutExpired:
        raise Failure(f"`docker {' '.join(args)}` on this machine did not answer within "
                      f"{timeout}s", "check the local Docker (`docker info`)") from None


def inspect_image(name):
    """`docker image inspect` of a local image as a dict, or None when it is not there."""
    r = docker("image", "inspect", "--format", "{{json .}}", name)
    if r.returncode != 0:
        if "No such image" in r.stderr or "No such object" in r.stderr:
            return None
        raise Failure(f"the local Docker did not answer: {r.stderr.strip()[-200:]}",
                      "start Docker on this machine, or point DOCKER_HOST at one",
                      code=BAD_INPUT)
    return json.loads(r.stdout)


def commit_of(data):
    """The commit a release of this image records: its revision label (a git
    commit, 7 to 64 hex digits), else its ID's hex digits."""
    labels = (data.get("Config") or {}).get("Labels") or {}
    revision = (labels.get(REVISION_LABEL) or "").strip().lower()
    if re.fullmatch(r"[0-9a-f]{7,64}", revision):
        return revision
    return data["Id"].split(":", 1)[-1]


def local_image(name, data, source, commit=None, subject=""):
    return LocalImage(name=name, commit=commit or commit_of(data), image_id=data["Id"],
                      diff_ids=tuple(data.get("RootFS", {}).get("Layers") or ()),
                      source=source, subject=subject)


def find_image(name):
    """release --image NAME: the local image, checked before any connection."""
    data = inspect_image(name)
    if data is None:
        raise Failure(f"--image {name!r} from the command line: no such image on this machine",
                      "build or pull it first (`docker image ls` lists them)", code=BAD_INPUT)
    return local_image(name, data, "image")


IMAGE_NAME = re.compile(r"[a-z0-9][a-z0-9._/:@-]{0,254}", re.I)


def artifacts_for(image, branch=None, ref=None):
    """The run's Artifacts; --image NAME is checked here, before any connection."""
    if image is None:
        return Artifacts()
    if not IMAGE_NAME.fullmatch(image):
        raise Failure(f"--image {image!r} from the command line: allowed: an image name "
                      "such as myapp:1.4 or registry.example.com/team/app:ci-812",
                      code=BAD_INPUT)
    for flag, given in (("--branch", branch), ("--ref", ref)):
        if given is not None:
            raise Failure(f"--image with {flag}: an image is released as it was built; "
                          "allowed: one of --image, --branch, --ref", code=BAD_INPUT)
    return Artifacts(find_image(image))


class Artifacts:
    """The images of one `fab` run: built once per commit, saved once per image.

    A context manager (its saved archives are removed at the end of the
    run); the flows get it with their request (flows/release.ReleaseRequest).
    """

    def __init__(self, image=None):
        self.image = image  # a LocalImage given by --image, else None (build)
        self._lock = threading.Lock()
        self._built = {}  # commit -> LocalImage
        self.signers = {}  # commit -> the ALLOWED_SIGNERS principal that signed it
        self.procfiles = {}  # PROCFILE -> its text in self.image
        self._archives = {}  # image id -> archive.Archive
        self._encodings = None
        self._tmp = None

    def prepare(self, settings, plan, reporter, on_line):
        """(image, processes) for this plan: --image's, or built here at the
        plan's commit, and its Procfile's processes (checked before any build:
        a bad Procfile costs none). With ALLOWED_SIGNERS, its commit must
        verify here first (``signers``)."""
        if self.image is not None:
            if settings.allowed_signers:
                with self._lock, checkout_lock(settings):
                    self.signers[self.image.commit] = signed_here(
                        settings, self.image.commit, fetch_first=True)
            return self.image, self.processes(settings)
        with self._lock, checkout_lock(settings):
            with reporter.phase("git") as ph:
                commit, subject = fetch(settings, plan)
                if settings.allowed_signers:
                    self.signers[commit] = signed_here(settings, commit)
                ph.detail = f"{plan.ref or plan.branch} @ {commit[:12]} \"{subject}\" (here)"
            processes = self.processes(settings, commit)
            if commit not in self._built:
                with reporter.phase("build") as ph:
                    image = replace(build(settings, commit, on_line), subject=subject)
                    ph.detail = f"{image.name} (here, {short_id(image.image_id)})"
                self._built[commit] = image
                prune_local(settings, commit)
            return self._built[commit], processes

    def processes(self, settings, commit=None):
        """The processes of the Procfile in --image's image (read once per run;
        the release task checks it before connecting), else in ``commit`` of
        this machine's checkout, checked against ``settings`` (exit 2 naming
        its line, or SCALE's type)."""
        if self.image is None:
            return read_procfile(procfile_in_checkout(settings, commit), settings,
                                 "in the commit being released, read from this machine's checkout")
        path = settings.procfile
        if path not in self.procfiles:
            self.procfiles[path] = procfile_in_image(self.image.name, path) if path else ""
        return read_procfile(self.procfiles[path], settings, f"in the image {self.image.name}")

    def archive(self, image, reporter):
        """The image's `docker save` archive (made once, kept until close())."""
        with self._lock:
            if image.image_id not in self._archives:
                with reporter.phase("save") as ph:
                    path = os.path.join(self._tmpdir(), short_id(image.image_id) + ".tar")
                    r = docker("save", "-o", path, image.name, timeout=3600)
                    if r.returncode != 0:
                        raise Failure(f"`docker save {image.name}` failed here: "
                                      f"{r.stderr.strip()[-200:]}",
                                      "check the local Docker and free space in $TMPDIR")
                    self._archives[image.image_id] = read_archive(path)
                    ph.detail = f"{image.name}: {self._archives[image.image_id].size >> 20} MB"
            return self._archives[image.image_id]

    @property
    def encodings(self):
        """What several hosts are sent, encoded once per run (archive.Encodings)."""
        with self._lock:
            if self._encodings is None:
                self._encodings = Encodings(self._tmpdir())
            return self._encodings

    def _tmpdir(self):
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix="bluegreen-ship-")
        return self._tmp

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def procfile_in_checkout(settings, commit):
    """PROCFILE at ``commit`` of the local checkout, '' when it has none."""
    if not settings.procfile:
        return ""
    r = subprocess.run(["git", "-C", checkout_dir(settings), "show",
                        f"{commit}:{settings.procfile}"],
                       capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    return r.stdout if r.returncode == 0 else ""


def procfile_in_image(name, path):
    """PROCFILE relative to the image's working directory, read with `docker cp`
    from a container that is created, never started (no shell needed)."""
    data = inspect_image(name) or {}
    workdir = (data.get("Config") or {}).get("WorkingDir") or "/"
    created = docker("create", "--entrypoint", "/bluegreen-never-run", name)
    if created.returncode != 0:
        return ""
    cid = created.stdout.strip()
    try:
        r = subprocess.run(["docker", "cp", f"{cid}:{posixpath.join(workdir, path)}", "-"],
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
        if r.returncode != 0:
            return ""
        with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tar:
            member = next((m for m in tar.getmembers() if m.isfile()), None)
            return tar.extractfile(member).read().decode("utf-8", "replace") if member else ""
    finally:
        docker("rm", "-f", cid)


def short_id(image_id):
    return image_id.split(":", 1)[-1][:12]


def local_facts(settings):
    """For `fab check` with BUILD_ON=local: this machine's Docker and its reach of
    GIT_REPO, as the values check.evaluate reads (local_docker, git_remote)."""
    where = os.environ.get("DOCKER_HOST") or "the default socket"
    try:
        r = docker("info", "--format", "{{.ServerVersion}} {{.Driver}}", timeout=30)
        docker_ok = r.returncode == 0 and r.stdout.strip()
        local = (f"ok Docker {r.stdout.strip().replace(' ', ', ')} at {where}" if docker_ok
                 else f"fail no Docker daemon answers at {where}: "
                      f"{(r.stderr.strip().splitlines() or ['?'])[-1][:160]}")
    except Failure as exc:
        local = f"fail {exc.message}"
    r = git(settings, "ls-remote", "--heads", settings.git_repo, bound=30)
    if r.returncode == 0:
        remote = f"ok {sum(1 for line in r.stdout.splitlines() if 'refs/heads/' in line)}"
    else:
        remote = f"fail {(r.stderr.strip().splitlines() or ['?'])[-1][:160]}"
    return {"local_docker": local, "git_remote": remote}


# --- the checkout -------------------------------------------------------------------


# --- the build ----------------------------------------------------------------------


def build(settings, commit, on_line):
    """docker build of the checkout, tagged bluegreen-APP:<commit> -> LocalImage."""
    path = checkout_dir(settings)
    if not os.path.exists(os.path.join(path, "Dockerfile")):
        with open(os.path.join(path, "Dockerfile"), "w") as f:
            f.write(render_clojure_dockerfile(settings))
        on_line("stdout", "no Dockerfile in the repository: the Clojure one (README)")
    tag = f"bluegreen-{settings.app_name}:{commit}"
    cmd = ["docker", "build", "--label", f"{REVISION_LABEL}={commit}", "-t", tag, path]
    code, last = run_bounded(cmd, settings.build_timeout, on_line)
    if code == "timeout":
        raise Failure(f"docker build did not finish within BUILD_TIMEOUT="
                      f"{settings.build_timeout:g}s here; nothing live changed",
                      "the build was stopped; make it faster or raise BUILD_TIMEOUT")
    if code != 0:
        raise Failure("docker build failed here; nothing live changed",
                      "the Docker build failed: its output is above (--verbose shows all)"
                      + (f"; last output: {last[:200]}" if last else ""))
    data = inspect_image(tag)
    return local_image(tag, data, "local", commit=commit)


def prune_local(settings, built):
    """Keep KEEP_RELEASES of the app's builds on this machine (the newest, and
    ``built``), as the host keeps its releases; the rest are untagged."""
    r = docker("images", "--format", "{{.CreatedAt}}\t{{.Tag}}", f"bluegreen-{settings.app_name}")
    rows = sorted((line.split("\t") for line in r.stdout.splitlines() if "\t" in line),
                  reverse=True)
    commits = [tag for _, tag in rows if re.fullmatch(r"[0-9a-f]{7,64}", tag) and tag != built]
    old = commits[max(settings.keep_releases - 1, 0):]
    if old:
        docker("rmi", *(f"bluegreen-{settings.app_name}:{tag}" for tag in old))


def run_bounded(cmd, seconds, on_line):
    """Run ``cmd``, each output line to on_line; stopped (its process group)
    after ``seconds`` -> (exit code or "timeout", the last output line)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True, errors="replace",
                            start_new_session=True)
    timed_out = threading.Event()

    def stop():
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            time.sleep(5)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    last = ""
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            if line.strip():
                last = line.strip()
            on_line("stdout", line)
        proc.wait()
    except BaseException:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        raise
    finally:
        timer.cancel()
    return ("timeout" if timed_out.is_set() else proc.returncode), last
