"""The base image of the Python sample apps: debootstrap + `docker import`, tagged by its recipe."""

import hashlib
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .dockerclean import docker
from .procs import _run


# instead of reusing a stale one.
BASE_REPO = "bluegreen-test-base"
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-aiohttp", "python3-websockets")
BASE_CHANGES = ("ENV LANG=C.UTF-8", "ENV PYTHONUNBUFFERED=1", 'CMD ["python3"]')


def _base_recipe(packages=BASE_PACKAGES, changes=BASE_CHANGES):
    return (f"debootstrap --variant=minbase --include={','.join(packages)} {BASE_SUITE}; "
            f"docker import {' '.join(f'--change {c!r}' for c in changes)}")


def base_image(repo=BASE_REPO, packages=BASE_PACKAGES, changes=BASE_CHANGES):
    """bluegreen-test-base:<suite>-<digest of the recipe>: the tag the sample apps build FROM.

    Another recipe (the JVM sample's, scripts/jvmapp.py) names its own repo,
    packages and image changes."""
    digest = hashlib.sha256(_base_recipe(packages, changes).encode()).hexdigest()[:10]
    return f"{repo}:{BASE_SUITE}-{digest}"


def base_image_present(image=None):
    """True when the Docker daemon has the base image."""
    return docker("image", "inspect", "--format", "{{.Id}}", image or base_image(),
                  timeout=30).returncode == 0


def build_base_image(log=None, tmp_parent="/var/tmp", repo=BASE_REPO, packages=BASE_PACKAGES,
                     changes=BASE_CHANGES):
    """Build the base image with debootstrap and `docker import` (root only).

    The root filesystem lives in a temporary directory that is deleted after
    the import. Returns the image name. Raises RuntimeError with the failing
    step's output.
    """
    image = base_image(repo, packages, changes)
    say = log or (lambda msg: None)
    rootfs_parent = Path(tempfile.mkdtemp(prefix="bluegreen-base-", dir=tmp_parent))
    rootfs = rootfs_parent / "rootfs"
    try:
        started = time.monotonic()
        say(f"debootstrap {BASE_SUITE} with {', '.join(packages)} into {rootfs}")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
              BASE_SUITE, str(rootfs)], timeout=1200)
        # Downloaded .debs and package lists are no use inside the image.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        say(f"debootstrap took {time.monotonic() - started:.0f}s; importing as {image}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        cmd = ["docker", "import"]
        for change in changes:
            cmd += ["--change", change]
        imported = subprocess.run([*cmd, "-", image], stdin=tar.stdout, capture_output=True,
                                  text=True, timeout=600)
        tar.stdout.close()
        tar_err = tar.stderr.read().decode(errors="replace")
        tar.stderr.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise RuntimeError(f"tar | docker import {image} failed:\n{tar_err}"
                               f"{imported.stdout}{imported.stderr}")
        say(f"{image} built in {time.monotonic() - started:.0f}s")
        return image
    finally:
        shutil.rmtree(rootfs_parent, ignore_errors=True)


# --- the app being released -------------------------------------------------------
