"""The compose file, and what `docker inspect` says of each colour's container."""

import json
import re
from dataclasses import dataclass

import yaml

from ..configuration.settings import COLOURS
from .processes import web_command, workers_of
from .templating import render_template, yaml_string


def render_compose(settings, processes=None):
    """The whole compose file: per colour its web service and one service per
    worker type (``processes``: {colour: {type: command}}, the Procfile each
    colour's release has; None: no workers), project APP_NAME."""
    processes = processes or {}
    bind = settings.bind_address
    if ":" in bind:
        bind = f"[{bind}]"
    web_cmd = {c: compose_command(web_command(processes.get(c), settings)) for c in COLOURS}
    # By type, not the Procfile's order: state.json keeps each colour's
    # processes with sorted keys, and the file rendered from it must be the
    # one the release wrote (else `release` of the live commit sees a change).
    workers = {c: sorted(workers_of(processes.get(c), settings), key=lambda w: w.kind)
               for c in COLOURS}
    override = dict(settings.compose_override)
    labels = override.pop("labels", None) or {}
    if not isinstance(labels, dict):
        labels = dict(str(x).partition("=")[::2] for x in labels)
    override_text = ""
    if override:
        dumped = yaml.safe_dump(override, default_flow_style=False, sort_keys=False)
        override_text = "".join(f"    {line}\n" for line in dumped.splitlines())
    return render_template("compose.yml.j2", s=settings, colours=COLOURS, bind=bind,
                           web_cmd=web_cmd, workers=workers, quoted=compose_command,
                           volumes=settings.volumes, named_volumes=named_volumes(settings),
                           override=override_text,
                           extra_labels=[(yaml_string(str(k)), yaml_string(str(v)))
                                         for k, v in labels.items()])


def compose_command(command):
    """A command line as compose's `command:` (Compose interpolates $VAR in the
    file; the command is the app's own)."""
    return yaml_string(command.replace("$", "$$")) if command else ""


def named_volumes(settings):
    """The volume names of VOLUMES (not host paths): compose makes APP_NAME_NAME."""
    return [spec.split(":")[0] for spec in settings.volumes if not spec.startswith("/")]


def render_clojure_dockerfile(settings):
    return render_template("Dockerfile.clojure.j2", s=settings)


def container_name(settings, colour):
    """Compose's name for the colour's one container."""
    return f"{settings.app_name}-{colour}-1"


@dataclass(frozen=True)
class Container:
    """One colour's container as `docker inspect` describes it."""

    colour: str
    state: str  # running, restarting, exited, created, ... or "missing"
    exit_code: int = 0
    restart_count: int = 0
    image: str = ""
    started_at: str = ""
    # What its image says it is: the commits of its bluegreen-APP:<commit>
    # tags, and its org.opencontainers.image.revision label ('' when none).
    commits: tuple = ()
    revision: str = ""

    def runs_commit(self, recorded=None):
        """The commit this container's image was built from ('' when it has no
        container or its image names none). ``recorded`` (state.json's) wins
        when the image carries it among its tags: one image can carry several."""
        if self.state == "missing":
            return ""
        if recorded and recorded in self.commits:
            return recorded
        if self.revision:
            return self.revision
        return sorted(self.commits)[0] if self.commits else ""

    @property
    def running(self):
        return self.state == "running" and self.restart_count == 0

    @property
    def crashed(self):
        """Exited, or crash-looping under its restart policy."""
        return self.state in ("exited", "dead") or self.state == "restarting" or (
            self.state == "running" and self.restart_count > 0)

    def describe(self):
        if self.state == "missing":
            return "no container"
        restarts = f" after {times(self.restart_count)}" if self.restart_count else ""
        if self.state in ("exited", "dead"):
            return f"stopped (exit code {self.exit_code}{restarts})"
        if self.state == "restarting":
            # Between two starts Docker's ExitCode is the exit code of the run that ended.
            return (f"crash-looping (restarted {times(self.restart_count)}, "
                    f"last exit code {self.exit_code})")
        if self.restart_count:
            # Running again after a restart: Docker resets ExitCode to 0 when the
            # container starts, so the code of the run that crashed is gone.
            return (f"crash-looping (restarted {times(self.restart_count)}; running again, "
                    "so Docker no longer shows the last exit code)")
        return self.state


def times(count):
    return "once" if count == 1 else f"{count} times"


INSPECT_FORMAT = (
    '{"name":{{json .Name}},"state":{{json .State.Status}},'
    '"exit":{{.State.ExitCode}},"restarts":{{.RestartCount}},'
    '"image":{{json .Image}},"started":{{json .State.StartedAt}}}'
)


# One line per image a colour's container runs: what it says it was built from.
IMAGE_FORMAT = '{"id":{{json .Id}},"tags":{{json .RepoTags}},"labels":{{json .Config.Labels}}}'

REVISION_LABEL = "org.opencontainers.image.revision"

COMMIT_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 repos


def image_commits(tags, app):
    """The commits an image's tags name (bluegreen-APP:<commit>)."""
    repo = f"bluegreen-{app}:"
    return tuple(t[len(repo):] for t in tags or ()
                 if t.startswith(repo) and COMMIT_RE.fullmatch(t[len(repo):]))


def parse_inspect(output, settings):
    """Containers by colour from `docker container inspect --format
    INSPECT_FORMAT` lines, each with what its image (an IMAGE_FORMAT line)
    says it was built from."""
    found, images = {}, {}
    names = {f"/{container_name(settings, c)}": c for c in COLOURS}
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        if "tags" in data:
            labels = data.get("labels") or {}
            images[data.get("id")] = (image_commits(data.get("tags"), settings.app_name),
                                      str(labels.get(REVISION_LABEL) or "").strip())
            continue
        colour = names.get(data.get("name"))
        if colour:
            found[colour] = data
    containers = {}
    for colour in COLOURS:
        data = found.get(colour)
        if data is None:
            containers[colour] = Container(colour=colour, state="missing")
            continue
        image = data.get("image") or ""
        commits, revision = images.get(image, ((), ""))
        containers[colour] = Container(
            colour=colour, state=data.get("state") or "unknown",
            exit_code=int(data.get("exit") or 0),
            restart_count=int(data.get("restarts") or 0),
            image=image, started_at=data.get("started") or "",
            commits=commits, revision=revision)
    return containers
