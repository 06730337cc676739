"""One owner per data directory: an exclusive ``flock`` on ``<dir>/shardreg.lock``.

Two supervisors (or two shards) on one directory would overwrite each other's sockets, status
files and LMDB environments. Each process that owns a directory (the supervisor its root, a
shard its ``shard-<i>`` directory) takes the lock at start and holds it until it exits; the
kernel drops it when the process dies, even by SIGKILL, so a stale file never blocks a restart.
The holder writes its PID into the file, for the refusal message.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

LOCK_NAME = "shardreg.lock"


class DataDirBusy(Exception):
    """Another process holds the directory's lock."""


class DataLock:
    """The held lock of one directory; :meth:`release` (or process exit) gives it up."""

    def __init__(self, directory: Path, fd: int) -> None:
        self.directory = directory
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode(errors="replace").strip()
    except OSError:
        return "an unknown process"
    return f"pid {text}" if text.isdigit() else "an unknown process"


def lock_data_dir(directory: Path, what: str = "data directory") -> DataLock:
    """Create ``directory`` if needed and lock it for this process, or raise :class:`DataDirBusy`.

    The descriptor is close-on-exec, so children started later do not hold the lock.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _holder(fd)
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise DataDirBusy(f"{what} {directory} is in use by another shardreg process ({holder}); "
                              "stop it first, or use another directory") from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataLock(directory, fd)


__all__ = ["DataDirBusy", "DataLock", "LOCK_NAME", "lock_data_dir"]
