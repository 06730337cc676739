"""A full disk, told apart from other failures: it becomes 507 Insufficient Storage, never a 400
that blames the client nor a 500 with a traceback.

ENOSPC (no space), EDQUOT (quota) and EFBIG (the file size limit, ``ulimit -f``) all mean "this
shard cannot store more". LMDB reports them as ``lmdb.DiskError`` or as ``lmdb.Error`` carrying
the C library's message, so both the errno and the message are checked.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
import time
from pathlib import Path

from common.errors import ErrorCode, RegistryError

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
_FULL_MESSAGES = tuple(os.strerror(code) for code in sorted(FULL_ERRNOS))


def is_storage_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError or an LMDB error) means the disk cannot take more data."""
    if isinstance(exc, OSError) and exc.errno in FULL_ERRNOS:
        return True
    if type(exc).__module__ == "lmdb" or type(exc).__module__.startswith("lmdb."):
        text = str(exc)
        return type(exc).__name__ == "DiskError" or any(message in text for message in _FULL_MESSAGES)
    return False


def storage_full(exc: BaseException) -> RegistryError:
    """The 507 a client gets; the message names the cause (never a path or a secret)."""
    reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc).rsplit(": ", 1)[-1]
    return RegistryError(ErrorCode.INSUFFICIENT_STORAGE,
                         f"the registry's storage is full ({reason}); nothing was stored, retry once space is freed")


def write_failure(exc: BaseException, fallback: RegistryError) -> RegistryError:
    """:func:`storage_full` for a full disk, ``fallback`` for anything else."""
    return storage_full(exc) if is_storage_full(exc) else fallback


#: How long after a write failed for lack of space the shard reports itself not ready.
FULL_GRACE = 30.0


class DiskState:
    """Remembers the shard's last write refused for lack of space, for ``/readyz``: a file size
    limit or a quota is not visible in the free space, only in a write that fails."""

    def __init__(self) -> None:
        self.full_at: float | None = None
        self.reason = ""

    def note_full(self, reason: str) -> None:
        self.full_at, self.reason = time.monotonic(), reason

    def recently_full(self) -> str | None:
        """Why the shard cannot write, if a write failed for lack of space in the last FULL_GRACE seconds."""
        if self.full_at is None or time.monotonic() - self.full_at > FULL_GRACE:
            return None
        return self.reason


#: A short write at the end of an LMDB file that was at the file size limit or on a full filesystem.
_NEAR = 1024 * 1024
_EIO_TEXT = os.strerror(errno.EIO)


def diagnose(exc: BaseException, data_file: Path) -> BaseException:
    """LMDB reports a short write (what a full disk or ``ulimit -f`` cause) as EIO: tell a full disk
    from a real I/O error by looking at the file and its filesystem; returns the error to raise (an
    OSError with the errno for a full disk, whether LMDB said EIO or the errno itself)."""
    if is_storage_full(exc):
        if isinstance(exc, OSError):
            return exc
        code = next((c for c in sorted(FULL_ERRNOS) if os.strerror(c) in str(exc)), errno.ENOSPC)
        return OSError(code, f"{os.strerror(code)} (metadata could not grow)")  # one type whatever LMDB said
    if _EIO_TEXT not in str(exc):
        return exc
    try:
        size = data_file.stat().st_size
        free = shutil.disk_usage(data_file.parent).free
    except OSError:
        return exc
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size >= limit - _NEAR:
        return OSError(errno.EFBIG, f"{os.strerror(errno.EFBIG)} (metadata reached the file size limit)")
    if free < _NEAR:
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (metadata could not grow)")
    return exc
