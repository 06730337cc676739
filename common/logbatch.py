"""Log lines to stderr in batches: one ``write`` for the lines of several requests instead of one per line.

Every request writes an access-log line. Written one by one, each line is a ``write`` to the pipe
the supervisor reads, which wakes the supervisor to relay it: two system calls and a context switch
per request, about a tenth of a gateway worker's time serving HEADs (py-spy, docs/performance.md).
Here a line logged while an event loop runs waits up to :data:`LINGER` (or until ``PIPE_BUF`` bytes
are pending) and is written together with the others logged meanwhile, even when requests come one
at a time. Lines stay whole: each ``write`` is at most
``PIPE_BUF`` bytes cut at line ends (atomic on a pipe, so the lines of processes sharing the pipe
never interleave). Warnings and errors are written at once (after what is pending, in order), and
so is everything logged outside an event loop; :meth:`flush` runs at exit (``logging.shutdown``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
from typing import IO

#: Bytes the kernel writes to a pipe atomically (POSIX guarantees at least 512; Linux: 4096).
PIPE_BUF = getattr(select, "PIPE_BUF", 512)
#: Longest a line logged in an event loop waits for others to share its ``write`` (seconds).
LINGER = 0.01


class BatchingStreamHandler(logging.Handler):
    """A stream handler writing the lines logged within :data:`LINGER` with as few ``write`` calls as possible."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.scheduled: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = (self.format(record) + "\n").encode("utf-8", "replace")
        except Exception:  # noqa: BLE001 - logging never raises into the caller
            self.handleError(record)
            return
        self.pending.append(line)
        if record.levelno >= logging.WARNING:
            self._write()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write()
            return
        self.pending_bytes += len(line)
        if self.pending_bytes >= PIPE_BUF:
            self._write()
        elif self.scheduled is not loop:
            self.scheduled = loop
            loop.call_later(LINGER, self.flush)

    def flush(self) -> None:
        self.acquire()
        try:
            self.scheduled = None
            self._write()
        finally:
            self.release()

    def _write(self) -> None:
        lines, self.pending, self.pending_bytes = self.pending, [], 0
        if not lines:
            return
        try:
            fd = self.stream.fileno()
            self.stream.flush()  # anything written to the stream directly goes first
        except (AttributeError, OSError, ValueError):  # not a real file (a test's StringIO)
            try:
                self.stream.write(b"".join(lines).decode("utf-8", "replace"))
                self.stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream: logging never raises (it may run in a loop callback)
                pass
            return
        batch: list[bytes] = []
        size = 0
        for line in lines:
            if batch and size + len(line) > PIPE_BUF:
                _write_all(fd, b"".join(batch))
                batch, size = [], 0
            batch.append(line)
            size += len(line)
        if batch:
            _write_all(fd, b"".join(batch))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except BlockingIOError:  # a non-blocking stderr that is full: drop the rest rather than stall the loop
        pass
    except OSError:  # nobody reads our output any more: keep running
        pass


__all__ = ["PIPE_BUF", "BatchingStreamHandler"]
