"""An upload's bytes start on their way to disk as they arrive (shard/writeback.py), not only at
the commit's fsync. Checked with Linux's ``cachestat``: how many of a file's cached pages are
still dirty. Without the hint the kernel leaves a few MiB dirty for ~30 s (``dirty_expire``)."""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

from shard import writeback
from shard.blobstore import BlobStore, UploadFile

MiB = 1 << 20
_CACHESTAT = 451  # x86-64 and the generic syscall table


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in
                ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


def dirty_pages(path: Path, offset: int = 0, length: int = 0) -> int:
    """Pages of ``path`` (of ``length`` bytes at ``offset``; 0: to the end) dirty or being written."""
    libc = ctypes.CDLL(None, use_errno=True)
    stat = _Stat()
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.syscall(_CACHESTAT, fd, ctypes.byref(_Range(offset, length)), ctypes.byref(stat), 0) != 0:
            raise OSError(ctypes.get_errno(), "cachestat")
    finally:
        os.close(fd)
    return stat.nr_dirty + stat.nr_writeback


def written_back(path: Path, offset: int = 0, length: int = 0, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while dirty_pages(path, offset, length):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_written_region_is_on_its_way_to_disk_and_an_unhinted_one_is_not(tmp_path: Path) -> None:
    hinted, left = tmp_path / "hinted", tmp_path / "left"
    for path in (hinted, left):
        path.write_bytes(os.urandom(4 * MiB))
        assert dirty_pages(path) > 0  # in memory only
    fd = os.open(hinted, os.O_RDONLY)
    try:
        assert writeback.start(fd, 0, 4 * MiB)
        assert not writeback.start(fd, 0, writeback.MIN_BYTES - 1)  # small: left to the commit's fsync
    finally:
        os.close(fd)
    assert written_back(hinted)
    assert dirty_pages(left) > 0  # the control: still waiting for the kernel's own schedule


def test_upload_writes_and_spooled_regions_of_a_durable_store_start_their_writeback(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "durable", durable=True)
    upload = store.open_upload("u1", "sha256")
    assert upload.writeback
    upload.write([os.urandom(2 * MiB), os.urandom(2 * MiB)])
    upload.close()
    assert written_back(upload.path)

    spool = store.spool_path("u2", 0)
    spool.write_bytes(os.urandom(8 * MiB))
    spooled = store.open_upload("u2", "sha256")
    spooled.take_spooled(spool, 0, 4 * MiB, copy=False)  # the spool file is adopted whole later
    assert spooled.offset == 4 * MiB
    copied = store.open_upload("u3", "sha256")
    copied.take_spooled(spool, 4 * MiB, 4 * MiB, copy=True)  # a later PATCH: copied into the upload
    copied.close()
    assert written_back(copied.path)
    # u2's half of the spool file is written back; u3 copied the other half, so its copy was hinted
    assert written_back(spool, 0, 4 * MiB)
    assert dirty_pages(spool, 4 * MiB, 4 * MiB) > 0


def test_a_store_that_is_not_durable_asks_for_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "fast", durable=False)
    upload = store.open_upload("u1", "sha256")
    assert not upload.writeback
    upload.write([os.urandom(4 * MiB)])
    upload.close()
    assert dirty_pages(upload.path) > 0
    assert not UploadFile(tmp_path / "plain", "sha256").writeback  # only a durable store asks
