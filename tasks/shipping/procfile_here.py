"""The Procfile of an image made on this machine: from the local checkout
(BUILD_ON=local: `git show COMMIT:PROCFILE`, so another host's thread moving
the checkout cannot change it) or from the image itself (--image). Either is
checked before anything is built or shipped: an --image's before any
connection (cli/tasks.py), a commit's before its build (Artifacts.prepare)."""

import io
import posixpath
import subprocess
import tarfile

from ..model.processes import read_procfile
from .local_build import docker, inspect_image
from .local_checkout import checkout_dir


def processes_here(settings, artifacts, commit=None):
    """The processes of the Procfile in --image's image (the run's ``artifacts``
    hold it; read once per run), else in ``commit`` of this machine's checkout,
    checked against ``settings`` (exit 2 naming its line, or SCALE's type)."""
    image = artifacts.image
    if image is None:
        return read_procfile(procfile_in_checkout(settings, commit), settings,
                             "in the commit being released, read from this machine's checkout")
    path = settings.procfile
    if path not in artifacts.procfiles:
        artifacts.procfiles[path] = procfile_in_image(image.name, path) if path else ""
    return read_procfile(artifacts.procfiles[path], settings, f"in the image {image.name}")


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
