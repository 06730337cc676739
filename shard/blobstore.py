"""Blob files of one shard.

Layout under the shard directory::

    blobs/<alg>/<first two hex>/<hex>   content-addressed, immutable, written once by rename
    uploads/<uuid>                      an upload in progress (bytes so far)
    spool/<uuid>.<offset>               the body of a PATCH starting at <offset>, written by a gateway
                                        on the same filesystem (hashed as announced; then renamed into
                                        uploads/ when the PATCH starts the upload, else copied and removed)

An upload is written and hashed off the event loop (one writer at a time per upload, in a
thread pool: hashlib and os.write release the GIL). Committing verifies the digest, fsyncs
the file, renames it into ``blobs/`` and fsyncs the directory; only then does the caller
record it in LMDB. A crash therefore leaves either no blob or a whole one, and metadata never
names a file that is not complete on disk.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from pathlib import Path

from common.grammar import DIGEST_ALGORITHMS
from shard import writeback

READ_SIZE = 1024 * 1024
#: A spool file untouched this long belongs to a PATCH that is over.
SPOOL_STALE_SECONDS = 600.0


def relative_path(digest: str) -> str:
    """A blob's file under its shard's directory."""
    alg, hexpart = digest.split(":", 1)
    return f"blobs/{alg}/{hexpart[:2]}/{hexpart}"


class SpoolError(ValueError):
    """A spool file is missing, is not a plain file, or does not hold the bytes announced."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_buffers = threading.local()


def _read_buffer() -> memoryview:
    """This thread's read buffer: reused, so that reading spool files allocates (and faults) nothing."""
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None:
        buffer = _buffers.buffer = memoryview(bytearray(READ_SIZE))
    return buffer


def _open_spooled(path: Path) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise SpoolError(f"spool file {path.name} cannot be opened: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SpoolError(f"spool file {path.name} is not a regular file")
    return fd


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class UploadFile:
    """The running hash of one upload, and its file while it is being written. One thread at a time.

    The descriptor is opened when first needed and closed by :meth:`close`, which keeps the
    offset and the hash: an upload holds a descriptor only while a PATCH (or a commit) uses it,
    so thousands of idle uploads cannot exhaust the process's file limit. Any later use opens
    the file again where it was.
    """

    def __init__(self, path: Path, algorithm: str, offset: int = 0, *, writeback: bool = False) -> None:
        self.path = path
        self.algorithm = algorithm
        #: Start the disk write of each region of 1 MiB or more as it is written (the store is durable).
        self.writeback = writeback
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.hasher = hashlib.new(algorithm)
        self.offset = 0
        try:
            if offset:
                self._rehash(offset)
            os.ftruncate(self.fd, self.offset)
            os.lseek(self.fd, self.offset, os.SEEK_SET)
        except BaseException:
            self.close()
            raise

    @property
    def is_open(self) -> bool:
        return self.fd >= 0

    def _open(self) -> int:
        """The descriptor, opened again (positioned at ``offset``) after :meth:`close`."""
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDWR)  # no O_CREAT: a removed upload stays removed
            try:  # ``offset`` is the truth: nothing past it is part of the upload
                os.ftruncate(self.fd, self.offset)
                os.lseek(self.fd, self.offset, os.SEEK_SET)
            except BaseException:
                self.close()
                raise
        return self.fd

    def _rehash(self, offset: int) -> None:
        """Rebuild the hash of the first ``offset`` bytes (after a restart, or a rollback)."""
        fd = self._open()
        self.hasher = hashlib.new(self.algorithm)
        size = min(offset, os.fstat(fd).st_size)
        pos = 0
        while pos < size:
            chunk = os.pread(fd, min(READ_SIZE, size - pos), pos)
            if not chunk:
                break
            self.hasher.update(chunk)
            pos += len(chunk)
        self.offset = pos

    def write(self, frames: list[memoryview | bytes]) -> int:
        fd = self._open()
        start = self.offset
        for data in frames:
            view = memoryview(data)
            self.hasher.update(view)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            self.offset += len(data)
        if self.writeback:
            writeback.start(fd, start, self.offset - start)
        return self.offset

    def take_spooled(self, path: Path, position: int, length: int, *, copy: bool) -> int:
        """Hash the ``length`` bytes at ``position`` of the PATCH's spool file ``path`` into the
        upload, copying them into the upload's own file when ``copy`` (else the spool file is
        adopted whole at the PATCH's end: :meth:`adopt`). ``O_NOFOLLOW``/``O_NONBLOCK`` and the
        regular-file check keep a planted link or FIFO from being read (or blocking the thread)."""
        src = _open_spooled(path)
        try:
            fd = self._open() if copy else -1
            buffer = _read_buffer()
            done = 0
            while done < length:
                got = os.preadv(src, [buffer[:min(len(buffer), length - done)]], position + done)
                if not got:
                    raise SpoolError(f"spool file {path.name} ends at {position + done}, before {position + length}")
                view = buffer[:got]
                self.hasher.update(view)
                while copy and view:
                    view = view[os.write(fd, view):]
                done += got
                self.offset += got
            if self.writeback and copy:
                writeback.start(fd, self.offset - length, length)
            elif self.writeback:  # the spool file, adopted whole at the PATCH's end
                writeback.start(src, position, length)
        finally:
            os.close(src)
        return self.offset

    @staticmethod
    def check_spooled(path: Path, announced: int) -> None:
        """A PATCH's spool file holds exactly the bytes announced (else the gateway lost track)."""
        src = _open_spooled(path)
        try:
            size = os.fstat(src).st_size
        finally:
            os.close(src)
        if size != announced:
            raise SpoolError(f"spool file {path.name} holds {size} bytes, not the {announced} announced")

    def adopt(self, path: Path) -> None:
        """Make the spool file ``path``, holding exactly this upload's bytes (hashed as they were
        announced), the upload's file: a rename instead of copying every byte once more."""
        self.check_spooled(path, self.offset)
        self.close()
        os.replace(path, self.path)

    def snapshot(self) -> tuple[int, object]:
        return self.offset, self.hasher.copy()

    def rollback(self, snapshot: tuple[int, object]) -> None:
        self.offset, hasher = snapshot
        self.hasher = hasher.copy()  # type: ignore[attr-defined]
        fd = self._open()
        os.ftruncate(fd, self.offset)
        os.lseek(fd, self.offset, os.SEEK_SET)

    def digest(self, algorithm: str) -> str:
        if algorithm == self.algorithm:
            return f"{algorithm}:{self.hasher.hexdigest()}"
        fd = self._open()
        hasher = hashlib.new(algorithm)
        pos = 0
        while pos < self.offset:
            chunk = os.pread(fd, min(READ_SIZE, self.offset - pos), pos)
            if not chunk:
                break
            hasher.update(chunk)
            pos += len(chunk)
        return f"{algorithm}:{hasher.hexdigest()}"

    def fsync(self) -> None:
        os.fsync(self._open())

    def close(self) -> None:
        """Give the descriptor back (the upload stays usable: the next use opens the file again)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class BlobStore:
    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self.durable = durable
        self.uploads_dir = root / "uploads"
        self.uploads_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.spool_dir = root / "spool"
        self.spool_dir.mkdir(mode=0o700, exist_ok=True)
        for alg in DIGEST_ALGORITHMS:
            (root / "blobs" / alg).mkdir(mode=0o700, parents=True, exist_ok=True)

    def relative_path(self, digest: str) -> str:
        return relative_path(digest)

    def path(self, digest: str) -> Path:
        return self.root / self.relative_path(digest)

    def upload_path(self, uuid: str) -> Path:
        return self.uploads_dir / uuid

    def open_upload(self, uuid: str, algorithm: str, offset: int = 0) -> UploadFile:
        """The upload's file (created if new, else truncated to ``offset`` and re-hashed), left closed."""
        upload = UploadFile(self.upload_path(uuid), algorithm, offset, writeback=self.durable)
        upload.close()
        return upload

    def install(self, upload: UploadFile, digest: str) -> None:
        """Make the upload's file the blob ``digest`` (durably, if configured). Blocking."""
        try:
            if self.durable:
                upload.fsync()
        finally:
            upload.close()
        target = self.path(digest)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(upload.path, target)
        if self.durable:
            _fsync_dir(target.parent)

    def install_bytes(self, data: bytes, digest: str) -> None:
        """Store small content given whole (tests and internal copies). Blocking."""
        tmp = self.uploads_dir / f"direct-{os.getpid()}-{digest.split(':', 1)[1][:16]}"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
            fh.write(data)
            if self.durable:
                fh.flush()
                os.fsync(fh.fileno())
        target = self.path(digest)
        target.parent.mkdir(mode=0o700, exist_ok=True)
        os.replace(tmp, target)
        if self.durable:
            _fsync_dir(target.parent)

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def read(self, digest: str, offset: int, length: int) -> bytes:
        fd = os.open(self.path(digest), os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def remove(self, digest: str) -> None:
        _unlink_quietly(self.path(digest))

    def remove_upload(self, uuid: str) -> None:
        _unlink_quietly(self.upload_path(uuid))

    def spool_path(self, uuid: str, offset: int) -> Path:
        """Where a gateway sharing the filesystem puts the body of the PATCH of ``uuid`` starting at ``offset``."""
        return self.spool_dir / f"{uuid}.{offset}"

    def remove_spool(self, uuid: str, offset: int) -> None:
        _unlink_quietly(self.spool_path(uuid, offset))

    def sweep_spool(self, older_than: float = SPOOL_STALE_SECONDS) -> int:
        """Remove spool files untouched for ``older_than`` seconds: their gateway died while
        writing them, or their PATCH was undone. Returns how many."""
        cutoff = time.time() - older_than
        removed = 0
        for entry in os.scandir(self.spool_dir):
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:  # gone meanwhile, or not a file: nothing a gateway should put here
                pass
        return removed

    def upload_files(self) -> list[str]:
        return [p.name for p in self.uploads_dir.iterdir() if p.is_file()]
