"""A small `docker save`-like archive for unit tests of shipping."""

import io
import json
import tarfile

from tasks.shipping.gzip_archive import COMPRESS_ABOVE
from tasks.shipping.image_archive import read_archive


def saved_archive(tmp_path, big=False):
    """Two layers, a config and manifest.json, read as tasks/shipping/ship.py reads one
    (``big``: over COMPRESS_ABOVE, so it is sent through gzip)."""
    path = tmp_path / "image.tar"
    l1 = bytes(range(256)) * (COMPRESS_ABOVE // 128) if big else b"one" * 100
    with tarfile.open(path, "w") as tar:
        for name, data in (("l1/layer.tar", l1), ("l2/layer.tar", b"two"),
                           ("cfg.json", b"{}"),
                           ("manifest.json", json.dumps([{
                               "Config": "cfg.json", "RepoTags": ["ci:1"],
                               "Layers": ["l1/layer.tar", "l2/layer.tar"]}]).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return read_archive(str(path))
