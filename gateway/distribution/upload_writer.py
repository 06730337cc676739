"""Sending a PATCH body to the shard that owns the upload: as ZeroMQ frames, or through its spool file.

Without a spool directory (the gateway does not share the shards' filesystem) or for a body under
FRAME_SIZE, the body goes as ~FRAME_SIZE ``upload.write`` messages of its chunks. Otherwise it goes
to the shard's ``spool/<uuid>.<start>`` — from memory in SPOOL_PIECE batches, or from the server's
body tap (:mod:`gateway.body_tap`) without passing through Python — and every SPOOL_PIECE bytes are
announced (``upload.write`` with ``spooled``); the shard hashes them and adopts or copies the file
(:mod:`shard.uploads`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path
from typing import Any, Protocol

from common import messages
from common.errors import ErrorCode, RegistryError
from common.protocol import FRAME_SIZE, WINDOW

log = logging.getLogger("shardreg.gateway")

#: Bytes announced to the shard at once (the gateway holds at most this much of a body in memory).
SPOOL_PIECE = 4 * FRAME_SIZE
#: Why a spool directory cannot be used at all (then the body goes as frames, as without one).
UNUSABLE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.EROFS})
#: Announced spool regions of one PATCH not yet hashed by the shard (on disk, not in memory).
SPOOL_WINDOW = 4


def check_range(content_range: tuple[int, int] | None, length: int) -> None:
    """A chunk's Content-Range must span exactly the bytes its body brought."""
    if content_range is not None and content_range[1] - content_range[0] + 1 != length:
        raise RegistryError(ErrorCode.RANGE_INVALID, "Content-Range does not match the body length",
                            detail={"range": list(content_range), "received": length})


class Pace(Protocol):
    """The body's pace rule (``BodyPace`` in :mod:`gateway.distribution.uploads`)."""

    def wait_limit(self) -> float: ...

    def note(self, waited: float, received: int) -> None: ...


def _write_all(fd: int, chunks: list[Any]) -> None:
    """Append ``chunks`` to the spool file (blocking: run off the event loop)."""
    views = [memoryview(c) for c in chunks]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def spool_failed(exc: OSError) -> RegistryError:
    """What a PATCH answers when its spool file cannot be written (the shard's disk: 507 if full)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return RegistryError(ErrorCode.INSUFFICIENT_STORAGE, f"the registry's storage is full "
                             f"({os.strerror(exc.errno)}); nothing was stored, retry once space is freed")
    log.error("spool write failed: %s", exc)
    return RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "the upload could not be written", status=500)


class TapSink:
    """Where the server's body tap puts a PATCH body: the writer's spool pieces, at the body's pace."""

    def __init__(self, writer: ChunkWriter, pace: Pace) -> None:
        self.writer, self.pace = writer, pace

    async def put(self, data: bytes) -> None:
        await self.writer.put(data)

    def file(self) -> int:
        return self.writer.file()

    async def moved(self, count: int) -> None:
        await self.writer.moved(count)

    def wait_limit(self) -> float:
        return self.pace.wait_limit()

    def note(self, waited: float, received: int) -> None:
        self.pace.note(waited, received)


class ChunkWriter:
    """Sends a PATCH body to the shard, keeping few of its writes unanswered.

    Without a ``spool`` directory (or for a body under FRAME_SIZE): as ~FRAME_SIZE messages of
    body chunks, at most WINDOW unanswered. With one: the body goes to the PATCH's spool file —
    from memory in SPOOL_PIECE batches (:meth:`add`, off the event loop) or from the server's
    body tap (:meth:`put`, :meth:`file`, :meth:`moved`) — and every SPOOL_PIECE bytes are announced to the
    shard, at most SPOOL_WINDOW unanswered. A PATCH never mixes the two ways (the shard refuses).
    """

    def __init__(self, client: Any, shard: int, repo: str, uuid: str, offset: int,
                 spool: Path | None = None) -> None:
        self.client, self.shard, self.repo, self.uuid = client, shard, repo, uuid
        self.offset = offset  # bytes announced so far (end of the upload once all are)
        self.spool = spool
        self.spool_path = spool / f"{uuid}.{offset}" if spool is not None else None
        self.frames: list[Any] = []
        self.buffered = 0
        self.inflight: list[asyncio.Future] = []
        self.fd = -1  # the spool file, once this PATCH writes it
        self.unsent = 0  # bytes in the spool file not yet announced

    # -- from memory --------------------------------------------------------------------------
    async def add(self, chunk: bytes) -> None:
        self.frames.append(chunk)
        self.buffered += len(chunk)
        if self.buffered >= (SPOOL_PIECE if self.spool is not None else FRAME_SIZE):
            await self._send()

    async def write(self, frames: list[Any]) -> None:
        self.frames.extend(frames)
        self.buffered += sum(len(f) for f in frames)
        await self._send()

    async def _send(self) -> None:
        if self.spool is not None and (self.fd >= 0 or self.buffered >= FRAME_SIZE) and self.open_spool():
            fd = self._spool_fd()
            try:
                await asyncio.get_running_loop().run_in_executor(None, _write_all, fd, self.frames)
            except OSError as exc:
                raise spool_failed(exc) from None
            self.unsent += self.buffered
            self.frames, self.buffered = [], 0
            await self._announce()
            return
        while len(self.inflight) >= WINDOW:
            await self.client.wait(self.shard, self.inflight.pop(0))
        future = await self.client.send(self.shard, messages.UPLOAD_WRITE(
            {"repo": self.repo, "uuid": self.uuid, "offset": self.offset}), self.frames)
        self.inflight.append(future)
        self.offset += self.buffered
        self.frames, self.buffered = [], 0

    # -- from the body tap (files written off the event loop: a disk that stalls must not stall
    #    every request of this worker) --------------------------------------------------------
    async def put(self, data: bytes) -> None:
        """Bytes of the body the server had already read."""
        fd = self._spool_fd()
        try:
            await asyncio.get_running_loop().run_in_executor(None, _write_all, fd, [data])
        except OSError as exc:
            raise spool_failed(exc) from None
        await self.moved(len(data))

    def file(self) -> int:
        """The spool file, for the tap to splice into."""
        return self._spool_fd()

    async def moved(self, count: int) -> None:
        """``count`` more bytes are in the spool file: announce them every SPOOL_PIECE."""
        self.unsent += count
        if self.unsent >= SPOOL_PIECE:
            await self._announce()

    # -- the spool file -----------------------------------------------------------------------
    def open_spool(self) -> bool:
        """Create the PATCH's spool file; False (and frames from now on) when the shard offers no
        spool this gateway can write — an older shard, or another user's directory."""
        if self.fd >= 0:
            return True
        try:
            self._spool_fd()
        except RegistryError as exc:
            cause = exc.__context__
            if isinstance(cause, OSError) and cause.errno in UNUSABLE:
                log.warning("no usable spool directory %s (%s): upload bodies go over ZeroMQ", self.spool,
                            cause.strerror)
                self.spool = self.spool_path = None
                return False
            raise
        return True

    def _spool_fd(self) -> int:
        if self.fd < 0:
            assert self.spool_path is not None
            try:  # O_EXCL: never into a file someone else made
                self.fd = os.open(self.spool_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except OSError as exc:
                raise spool_failed(exc) from None
        return self.fd

    async def _announce(self) -> None:
        """Tell the shard the spool file's next ``unsent`` bytes are there (waiting for a credit)."""
        if not self.unsent:
            return
        while len(self.inflight) >= SPOOL_WINDOW:
            await self.client.wait(self.shard, self.inflight.pop(0))
        future = await self.client.send(self.shard, messages.UPLOAD_WRITE(
            {"repo": self.repo, "uuid": self.uuid, "offset": self.offset, "spooled": self.unsent}))
        self.inflight.append(future)
        self.offset += self.unsent
        self.unsent = 0

    async def flush(self) -> None:
        """Send what is left and wait until the shard has every byte (the spool file is then the shard's)."""
        if self.frames:
            await self._send()
        await self._announce()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        while self.inflight:
            await self.client.wait(self.shard, self.inflight.pop(0))

    async def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.spool_path is not None:
            _unlink_quietly(self.spool_path)
        for future in self.inflight:
            self.client.pending.pop(getattr(future, "rid", b""), None)
            future.cancel()
        self.inflight = []
