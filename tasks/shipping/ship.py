"""Shipping an image built on this machine to the host: only the layers it lacks.

`docker load` skips a layer whose chain ID its layer store already has
(moby's image/tarexport/load.go looks each layer up by chain ID before it
opens the layer's file), so a `docker save` archive with the `layer.tar`
of the host's layers left out loads on that host and nothing else. The
host is asked which layers it has (the chain IDs of its images'
RootFS.Layers), the archive is written without those, gzip-compressed
(`docker load` reads gzip) into `docker load` on a channel of the task's
own SSH connection. The image's tag appears on the host only when the load
has finished: a stream cut part-way leaves nothing the host would trust.

A host whose Docker keeps images in the containerd image store matches
content by digest, not by chain ID: it gets the whole image, and the
summary says so.

The pure parts (chain IDs, which layers to send, the facts of the host)
are unit-tested; ``ship`` does the I/O.
"""

import hashlib
import json
import queue
import threading
import time
from dataclasses import dataclass

import paramiko

from ..commands import building
from ..commands.base import NO_DEPLOY_DIR, START_FAILED, block, mark, q, write_file
from ..errors import FAILED, Failure
from ..model.compose_file import render_compose
from ..model.processes import compose_processes
from .gzip_archive import encode


# --- pure: layers and what the host has ------------------------------------------------


def chain_ids(diff_ids):
    """The chain ID of each prefix of ``diff_ids`` (the OCI image spec's ChainID)."""
    chains, chain = [], None
    for diff_id in diff_ids:
        chain = diff_id if chain is None else \
            "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
        chains.append(chain)
    return chains


# One line per image of the host: its ID, tags and layers (a JSON object).
IMAGE_FORMAT = '{"id":{{json .Id}},"tags":{{json .RepoTags}},"layers":{{json .RootFS.Layers}}}'


def host_facts_script(image_tag):
    """What the host's Docker has: its layer store, and every image's ID, tags
    and layers (``image_tag`` among the tags when the release is there).
    Three docker CLI calls (~15 ms of CPU each on the host): one `docker
    info` for the driver and its status, one listing, one inspect of all."""
    return "\n".join([
        "info=$(docker info --format '{{.Driver}} {{json .DriverStatus}}' 2>/dev/null)",
        mark("driver", "${info%% *}"),
        block("driver_status", "printf '%s' \"${info#* }\""),
        block("images", "docker image ls -q --no-trunc 2>/dev/null | sort -u | "
                        f"xargs -r docker image inspect --format {q(IMAGE_FORMAT)} 2>/dev/null"),
    ]) + "\n"


@dataclass(frozen=True)
class HostLayers:
    """What `host_facts_script` found."""

    driver: str
    containerd: bool  # the containerd image store: no partial loads
    chains: frozenset  # chain IDs of every layer stack an image of the host has
    has_image: str  # the ID of the image already tagged as the release, or ''

    @property
    def store(self):
        return "containerd image store" if self.containerd else f"{self.driver or '?'} layer store"


def containerd_store(driver_status):
    """Whether `docker info`'s DriverStatus (JSON) is the containerd image store's.

    There it is `[["driver-type","io.containerd.snapshotter.v1"]]` (moby's
    daemon/containerd/service.go) and Driver names the snapshotter
    (`overlayfs`, `stargz`, ...); a graph driver lists its own facts
    (`[["Backing Filesystem","extfs"],["Supports d_type","true"],...]`).
    """
    try:
        pairs = json.loads(driver_status or "null")
    except ValueError:
        return "io.containerd.snapshotter" in (driver_status or "")
    return any(isinstance(pair, list) and len(pair) == 2 and pair[0] == "driver-type"
               and str(pair[1]).startswith("io.containerd.snapshotter")
               for pair in pairs or ())


def parse_host_layers(result, image_tag):
    """HostLayers from the step's values and blocks; ``has_image`` is the ID
    of the image tagged ``image_tag``, if any."""
    status = result.blocks.get("driver_status", "")
    chains, has = set(), ""
    for line in result.blocks.get("images", "").splitlines():
        try:
            image = json.loads(line)
        except ValueError:
            continue
        if not isinstance(image, dict):
            continue
        if isinstance(image.get("layers"), list):
            chains.update(chain_ids(image["layers"]))
        if image_tag in (image.get("tags") or ()):
            has = str(image.get("id") or "")
    return HostLayers(driver=result.values.get("driver", ""),
                      containerd=containerd_store(status),
                      chains=frozenset(chains), has_image=has)


def layers_to_send(paths, diff_ids, host):
    """(paths to leave out of the archive, layers sent, layers skipped).

    A layer is skipped when the host has its chain (it and every layer below
    it). One file can stand for several layers (an empty layer, twice): it
    is left out only when every layer it stands for is skipped.
    """
    if host.containerd:
        return set(), len(diff_ids), 0
    have = [chain in host.chains for chain in chain_ids(diff_ids)]
    needed = {path for path, skip in zip(paths, have) if not skip}
    drop = {path for path, skip in zip(paths, have) if skip} - needed
    return drop, have.count(False), have.count(True)


# --- the stream into `docker load` ---------------------------------------------------


class ChannelSender:
    """A file-like writer onto a channel's stdin, sending from a thread of its
    own in chunks: compressing the next chunk (zlib lets go of the GIL)
    overlaps encrypting and sending this one. Counts what it sent."""

    CHUNK = 256 * 1024

    def __init__(self, chan):
        self.chan, self.sent, self.error = chan, 0, None
        self._buf = bytearray()
        self._queue = queue.Queue(maxsize=16)
        self._thread = threading.Thread(target=self._send, daemon=True)
        self._thread.start()

    def write(self, data):
        if self.error is not None:
            raise self.error
        self._buf += data
        if len(self._buf) >= self.CHUNK:
            self._queue.put(bytes(self._buf))
            self._buf.clear()
        return len(data)

    def flush(self):
        pass

    def close(self):
        """Send what is left and wait for it; raises what sending raised."""
        if self._buf:
            self._queue.put(bytes(self._buf))
            self._buf.clear()
        self.stop()
        if self.error is not None:
            raise self.error

    def stop(self):
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _send(self):
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            if self.error is not None:
                continue  # drain: the writer learns of it at its next write
            try:
                self.chan.sendall(chunk)
                self.sent += len(chunk)
            except Exception as exc:  # noqa: BLE001 (handed to the writer's thread)
                self.error = exc


@dataclass
class Shipped:
    bytes: int = 0  # on the wire (compressed)
    layers_sent: int = 0
    layers_skipped: int = 0
    seconds: float = 0.0
    whole: bool = False  # the whole image, not a partial one
    already: bool = False  # the host had the image: nothing sent
    store: str = ""

    def to_json(self):
        return {"bytes": self.bytes, "layers_sent": self.layers_sent,
                "layers_skipped": self.layers_skipped, "seconds": round(self.seconds, 3),
                "store": self.store, **({"whole": True} if self.whole else {}),
                **({"already_on_host": True} if self.already else {})}

    def describe(self):
        if self.already:
            return f"already on the host ({self.store}): nothing sent"
        whole = f"the whole image ({self.store}: no partial loads); " if self.whole else ""
        return (f"{whole}{human(self.bytes)} sent, {self.layers_sent} layers sent, "
                f"{self.layers_skipped} skipped, in {self.seconds:.1f}s")


def human(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def ship(session, archive, image_tag, diff_ids, expected_id, encodings=None):
    """Send what the host lacks of the image; it is tagged ``image_tag`` there -> Shipped.

    ``encodings`` (archive.Encodings), when several hosts of the run are
    shipped to: the bytes sent are encoded once for all hosts that lack the
    same layers. ``archive`` may be a callable that makes it (`docker save`):
    the host is asked first, and an image it has already is never saved."""
    started = time.monotonic()
    host = parse_host_layers(session.run(host_facts_script(image_tag)), image_tag)
    shipped = Shipped(store=host.store, whole=host.containerd)
    if host.has_image and (host.containerd or host.has_image == expected_id):
        shipped.already = True
        shipped.seconds = time.monotonic() - started
        return shipped
    if callable(archive):
        archive = archive()
    drop, shipped.layers_sent, shipped.layers_skipped = layers_to_send(
        archive.layer_paths, diff_ids, host)
    try:
        shipped.bytes = stream_load(session, archive, drop, image_tag, encodings)
    except Failure as exc:
        if not drop or "layer.tar" not in exc.message and "no such file" not in exc.message:
            raise
        # A layer the host had was removed meanwhile (another app's prune): all of it.
        shipped.bytes = stream_load(session, archive, set(), image_tag, encodings)
        shipped.layers_sent, shipped.layers_skipped = len(diff_ids), 0
    shipped.seconds = time.monotonic() - started
    return shipped


def stream_load(session, archive, drop, image_tag, encodings=None):
    """One `docker load` on the host fed the archive (encoded here, or read
    from the run's shared encoding); returns the bytes sent."""
    host = session.host
    chan = host.exec_channel("docker load")
    out = ChannelSender(chan)
    try:
        if encodings is None:
            encode(archive, out, drop, image_tag)
        else:
            for chunk in encodings.get(archive, drop, image_tag).chunks():
                out.write(chunk)
        out.close()
        chan.shutdown_write()
        answer, code = read_answer(chan)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        if not host_alive(host):
            raise host.lost("while shipping the image") from exc
        answer, code = read_answer(chan)
    finally:
        out.stop()
        chan.close()
    if code != 0 and not host_alive(host):
        raise host.lost("while shipping the image")
    if code != 0:
        raise load_failed(session.name, code, answer)
    return out.sent


def load_failed(name, code, answer):
    """The Failure of a `docker load` that exited ``code`` saying ``answer``."""
    last = [line.strip() for line in answer.splitlines() if line.strip()]
    said = last[-1][-300:] if last else "no output"
    if "no space left on device" in answer.lower():
        return Failure(f"the disk of {name} is full: `docker load` ran out of space there "
                       f"({said}); nothing live changed",
                       "free space where the host's Docker keeps images (`fab check` shows "
                       "how much is free; `docker image prune` on the host removes unused "
                       "images, a lower KEEP_RELEASES keeps fewer), then release again",
                       code=FAILED)
    return Failure(f"`docker load` failed on {name} (exit {code}): {said}; "
                   "nothing live changed",
                   "`fab check` looks at the host's Docker and its free space; "
                   "then release again", code=FAILED)


def host_alive(host):
    transport = host.connection.transport if host.connection else None
    return transport is not None and transport.is_active()


def read_answer(chan):
    """The command's output (stderr combined) and exit status."""
    chunks = []
    while True:
        data = chan.recv(65536)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode(errors="replace"), chan.recv_exit_status()


# --- the release's steps, when the image is made on this machine ---------------------


def source_note(fields, source):
    """What a release's summary line says it deployed, and how it got there."""
    shipped = fields.get("ship") or {}
    if fields.get("build") == "image":
        return f"image {fields.get('image')}, {human(shipped.get('bytes', 0))} shipped"
    if fields.get("build") == "local":
        return f"{source}, built here, {human(shipped.get('bytes', 0))} shipped"
    return source


def deliver(session, attempt, plan, artifacts, on_line):
    """Steps 3-4a for BUILD_ON=local and --image: the image made here (built,
    or the one named), shipped, tagged for the target colour. Returns the
    commit. The host runs no git and no build; the live colour is untouched."""
    s, rep = session.settings, session.reporter
    attempt.phase = "build"
    image, attempt.processes = artifacts.prepare(s, plan, rep, on_line)
    attempt.fields.update(commit=image.commit, build=image.source)
    if image.commit in artifacts.signers:  # ALLOWED_SIGNERS: verified here
        attempt.fields["signer"] = artifacts.signers[image.commit]
    if image.source == "image":
        attempt.fields["image"] = image.name

    attempt.phase = "ship"
    tag = building.image(s, image.commit)
    with rep.phase("ship") as ph:
        shared = artifacts.encodings if session.hosts_in_run > 1 else None
        # Saved (docker save) only once the host is known to lack the image;
        # its ID on a layer store is the config digest the archive would name.
        shipped = ship(session, lambda: artifacts.archive(image, rep), tag, image.diff_ids,
                       image.image_id, shared)
        ph.detail = shipped.describe()
    attempt.fields["ship"] = shipped.to_json()

    previous = session.view.record(plan.target)
    with rep.phase("place") as ph:
        result = session.run(place_script(
            s, plan.target, image.commit, render_compose(s, compose_processes(
                session.view.state, plan.target, attempt.processes)),
            previous=(previous.get("commit"), previous.get("image"))))
        if result.code != 0:
            raise Failure(f"{result.values.get('error') or 'placing the image failed'} "
                          f"on {session.name}; nothing live changed",
                          "release again; `fab check` looks at the host", code=FAILED)
        ph.detail = f"{tag} -> {plan.target}"
    return image.commit


def place_script(settings, colour, commit, compose_text, previous=None):
    """Tag the shipped image for ``colour`` (compose runs bluegreen-APP:<colour>),
    writing the compose file if it changed. ``previous`` (commit, image id),
    what the colour ran, keeps its commit tag first (building.build does the same)."""
    d, tag = settings.deploy_dir, building.image(settings, commit)
    keep = ""
    if previous and previous[0] and previous[1]:
        old = building.image(settings, previous[0])
        keep = (f"docker image inspect {q(old)} >/dev/null 2>&1 || "
                f"docker tag {q(previous[1])} {q(old)} 2>/dev/null\n")
    return f"""set -u
{keep}cd {q(d)} || exit {NO_DEPLOY_DIR}
if ! printf '%s' {q(compose_text)} | cmp -s - compose.yml; then
  {write_file(d + '/compose.yml', compose_text)} || exit {START_FAILED}
  {mark('compose', 'updated')}
fi
docker image inspect {q(tag)} >/dev/null 2>&1 || {{ echo "$M error the shipped image "{q(tag)}" is not on the host"; exit {START_FAILED}; }}
docker tag {q(tag)} {q(building.image(settings, colour))}
"""
