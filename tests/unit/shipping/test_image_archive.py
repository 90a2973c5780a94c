"""`docker save` archives of both layouts, read and trimmed for a host (pure).

The daemon on this machine is Docker 20.10: it writes only the classic
layout, and no daemon here runs the containerd image store. So these
archives are made by hand, after moby's image/tarexport/save.go (Docker 25+:
an OCI layout plus a manifest.json pointing into blobs/) and what
`docker info` prints on each kind of store.
"""

import hashlib
import io
import json
import tarfile

import pytest

from tasks.connection.step_shell import StepResult
from tasks.shipping.image_archive import full_name, read_archive, write_archive
from tasks.shipping.ship import containerd_store, layers_to_send, parse_host_layers


def digest(data):
    return hashlib.sha256(data).hexdigest()


def layer_tar(files):
    """An uncompressed layer: its bytes (its digest is its diff ID)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


BASE = layer_tar({"bin/busybox": b"\x7fELF" + b"b" * 4000})
APP = layer_tar({"app/start.sh": b"exec httpd\n"})
DIFF_IDS = ["sha256:" + digest(BASE), "sha256:" + digest(APP)]
CONFIG = json.dumps({"architecture": "amd64", "os": "linux",
                     "rootfs": {"type": "layers", "diff_ids": DIFF_IDS}}).encode()


def write_tar(path, members):
    """members: (name, bytes or None for a directory), in order."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return str(path)


def oci_archive(tmp_path, tags=("shop:ci-7",), layers=(BASE, APP)):
    """What Docker 25+ `docker save` writes for one image (save.go)."""
    blobs = {digest(data): data for data in layers}
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": ["sha256:" + digest(d) for d in layers]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": "sha256:" + digest(d), "size": len(d)} for d in layers],
    }).encode()
    untagged = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + digest(manifest), "size": len(manifest)}
    descriptors = [{**untagged, "annotations": {
        "io.containerd.image.name": full_name(tag),
        "org.opencontainers.image.ref.name": tag.rsplit(":", 1)[1]}} for tag in tags]
    index = json.dumps({"schemaVersion": 2,
                        "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": descriptors or [untagged]}).encode()
    docker_manifest = json.dumps([{
        "Config": f"blobs/sha256/{digest(config)}", "RepoTags": list(tags),
        "Layers": [f"blobs/sha256/{digest(d)}" for d in layers]}]).encode()
    members = [("blobs", None), ("blobs/sha256", None)]
    members += [(f"blobs/sha256/{h}", data) for h, data in blobs.items()]
    members += [(f"blobs/sha256/{digest(config)}", config),
                (f"blobs/sha256/{digest(manifest)}", manifest),
                ("index.json", index), ("manifest.json", docker_manifest),
                ("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'),
                ("repositories", json.dumps({"shop": {"ci-7": digest(APP)}}).encode())]
    return write_tar(tmp_path / "oci.tar", members), config, manifest


def classic_archive(tmp_path):
    """What Docker up to 24 `docker save` writes: a directory per layer."""
    v1 = ["1" * 64, "2" * 64]
    members = []
    for v1_id, data in zip(v1, (BASE, APP)):
        members += [(v1_id, None), (f"{v1_id}/VERSION", b"1.0"),
                    (f"{v1_id}/json", b"{}"), (f"{v1_id}/layer.tar", data)]
    members += [(f"{digest(CONFIG)}.json", CONFIG),
                ("manifest.json", json.dumps([{
                    "Config": f"{digest(CONFIG)}.json", "RepoTags": ["shop:ci-7"],
                    "Layers": [f"{i}/layer.tar" for i in v1]}]).encode()),
                ("repositories", b"{}")]
    return write_tar(tmp_path / "classic.tar", members)


def contents(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar}


def host_with(layer_lists, status='[["Backing Filesystem","extfs"]]', driver="overlay2"):
    images = (json.dumps({"id": f"sha256:{n}", "tags": [], "layers": ls})
              for n, ls in enumerate(layer_lists))
    return parse_host_layers(StepResult(
        code=0, stdout="", stderr="", values={"driver": driver},
        blocks={"images": "\n".join(images), "driver_status": status}), "bluegreen-shop:abc")


def trimmed(archive, host, tag="bluegreen-shop:abc"):
    drop, sent, skipped = layers_to_send(archive.layer_paths, DIFF_IDS, host)
    out = io.BytesIO()
    write_archive(archive, out, drop, tag)
    return contents(out.getvalue()), (sent, skipped)


def test_a_docker_25_archive_is_read_from_its_manifest_json(tmp_path):
    path, config, _ = oci_archive(tmp_path)
    archive = read_archive(path)
    assert archive.layer_paths == tuple(f"blobs/sha256/{d[7:]}" for d in DIFF_IDS)
    assert archive.config_digest == "sha256:" + digest(config)  # the image ID on overlay2


def test_a_docker_25_archive_for_a_layer_store_host_drops_the_blobs_it_has(tmp_path):
    path, config, manifest = oci_archive(tmp_path)
    sent, (n_sent, n_skipped) = trimmed(read_archive(path),
                                        host_with([DIFF_IDS[:1]]))
    assert (n_sent, n_skipped) == (1, 1)
    base, app = (f"blobs/sha256/{d[7:]}" for d in DIFF_IDS)
    assert base not in sent and sent[app] == APP
    # What a graph-driver `docker load` opens (load.go): manifest.json, the
    # config it names, and the layer files of the chains it lacks.
    docker_manifest = json.loads(sent["manifest.json"])
    assert docker_manifest == [{"Config": f"blobs/sha256/{digest(config)}",
                                "RepoTags": ["bluegreen-shop:abc"],
                                "Layers": [base, app]}]
    assert sent[f"blobs/sha256/{digest(config)}"] == config
    # The rest of the layout goes as it was.
    assert sent[f"blobs/sha256/{digest(manifest)}"] == manifest
    assert sent["oci-layout"] == b'{"imageLayoutVersion": "1.0.0"}'
    assert "blobs" in sent and sent["blobs/sha256"] is None


def test_a_docker_25_archive_names_the_release_in_index_json_too(tmp_path):
    """A containerd-store host imports an OCI layout by index.json and names
    the image by its annotations (containerd's importer ignores manifest.json)."""
    path, _, manifest = oci_archive(tmp_path)
    sent, counts = trimmed(read_archive(path),
                           host_with([DIFF_IDS], '[["driver-type","io.containerd.snapshotter.v1"]]',
                                     "overlayfs"))
    assert counts == (2, 0)  # the whole image: nothing left out
    assert all(f"blobs/sha256/{d[7:]}" in sent for d in DIFF_IDS)
    index = json.loads(sent["index.json"])
    assert index["manifests"] == [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": "sha256:" + digest(manifest), "size": len(manifest),
        "annotations": {"io.containerd.image.name": "docker.io/library/bluegreen-shop:abc",
                        "org.opencontainers.image.ref.name": "abc"}}]
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"


def test_an_image_with_several_tags_or_none_is_named_once(tmp_path):
    for tags in (("shop:ci-7", "shop:latest", "registry.example.com/team/shop:7"), ()):
        path, _, manifest = oci_archive(tmp_path, tags=tags)
        sent, _ = trimmed(read_archive(path), host_with([]))
        (only,) = json.loads(sent["index.json"])["manifests"]
        assert only["digest"] == "sha256:" + digest(manifest)
        assert only["annotations"]["io.containerd.image.name"] == \
            "docker.io/library/bluegreen-shop:abc"
        assert json.loads(sent["manifest.json"])[0]["RepoTags"] == ["bluegreen-shop:abc"]


def test_one_blob_for_two_layers_stays_when_either_is_sent(tmp_path):
    """Docker 25 names layer blobs by diff ID: the same layer twice is one file."""
    path, _, _ = oci_archive(tmp_path, layers=(BASE, BASE))
    archive = read_archive(path)
    assert archive.layer_paths[0] == archive.layer_paths[1]
    twice = [DIFF_IDS[0], DIFF_IDS[0]]
    drop, sent, skipped = layers_to_send(archive.layer_paths, twice,
                                              host_with([twice[:1]]))
    assert (drop, sent, skipped) == (set(), 1, 1)


def test_a_classic_archive_is_trimmed_the_same_way(tmp_path):
    archive = read_archive(classic_archive(tmp_path))
    assert archive.layer_paths == ("1" * 64 + "/layer.tar", "2" * 64 + "/layer.tar")
    assert archive.config_digest == "sha256:" + digest(CONFIG)
    sent, counts = trimmed(archive, host_with([DIFF_IDS[:1]]))
    assert counts == (1, 1)
    assert "1" * 64 + "/layer.tar" not in sent and sent["2" * 64 + "/layer.tar"] == APP
    assert "1" * 64 + "/json" in sent  # the rest of the layer's directory goes
    assert json.loads(sent["manifest.json"])[0]["RepoTags"] == ["bluegreen-shop:abc"]
    assert "index.json" not in sent


@pytest.mark.parametrize("name, full", [
    ("bluegreen-shop:abc", "docker.io/library/bluegreen-shop:abc"),
    ("team/shop:7", "docker.io/team/shop:7"),
    ("registry.example.com/team/shop:7", "registry.example.com/team/shop:7"),
    ("localhost/shop:7", "localhost/shop:7"),
    ("localhost:5000/shop:7", "localhost:5000/shop:7"),
])
def test_names_are_normalised_as_dockers_reference_parser_does(name, full):
    assert full_name(name) == full


@pytest.mark.parametrize("status, containerd", [
    # Docker 20.10 on overlay2 (this machine's `docker info`).
    ('[["Backing Filesystem","extfs"],["Supports d_type","true"],'
     '["Native Overlay Diff","true"],["userxattr","false"]]', False),
    # The containerd image store (moby's daemon/containerd/service.go):
    # Driver is the snapshotter (overlayfs, stargz, ...).
    ('[["driver-type","io.containerd.snapshotter.v1"]]', True),
    ("[]", False), ("null", False), ("", False),
    ("no JSON, but io.containerd.snapshotter.v1 in it", True),
    ('[["Backing Filesystem","io.containerd.snapshotter.v1"]]', False),
])
def test_the_containerd_image_store_is_told_from_the_driver_status(status, containerd):
    assert containerd_store(status) is containerd
    assert host_with([], status).containerd is containerd
