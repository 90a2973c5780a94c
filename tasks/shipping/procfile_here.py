"""The Procfile of an image made on this machine: from the local checkout
(BUILD_ON=local: `git show COMMIT:PROCFILE`, so another host's thread moving
the checkout cannot change it) or from the image itself (--image)."""

import io
import posixpath
import subprocess
import tarfile

from .local_build import docker, inspect_image
from .local_checkout import checkout_dir


def procfile_here(settings, image):
    """The Procfile's text for ``image`` (a LocalImage), '' when it has none."""
    if not settings.procfile:
        return ""
    if image.source == "image":
        return procfile_in_image(image.name, settings.procfile)
    r = subprocess.run(["git", "-C", checkout_dir(settings), "show",
                        f"{image.commit}:{settings.procfile}"],
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
