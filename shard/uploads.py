"""Uploads in progress on a shard: their files, the PATCH being written and its ordered queue.

An upload is recorded in the metadata (``uploads``) when it starts and whenever a PATCH ends;
its bytes live in ``uploads/<uuid>``. The in-memory :class:`UploadSession` is rebuilt from
both after a restart. Chunks of a PATCH arrive as ``upload.write`` messages, are queued in
arrival order by the server loop (:meth:`UploadSessions.enqueue_write`) and written off the
event loop, several at a time. A chunk's bytes come as the message's frames or — from a
gateway on the same filesystem — as the next ``spooled`` bytes of the PATCH's spool file
(``spool/<uuid>.<start>``, which the gateway fills as the body arrives). The shard hashes each
announced region; a PATCH that starts the upload then adopts the spool file as the upload's file
(a rename), a later one copies each region into it. A pushed MB then crosses no socket between
gateway and shard, and is copied once fewer.

Bounded: an upload holds a file descriptor only while a PATCH writes it (opened by its first
chunk, closed when it ends or is undone), at most half the process's descriptor limit of
PATCHes write at once, and a shard keeps at most ``storage.maxUploads`` uploads, at most
``storage.maxUploadsPerUser`` of them per authenticated user (anonymous uploads count against
the shard's cap only). Beyond a cap the answer is 429 ``TOOMANYREQUESTS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from common import messages as m
from common.errors import ErrorCode, RegistryError
from common.protocol import Answer, Frames
from shard import descriptors
from shard.blobstore import BlobStore, SpoolError, UploadFile
from shard.diskfull import write_failure
from shard.metastore import MetaStore, Record
from shard.ops.registry import Respond

log = logging.getLogger("shardreg.shard")

#: Runs a blocking function in the shard's I/O pool.
RunIO = Callable[..., Awaitable[Any]]
#: A PATCH whose gateway went silent this long no longer blocks its upload.
STALE_PATCH_SECONDS = 120.0
#: At most this many queued chunk messages (about 1 MiB each) are written in one thread job.
WRITE_BATCH = 8


#: Seconds a client refused by an upload cap is told to wait.
RETRY_AFTER = "10"


def no_upload(uuid: str) -> RegistryError:
    return RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": uuid})


def write_failed(exc: BaseException) -> RegistryError:
    """What a PATCH whose write failed answers: the shard's own error (e.g. out of descriptors: 429)."""
    if isinstance(exc, RegistryError):
        return exc
    if isinstance(exc, SpoolError):
        return RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, f"the gateway's spool file is unusable: {exc}")
    return write_failure(exc, RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "write failed on the shard"))


def too_many(message: str) -> RegistryError:
    return RegistryError(ErrorCode.TOOMANYREQUESTS, message, headers={"Retry-After": RETRY_AFTER})


@dataclass
class UploadSession:
    """An upload being written: the file, the PATCH in progress and its ordered write queue."""

    uuid: str
    repo: str
    file: UploadFile
    #: Who started it ("" when anonymous): counted against ``storage.maxUploadsPerUser``.
    user: str = ""
    #: Chunks to write in order: their frames, or how many bytes of the spool file they are, and whom to answer.
    queue: asyncio.Queue[tuple[Frames, int | None, Respond[m.OffsetReply]]] = field(default_factory=asyncio.Queue)
    writer: asyncio.Task[None] | None = None
    patch_snapshot: tuple[int, object] | None = None
    patch_start: int = 0
    #: How the PATCH in progress sends its bytes: None (not yet known), "frames" or "spool".
    patch_mode: str | None = None
    queued_offset: int = 0
    failed: BaseException | None = None
    touched: float = field(default_factory=time.monotonic)

    @property
    def busy(self) -> bool:
        return self.patch_snapshot is not None and time.monotonic() - self.touched < STALE_PATCH_SECONDS


class UploadSessions:
    def __init__(self, meta: MetaStore, blobs: BlobStore, io: RunIO, expiry: float, *,
                 max_uploads: int = 0, max_uploads_per_user: int = 0) -> None:
        self.meta = meta
        self.blobs = blobs
        self.io = io
        self.expiry = expiry
        self.max_uploads = max_uploads
        self.max_uploads_per_user = max_uploads_per_user
        self.sessions: dict[str, UploadSession] = {}
        #: Every upload of the shard (recorded, or being started) → who started it.
        self.owners: dict[str, str] = {}
        self.per_user: Counter[str] = Counter()
        #: Uploads with a PATCH in progress: each may hold a file descriptor.
        self.writing: set[str] = set()
        self._remove_orphans()

    def __len__(self) -> int:
        return len(self.sessions)

    def get(self, uuid: str) -> UploadSession | None:
        return self.sessions.get(uuid)

    def add(self, session: UploadSession) -> None:
        self.sessions[session.uuid] = session

    def pop(self, uuid: str) -> UploadSession | None:
        """Forget the upload in memory (its record and file are the caller's): session, cap counts."""
        self.writing.discard(uuid)
        user = self.owners.pop(uuid, None)
        if user:
            self.per_user[user] -= 1
            if self.per_user[user] <= 0:
                del self.per_user[user]
        return self.sessions.pop(uuid, None)

    def repo_busy(self, repo: str) -> bool:
        """Whether a PATCH of ``repo`` is in progress (a move's fence waits for it to end)."""
        return any(s.busy for s in self.sessions.values() if s.repo == repo)

    def close(self) -> None:
        for session in self.sessions.values():
            session.file.close()

    # -- caps --------------------------------------------------------------------------------
    def admit(self, uuid: str, user: str) -> None:
        """Count a new upload against the caps (synchronously: concurrent starts cannot overshoot)."""
        if self.max_uploads and len(self.owners) >= self.max_uploads:
            raise too_many(f"this shard has {len(self.owners)} uploads in progress, the most it takes; "
                           "finish or cancel some, or retry later")
        if user and self.max_uploads_per_user and self.per_user[user] >= self.max_uploads_per_user:
            raise too_many(f"{self.per_user[user]} uploads of this user are in progress, the most allowed; "
                           "finish or cancel some, or retry later")
        self.owners[uuid] = user
        if user:
            self.per_user[user] += 1

    def max_writing(self) -> int:
        """How many PATCHes may write at once: half the descriptor limit (the rest serves the shard)."""
        return max(1, descriptors.limit() // 2)

    async def start_patch(self, session: UploadSession) -> None:
        """Let ``session`` write (it may now hold a descriptor); 429 when too many PATCHes write."""
        if session.uuid not in self.writing and len(self.writing) >= self.max_writing():
            await self._reclaim_stale_patches()
            if len(self.writing) >= self.max_writing():
                raise too_many("too many uploads are being written on this shard at once; retry later")
        self.writing.add(session.uuid)

    def end_patch(self, session: UploadSession) -> None:
        """The PATCH is over (its chunks written): give its descriptor back."""
        session.patch_snapshot = None
        session.patch_mode = None
        self.writing.discard(session.uuid)
        session.file.close()

    async def _reclaim_stale_patches(self) -> None:
        """Undo the PATCHes whose gateway went silent (no longer ``busy``), freeing their descriptors."""
        for uuid in list(self.writing):
            session = self.sessions.get(uuid)
            if session is None:
                self.writing.discard(uuid)
            elif session.patch_snapshot is None:
                self.end_patch(session)
            elif not session.busy:
                await self.rollback(session)

    def record(self, uuid: str, repo: str) -> Record:
        """The upload's metadata record; raises if there is none for ``repo``."""
        record = self.meta.read(lambda txn: self.meta.get_upload(txn, uuid))
        if record is None or record["repo"] != repo:
            raise no_upload(uuid)
        return record

    async def session(self, uuid: str, repo: str) -> UploadSession:
        """The in-memory session, rebuilt from LMDB and the file after a restart."""
        session = self.sessions.get(uuid)
        if session is not None:
            if session.repo != repo:
                raise no_upload(uuid)
            return session
        record = self.record(uuid, repo)
        if not self.blobs.upload_path(uuid).exists():
            raise no_upload(uuid)
        file = await self.io(self.blobs.open_upload, uuid, record["alg"], record["offset"])
        session = self.sessions.get(uuid)  # another request may have rebuilt it meanwhile
        if session is None:
            session = UploadSession(uuid=uuid, repo=repo, file=file, user=record.get("user", ""))
            self.sessions[uuid] = session
        return session

    # -- ordered writes ----------------------------------------------------------------------
    def enqueue_write(self, args: m.UploadWriteRequest, frames: Frames, reply: Respond[m.OffsetReply]) -> None:
        """Called synchronously by the server loop so that chunks keep their arrival order."""
        session = self.sessions.get(args["uuid"])
        if session is None or session.patch_snapshot is None or session.repo != args["repo"]:
            reply(RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, "no write in progress for this upload"))
            return
        offset = int(args["offset"])
        if offset != session.queued_offset:
            reply(RegistryError(ErrorCode.RANGE_INVALID, f"write at {offset}, expected {session.queued_offset}"))
            return
        spooled = args.get("spooled")
        if spooled is not None and (frames or type(spooled) is not int or spooled <= 0):
            reply(RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "a spooled chunk has a positive length and no frames"))
            return
        mode = "frames" if spooled is None else "spool"
        if session.patch_mode not in (None, mode):
            reply(RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "a PATCH sends its bytes one way: frames or spool"))
            return
        session.patch_mode = mode
        session.queued_offset += spooled if spooled is not None else sum(len(f) for f in frames)
        session.touched = time.monotonic()
        session.queue.put_nowait((frames, spooled, reply))
        if session.writer is None or session.writer.done():
            session.writer = asyncio.get_running_loop().create_task(self._write_loop(session))

    async def _write_loop(self, session: UploadSession) -> None:
        """Write queued chunks in order; whatever has queued up meanwhile goes in one thread job."""
        while not session.queue.empty():
            batch: list[tuple[Frames, int | None, Respond[m.OffsetReply]]] = []
            while not session.queue.empty() and len(batch) < WRITE_BATCH:
                batch.append(session.queue.get_nowait())
            outcome: Answer[m.OffsetReply] | RegistryError
            try:
                if session.failed is not None:
                    raise session.failed
                offset = await self.io(self._write_batch, session, batch)
                outcome = ({"offset": offset}, [])
            except Exception as exc:  # disk full, I/O error: fail this PATCH, keep the data safe
                if session.failed is None:
                    log.error("upload %s: write failed: %s", session.uuid, exc)
                    session.failed = exc
                outcome = write_failed(session.failed)
            for _, _, reply in batch:
                reply(outcome)
                session.queue.task_done()

    def _write_batch(self, session: UploadSession, batch: list[tuple[Frames, int | None, Any]]) -> int:
        """Append a batch of chunks, in order (in the I/O pool); returns the upload's new size."""
        file, start = session.file, session.patch_start
        offset = file.offset
        for frames, spooled, _ in batch:
            if spooled is None:
                offset = file.write([f.buffer if hasattr(f, "buffer") else f for f in frames])
            else:  # a PATCH from 0 keeps its spool file whole (adopted at its end), others are copied
                offset = file.take_spooled(self.blobs.spool_path(session.uuid, start), offset - start, spooled,
                                           copy=start > 0)
        return offset

    async def finish_spooled(self, session: UploadSession) -> None:
        """The PATCH's bytes are all hashed: adopt its spool file, or (once copied) remove it."""
        if session.patch_mode != "spool":
            return
        path = self.blobs.spool_path(session.uuid, session.patch_start)
        if session.patch_start == 0:
            await self.io(session.file.adopt, path)
        else:
            await self.io(session.file.check_spooled, path, session.file.offset - session.patch_start)
            await self.io(self.blobs.remove_spool, session.uuid, session.patch_start)

    async def drain(self, session: UploadSession) -> None:
        """Wait until every queued chunk of the session is written."""
        while session.writer is not None and not session.writer.done():
            await asyncio.shield(session.writer)

    async def rollback(self, session: UploadSession) -> None:
        """Undo the bytes of the PATCH in progress (after its queued chunks are written)."""
        assert session.patch_snapshot is not None
        await self.drain(session)
        try:
            if session.patch_mode == "spool":
                await self.io(self.blobs.remove_spool, session.uuid, session.patch_start)
            await self.io(session.file.rollback, session.patch_snapshot)
        finally:
            self.end_patch(session)

    # -- removal -----------------------------------------------------------------------------
    async def forget(self, uuid: str) -> None:
        """Drop the upload: session, record and file."""
        session = self.pop(uuid)
        if session is not None:
            with contextlib.suppress(Exception):
                await self.drain(session)
            session.file.close()
        await self.meta.write_async(lambda txn: self.meta.delete_upload(txn, uuid))
        await self.io(self.blobs.remove_upload, uuid)

    def _remove_orphans(self) -> None:
        """Upload files with no LMDB record (a crash between creating and recording) are garbage.

        Also counts the recorded uploads against the caps."""
        known = self.meta.read(lambda txn: {uuid: record.get("user", "") for uuid, record in self.meta.uploads(txn)})
        for uuid, user in known.items():
            self.owners[uuid] = user
            if user:
                self.per_user[user] += 1
        for name in self.blobs.upload_files():
            if name not in known:
                self.blobs.remove_upload(name)
        self.blobs.sweep_spool()

    async def expire(self, now: float | None = None) -> list[str]:
        """Remove uploads untouched for longer than ``expiry`` seconds (and stale spool pieces)."""
        await self.io(self.blobs.sweep_spool)
        now = now or time.time()
        cutoff = now - self.expiry
        stale = self.meta.read(lambda txn: [uuid for uuid, record in self.meta.uploads(txn)
                                            if record["updated"] < cutoff])
        removed = []
        for uuid in stale:
            session = self.sessions.get(uuid)
            if session is not None and (session.busy or time.monotonic() - session.touched < self.expiry):
                continue
            await self.forget(uuid)
            removed.append(uuid)
        if removed:
            log.info("removed %d abandoned uploads", len(removed))
        return removed
