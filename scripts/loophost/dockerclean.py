"""Docker: the `docker` CLI, and the removal of the compose projects tests leave behind.

Test sessions claim the projects they make (CLAIMS_DIR), so a parallel session's
clean-up of leftovers spares them.
"""

import os
import subprocess
from pathlib import Path

from .procs import pid_alive


# Compose projects made by the tests start with this, so a run can find and
# remove what an earlier, interrupted run left behind.
TEST_PREFIX = "bgt-"
PROJECT_LABEL = "com.docker.compose.project"


# --- Docker ---------------------------------------------------------------------------


def docker(*args, timeout=120, check=False):
    """Run `docker ARGS`; a CompletedProcess with text output."""
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def nonblank_lines(result):
    """The non-blank lines of a CompletedProcess's stdout."""
    return [line for line in result.stdout.splitlines() if line.strip()]


def app_image_ids(app_name):
    """Distinct images of a deployed app: every tag of its repo
    (bluegreen-APP) and its untagged images (by compose's project label)."""
    tagged = nonblank_lines(docker("images", "-q", "--no-trunc", f"bluegreen-{app_name}"))
    dangling = nonblank_lines(docker(
        "images", "-q", "--no-trunc", "--filter", "dangling=true",
        "--filter", f"label=com.docker.compose.project={app_name}"))
    return set(tagged) | set(dangling)


def remove_compose_projects(name=None, prefix=None, keep=()):
    """Remove the containers, images, networks and volumes of the compose
    project `name`, or of every project whose name starts with `prefix`
    except those named in `keep`."""
    if not (name or prefix):
        raise ValueError("name or prefix is required")
    keep = set(keep)

    def ours(project):
        if name:
            return project == name
        return project.startswith(prefix) and project not in keep

    def our_image(repo):
        # Compose names images <project>-<service>; the rendered compose
        # file names them bluegreen-<project>:<colour>.
        repo = repo[len("bluegreen-"):] if repo.startswith("bluegreen-") else repo
        if name:
            return repo == name or repo.startswith(f"{name}-")
        return repo.startswith(prefix) and not any(
            repo == k or repo.startswith(f"{k}-") for k in keep)

    label_fmt = '{{.Label "' + PROJECT_LABEL + '"}}'
    ids = [cid for cid, _, project in (
        line.partition("\t") for line in nonblank_lines(docker(
            "ps", "-a", "--filter", f"label={PROJECT_LABEL}",
            "--format", "{{.ID}}\t" + label_fmt)))
        if ours(project)]
    if ids:
        docker("rm", "-f", "-v", *ids)

    images = set()
    labelled = sorted(set(nonblank_lines(
        docker("images", "-q", "--filter", f"label={PROJECT_LABEL}"))))
    if labelled:
        fmt = '{{.Id}}\t{{index .Config.Labels "' + PROJECT_LABEL + '"}}'
        for line in nonblank_lines(docker("image", "inspect", "--format", fmt, *labelled)):
            iid, _, project = line.partition("\t")
            if ours(project):
                images.add(iid)
    for line in nonblank_lines(docker("images", "--format", "{{.Repository}}:{{.Tag}}")):
        if our_image(line.rsplit(":", 1)[0]):
            images.add(line)
    if images:
        docker("rmi", "-f", *sorted(images))

    for kind in ("network", "volume"):
        for line in nonblank_lines(docker(kind, "ls", "--filter", f"label={PROJECT_LABEL}",
                                          "--format", "{{.Name}}\t" + label_fmt)):
            obj, _, project = line.partition("\t")
            if ours(project):
                docker(kind, "rm", obj)


# Test sessions may run side by side on one machine (several engineers, a
# CI job). Each compose project a session makes is claimed here with the
# session's pid, so another session's clean-up of leftovers spares it.
CLAIMS_DIR = Path(os.environ.get("LOOPHOST_CLAIMS_DIR", "/tmp/bluegreen-e2e-claims"))


def claim_project(name):
    """Mark compose project `name` as in use by this process."""
    CLAIMS_DIR.mkdir(parents=True, exist_ok=True)
    (CLAIMS_DIR / name).write_text(f"{os.getpid()}\n")


def release_project(name):
    (CLAIMS_DIR / name).unlink(missing_ok=True)


def live_claims():
    """Names of projects claimed by processes that still run; forgets the rest."""
    names = set()
    if not CLAIMS_DIR.is_dir():
        return names
    for claim in CLAIMS_DIR.iterdir():
        try:
            owner = int(claim.read_text().strip())
        except (OSError, ValueError):
            owner = None
        if pid_alive(owner):
            names.add(claim.name)
        else:
            claim.unlink(missing_ok=True)
    return names


def remove_leftover_projects(prefix=TEST_PREFIX):
    """Remove every `prefix` compose project that no running session claims."""
    remove_compose_projects(prefix=prefix, keep=live_claims())


# --- which nginx ----------------------------------------------------------------
