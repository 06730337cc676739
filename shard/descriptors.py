"""The shard process's file descriptors: how many are left, and whether opening files fails.

A shard that cannot open files (``EMFILE``/``ENFILE``) cannot take blobs or uploads although
it still answers pings: readiness (the shard's ``/readyz`` and the gateway's, through
``ping``) reports it, and file operations that hit the limit become 429 ``TOOMANYREQUESTS``
(retry later) instead of 500.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import time

#: Fewer free descriptors than this and the shard reports not ready.
RESERVE = 32
#: After a file operation failed for want of descriptors the shard reports not ready this long.
FAILED_FOR = 10.0
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})
_FD_DIR = "/proc/self/fd"

log = logging.getLogger("shardreg.shard")


def exhausted(exc: BaseException) -> bool:
    """Whether ``exc`` says the process (or the system) is out of file descriptors."""
    return isinstance(exc, OSError) and exc.errno in _EXHAUSTED


def limit() -> int:
    """The process's soft descriptor limit (read each time: ``prlimit`` may change it)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class Descriptors:
    """Watches the descriptor headroom of this process and remembers failed opens."""

    def __init__(self) -> None:
        self.failed_at: float | None = None

    def failed(self) -> None:
        """A file operation failed with EMFILE/ENFILE (logged once per episode)."""
        now = time.monotonic()
        if self.failed_at is None or now - self.failed_at >= FAILED_FOR:
            log.warning("out of file descriptors (limit %d): file operations answer 429 until some are free",
                        limit())
        self.failed_at = now

    def in_use(self) -> int | None:
        """Descriptors open now; None where the count is unavailable (no ``/proc``)."""
        try:
            return len(os.listdir(_FD_DIR))
        except OSError as exc:
            if exhausted(exc):
                self.failed()
            return None

    def problem(self) -> str | None:
        """Why the shard cannot open files (for readiness), or None."""
        used, cap = self.in_use(), limit()
        if self.failed_at is not None and time.monotonic() - self.failed_at < FAILED_FOR:
            return f"cannot open files: out of file descriptors (limit {cap})"
        if used is not None and cap - used < RESERVE:
            return f"almost out of file descriptors: {used} of {cap} in use"
        return None
