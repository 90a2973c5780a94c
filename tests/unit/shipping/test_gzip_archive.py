"""One encoding of a partial archive serves every host of a run (tasks/shipping/gzip_archive.py)."""

import gzip
import io
import tarfile
import threading

import pytest

from support.archives import saved_archive
from tasks.shipping.gzip_archive import Encodings, encode


def encoded_alone(archive, drop, tag):
    out = io.BytesIO()
    encode(archive, out, drop, tag)
    return out.getvalue()


@pytest.mark.parametrize("big", [False, True])
def test_every_reader_gets_the_bytes_one_host_alone_would(tmp_path, big):
    archive = saved_archive(tmp_path, big)
    encodings = Encodings(str(tmp_path))
    got = [None] * 5

    def read(n):
        got[n] = b"".join(encodings.get(archive, {"l2/layer.tar"}, "app:1").chunks(size=1000))

    threads = [threading.Thread(target=read, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    alone = encoded_alone(archive, {"l2/layer.tar"}, "app:1")
    assert got == [alone] * 5
    assert alone.startswith(b"\x1f\x8b") == big  # gzip above COMPRESS_ABOVE
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(alone) if big else alone)) as tar:
        assert "l2/layer.tar" not in tar.getnames()


def test_it_is_made_once_per_archive_layers_and_tag(tmp_path):
    archive = saved_archive(tmp_path)
    encodings = Encodings(str(tmp_path))
    first = encodings.get(archive, {"l1/layer.tar"}, "app:1")
    assert encodings.get(archive, {"l1/layer.tar"}, "app:1") is first
    assert encodings.get(archive, set(), "app:1") is not first
    assert encodings.get(archive, {"l1/layer.tar"}, "other:1") is not first
    assert len({e.path for e in encodings._made.values()}) == 3


def test_a_failed_encoding_fails_every_reader(tmp_path):
    archive = saved_archive(tmp_path)
    (tmp_path / "image.tar").write_bytes(b"not a tar")  # gone bad after it was read
    encoding = Encodings(str(tmp_path)).get(archive, set(), "app:1")
    for _ in range(2):
        with pytest.raises(tarfile.TarError):
            b"".join(encoding.chunks())
