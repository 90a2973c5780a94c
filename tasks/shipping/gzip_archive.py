"""What of an image's `docker save` archive a host is sent, as bytes.

`encode` writes the partial archive (imagearchive.write_archive: without
the layers a host already has, which tasks/shipping/ship.py decides, naming the
release's tag) through gzip when that pays off.

Several hosts of one run that lack the same layers are sent the same
bytes: `Encodings` makes each distinct (archive, layers left out, tag) once,
in a thread of its own, into a file that every host's stream reads while
it grows. Without it, `fab release --parallel` to ten hosts compressed the
same partial archive ten times (gzip -1 of a 170 MB image is about 1.7 s
of CPU here, on cores the other hosts' sends need).
"""

import gzip
import os
import threading

from .image_archive import write_archive

# Above this, a load is slowed by the network more than by gzip -1 (which
# compresses ~100 MB/s here); below it, compressing costs more than it saves.
COMPRESS_ABOVE = 64 * 1024


def encode(archive, out, drop, repo_tag):
    """write_archive to ``out``, through gzip -1 when the archive is large."""
    if archive.size > COMPRESS_ABOVE:
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:
            write_archive(archive, gz, drop, repo_tag)
    else:
        write_archive(archive, out, drop, repo_tag)


class Encoding:
    """One encoded partial archive, written into ``path`` by a thread of its
    own; ``chunks()`` yields its bytes as they are written, to any number of
    readers, and raises what writing raised."""

    def __init__(self, path, archive, drop, repo_tag):
        self.path, self.size, self.done, self.error = path, 0, False, None
        self._cond = threading.Condition()
        self._file = open(path, "wb", buffering=0)
        threading.Thread(target=self._write, args=(archive, drop, repo_tag),
                         daemon=True).start()

    def write(self, data):  # what encode() writes to
        self._file.write(data)
        with self._cond:
            self.size += len(data)
            self._cond.notify_all()
        return len(data)

    def flush(self):
        pass

    def _write(self, archive, drop, repo_tag):
        try:
            encode(archive, self, drop, repo_tag)
        except BaseException as exc:  # noqa: BLE001 (handed to every reader)
            self.error = exc
        finally:
            self._file.close()
            with self._cond:
                self.done = True
                self._cond.notify_all()

    def chunks(self, size=256 * 1024):
        with open(self.path, "rb") as f:
            read = 0
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self.size > read or self.done)
                    available, done, error = self.size, self.done, self.error
                if error is not None:
                    raise error
                if available > read:
                    data = f.read(min(size, available - read))
                    read += len(data)
                    yield data
                elif done:
                    return


class Encodings:
    """The encoded partial archives of one run, one per (archive, layers left
    out, tag), kept in ``directory`` (the run's temporary one) until it goes."""

    def __init__(self, directory):
        self.directory = directory
        self._lock = threading.Lock()
        self._made = {}

    def get(self, archive, drop, repo_tag):
        key = (archive.path, frozenset(drop), repo_tag)
        with self._lock:
            if key not in self._made:
                path = os.path.join(self.directory, f"encoded-{len(self._made)}")
                self._made[key] = Encoding(path, archive, drop, repo_tag)
            return self._made[key]
