"""A `docker save` archive, read and written again for one host (pure but for files).

Two layouts come out of `docker save` (moby's image/tarexport/save.go):

- Docker up to 24: `manifest.json` (Config `<hex>.json`, Layers
  `<v1 id>/layer.tar`), `repositories`, one directory per layer.
- Docker 25 and later: an OCI image layout, `oci-layout`, `index.json`
  (one manifest descriptor per tag, annotated with the tag's full name
  `io.containerd.image.name` and `org.opencontainers.image.ref.name`),
  `blobs/sha256/<hex>` (layers named by diff ID, the config, the OCI
  manifest), and still a `manifest.json` whose Config and Layers are paths
  into `blobs/`.

A host's Docker on a graph driver (overlay2) loads either from
`manifest.json` alone; one on the containerd image store imports an OCI
layout from `index.json` and takes the image's names from its annotations
(containerd's images/archive/importer.go), ignoring `manifest.json`. So
the archive sent names the release's tag in both files.
"""

import io
import json
import os
import tarfile
from dataclasses import dataclass

from ..errors import FAILED, Failure

IMAGE_NAME_ANNOTATION = "io.containerd.image.name"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Archive:
    """A `docker save` archive of one image on this machine."""

    path: str
    layer_paths: tuple  # manifest.json's Layers, in order
    config_path: str
    size: int

    @property
    def config_digest(self):
        """sha256:<hex> of the image's config: its ID on a host's layer store."""
        name = self.config_path.rsplit("/", 1)[-1]
        return "sha256:" + name.removesuffix(".json")


def read_archive(path):
    """The manifest of a `docker save` archive (classic or OCI layout)."""
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    if len(manifest) != 1:
        raise Failure(f"the saved archive holds {len(manifest)} images, not one",
                      "name one image", code=FAILED)
    entry = manifest[0]
    return Archive(path=path, layer_paths=tuple(entry["Layers"]),
                   config_path=entry["Config"], size=os.path.getsize(path))


def full_name(repo_tag):
    """The name Docker's reference parser normalises ``repo_tag`` to:
    `shop:1` -> `docker.io/library/shop:1`, `team/shop:1` -> `docker.io/team/shop:1`."""
    first, _, rest = repo_tag.partition("/")
    if not rest:
        return f"docker.io/library/{repo_tag}"
    if "." in first or ":" in first or first == "localhost":
        return repo_tag
    return f"docker.io/{repo_tag}"


def renamed_manifest(data, repo_tag):
    """manifest.json naming only ``repo_tag``."""
    manifest = json.loads(data)
    manifest[0]["RepoTags"] = [repo_tag]
    return json.dumps(manifest).encode()


def renamed_index(data, repo_tag):
    """index.json (OCI layout) with one descriptor of the image, named ``repo_tag``.

    The image's descriptors (one per tag it had here, or one unnamed) share
    its manifest's digest: the first is kept, renamed; any other entry is
    left as it was.
    """
    index = json.loads(data)
    manifests = index.get("manifests") or []
    if not manifests:
        return data
    image = dict(manifests[0])
    image["annotations"] = {**(image.get("annotations") or {}),
                            IMAGE_NAME_ANNOTATION: full_name(repo_tag),
                            REF_NAME_ANNOTATION: repo_tag.rsplit(":", 1)[-1]}
    others = [m for m in manifests[1:] if m.get("digest") != image.get("digest")]
    index["manifests"] = [image, *others]
    return json.dumps(index).encode()


RENAME = {"manifest.json": renamed_manifest, "index.json": renamed_index}


def write_archive(archive, out, drop, repo_tag):
    """Write ``archive`` to the file object ``out`` without the files ``drop``,
    naming ``repo_tag`` (the release's tag on the host) in its manifest.json
    and, in an OCI layout, its index.json."""
    with tarfile.open(archive.path) as src, tarfile.open(fileobj=out, mode="w|") as dst:
        for member in src:
            if member.name in drop:
                continue
            rename = RENAME.get(member.name)
            if rename is not None:
                data = rename(src.extractfile(member).read(), repo_tag)
                member.size = len(data)
                dst.addfile(member, io.BytesIO(data))
            elif member.isfile():
                dst.addfile(member, src.extractfile(member))
            else:
                dst.addfile(member)
