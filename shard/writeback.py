"""Starting the disk write of an upload's bytes as they arrive, not at its commit.

A blob's commit fsyncs its file. Left alone, the kernel writes a file's dirty pages back only
when they are old or plentiful, so that fsync finds most of a large blob still in memory and
waits while it is all written: the disk idles while the body arrives, then the client waits for
the disk. Asking for the write of each region as soon as it is hashed (``sync_file_range`` with
``SYNC_FILE_RANGE_WRITE``: start, do not wait) overlaps the two. A hint only: durability still
comes from the commit's fsync, and where the call does not exist nothing is asked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger("shardreg.shard")

#: Regions smaller than this are left to the commit's fsync (one syscall fewer per small blob).
MIN_BYTES = 1 << 20
_SYNC_FILE_RANGE_WRITE = 2


def _load() -> Callable[[int, int, int, int], int] | None:
    try:
        func = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).sync_file_range
    except (OSError, AttributeError):  # not Linux
        return None
    func.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    func.restype = ctypes.c_int
    return func


_sync_file_range = _load()


def start(fd: int, offset: int, length: int) -> bool:
    """Start writing ``length`` bytes of ``fd`` at ``offset`` to disk; returns whether it was asked.
    Blocking only while the device's queue is full (call it off the event loop)."""
    if _sync_file_range is None or length < MIN_BYTES:
        return False
    if _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE) != 0:
        log.debug("sync_file_range failed: errno %d", ctypes.get_errno())  # e.g. a pipe: only a hint
        return False
    return True
