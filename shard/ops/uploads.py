"""Upload ops: start, status, a PATCH (begin, ordered writes, end or abort), commit and cancel.

Committing verifies the digest, then (under the digest's lock) fsyncs and renames the file
into ``blobs/`` before the metadata commit that links it: metadata never names a file that
is not whole on disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuidlib
from typing import Any

from common import messages as m
from common.errors import ErrorCode, RegistryError
from common.grammar import digest_algorithm
from common.protocol import Answer, Frames
from shard.lmdbstore import Txn
from shard.ops.registry import Respond, handles, handles_in_order
from shard.routing import check_upload_start
from shard.service import ShardService
from shard.uploads import UploadSession, no_upload, write_failed

log = logging.getLogger("shardreg.shard")

#: How long a new PATCH waits for the upload's previous one to end before it is refused.
BUSY_WAIT = 3.0


def _range_headers(offset: int) -> dict[str, str]:
    return {"Range": f"0-{offset - 1}" if offset > 0 else "0-0"}


class UploadOps:
    def __init__(self, shard: ShardService) -> None:
        self.shard = shard
        self.meta = shard.meta
        self.uploads = shard.uploads

    @handles(m.UPLOAD_START)
    async def start(self, args: m.UploadStartRequest, frames: Frames) -> Answer[m.UploadStartReply]:
        repo, alg, user = args["repo"], args.get("algorithm", "sha256"), args.get("user") or ""
        uuid = str(uuidlib.uuid4())
        self.uploads.admit(uuid, user)  # 429 beyond the shard's or the user's cap
        try:
            file = await self.shard.io(self.shard.blobs.open_upload, uuid, alg, 0)
            now = time.time()

            def record(txn: Txn) -> None:
                check_upload_start(self.meta, txn, repo, self.shard.index)
                self.meta.put_upload(txn, uuid, {
                    "repo": repo, "offset": 0, "alg": alg, "started": now, "updated": now, "user": user})

            await self.meta.write_async(record)
        except BaseException:
            self.uploads.pop(uuid)
            await self.shard.io(self.shard.blobs.remove_upload, uuid)
            raise
        self.uploads.add(UploadSession(uuid=uuid, repo=repo, file=file, user=user))
        return {"uuid": uuid}, []

    @handles(m.UPLOAD_STATUS)
    async def status(self, args: m.UploadRequest, frames: Frames) -> Answer[m.OffsetReply]:
        uuid, repo = args["uuid"], args["repo"]
        session = self.uploads.get(uuid)
        if session is not None and session.repo == repo:
            return {"offset": session.file.offset if not session.busy else session.patch_start}, []
        return {"offset": self.uploads.record(uuid, repo)["offset"]}, []

    @handles(m.UPLOAD_BEGIN)
    async def begin(self, args: m.UploadBeginRequest, frames: Frames) -> Answer[m.OffsetReply]:
        """Open a PATCH (or the body of a PUT/POST): check ``start`` and remember where to roll back."""
        return await self._begin(args, spool=True)

    async def _begin(self, args: m.UploadBeginRequest, *, spool: bool) -> Answer[m.OffsetReply]:
        """``spool``: the PATCH may send its bytes through the spool (not an ``upload.chunk``)."""
        uuid, repo, start = args["uuid"], args["repo"], args.get("start")
        session = await self.uploads.session(uuid, repo)
        # A client retrying right after its connection dropped races the gateway's abort of the
        # dead PATCH: give that a moment before calling the upload busy.
        deadline = time.monotonic() + BUSY_WAIT
        while True:
            while session.busy and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if session.busy:
                raise RegistryError(ErrorCode.RANGE_INVALID, "another request is writing this upload",
                                    headers=_range_headers(session.patch_start))
            if session.patch_snapshot is None:
                break
            await self.uploads.rollback(session)  # a stale PATCH whose gateway vanished; then look again
        offset = session.file.offset
        if start is not None and start != offset:
            raise RegistryError(ErrorCode.RANGE_INVALID, f"chunk starts at {start}, upload is at {offset}",
                                detail={"offset": offset}, headers=_range_headers(offset))
        # Claimed before the next await: two PATCHes (a client's retry and its dead request, say)
        # that both passed the checks above would otherwise both begin, and one's abort undo the other.
        session.patch_snapshot = session.file.snapshot()
        session.patch_start = offset
        session.queued_offset = offset
        session.failed = None
        session.touched = time.monotonic()
        try:
            await self.uploads.start_patch(session)  # 429 when too many PATCHes write at once
            if spool:  # a spool file at this start is a dead PATCH's (its gateway died before announcing it): this PATCH's now
                await self.shard.io(self.shard.blobs.remove_spool, uuid, offset)
        except BaseException:
            self.uploads.end_patch(session)
            raise
        return {"offset": offset}, []

    @handles_in_order(m.UPLOAD_WRITE)
    def write(self, args: m.UploadWriteRequest, frames: Frames, respond: Respond[m.OffsetReply]) -> None:
        """One chunk of the PATCH in progress, queued in arrival order; answered once written."""
        self.uploads.enqueue_write(args, frames, respond)

    @handles(m.UPLOAD_END)
    async def end(self, args: m.UploadEndRequest, frames: Frames) -> Answer[m.OffsetReply]:
        """Close a PATCH: all its bytes are written; record the new offset."""
        ended = await self._end(args)
        await self._record_offset(args["uuid"])
        return ended

    async def _end(self, args: m.UploadEndRequest) -> Answer[m.OffsetReply]:
        """Close a PATCH, not yet recording its offset."""
        uuid, repo, length = args["uuid"], args["repo"], args.get("length")
        session = await self.uploads.session(uuid, repo)
        if session.patch_snapshot is None:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "no write in progress")
        await self.uploads.drain(session)
        written = session.file.offset - session.patch_start
        if session.failed is None and (length is None or written == length):
            try:
                await self.uploads.finish_spooled(session)
            except Exception as exc:  # noqa: BLE001 - the spool file is not what was announced
                session.failed = exc
        if session.failed is not None or (length is not None and written != length):
            await self.uploads.rollback(session)
            if session.failed is not None:
                raise write_failed(session.failed)
            raise RegistryError(ErrorCode.SIZE_INVALID, f"received {written} bytes, expected {length}",
                                status=400)
        self.uploads.end_patch(session)  # the descriptor goes back: an idle upload holds none
        return {"offset": session.file.offset}, []

    async def _record_offset(self, uuid: str) -> None:
        session = self.uploads.get(uuid)
        if session is None:
            raise no_upload(uuid)
        offset = session.file.offset

        def record(txn: Txn) -> None:
            rec = self.meta.get_upload(txn, uuid)
            if rec is None:
                raise no_upload(uuid)
            rec["offset"], rec["updated"] = offset, time.time()
            self.meta.put_upload(txn, uuid, rec)

        await self.meta.write_async(record)

    @handles(m.UPLOAD_CHUNK)
    async def chunk(self, args: m.UploadChunkRequest, frames: Frames) -> Answer[m.OffsetReply]:
        """A small body sent whole with its PATCH or PUT: begin, write, end and (given a digest)
        commit in one round trip instead of four, each step as its own op would do it, with fewer
        hand-offs to other threads: no spool file to look for (the bytes come in the message), and a
        commit that follows the end at once records the upload's end only if the commit fails."""
        repo, uuid = args["repo"], args["uuid"]
        offset = (await self._begin({"repo": repo, "uuid": uuid, "start": args.get("start")}, spool=False))[0]["offset"]
        if frames:
            written: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self.uploads.enqueue_write({"repo": repo, "uuid": uuid, "offset": offset}, frames, written.set_result)
            if isinstance(outcome := await written, RegistryError):
                await self.abort({"repo": repo, "uuid": uuid}, [])  # the write failed: undo the begin
                raise outcome
        ended = await self._end({"repo": repo, "uuid": uuid, "length": sum(len(f) for f in frames)})
        if "digest" not in args:
            await self._record_offset(uuid)
            return ended
        try:
            await self.commit({"repo": repo, "uuid": uuid, "digest": args["digest"]}, [])
        except BaseException:
            if self.uploads.get(uuid) is not None:  # refused (a wrong digest): the upload keeps the bytes
                await self._record_offset(uuid)
            raise
        return ended

    @handles(m.UPLOAD_ABORT)
    async def abort(self, args: m.UploadAbortRequest, frames: Frames) -> Answer[m.UploadAbortReply]:
        """The client went away mid-PATCH (or the disk refused the gateway's spool file): undo that PATCH's bytes."""
        if args.get("full"):
            log.error("upload %s: write failed: %s (the gateway's spool file, on this shard's disk)",
                      args["uuid"], args["full"])
            self.shard.disk.note_full(str(args["full"]))
        session = self.uploads.get(args["uuid"])
        if session is None or session.patch_snapshot is None:
            return {}, []
        await self.uploads.rollback(session)
        return {"offset": session.file.offset}, []

    @handles(m.UPLOAD_COMMIT)
    async def commit(self, args: m.UploadCommitRequest, frames: Frames) -> Answer[m.UploadCommitReply]:
        """Verify the digest, move the file into place, link it: the blob now exists."""
        uuid, repo, digest = args["uuid"], args["repo"], args["digest"]
        session = await self.uploads.session(uuid, repo)
        if session.busy:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "upload has a write in progress")
        await self.uploads.drain(session)
        algorithm = digest_algorithm(digest)
        try:  # the running hash is at hand; another algorithm reads the file
            actual = (session.file.digest(algorithm) if algorithm == session.file.algorithm
                      else await self.shard.io(session.file.digest, algorithm))
        finally:
            session.file.close()  # hashing with another algorithm reads the file
        if actual != digest:
            raise RegistryError(ErrorCode.DIGEST_INVALID, detail={"digest": digest, "actual": actual})
        size = session.file.offset
        async with self.shard.digest_locks[digest]:
            if self.shard.blob_exists(digest):
                session.file.close()
                await self.shard.io(self.shard.blobs.remove_upload, uuid)
            else:  # the file is whole and renamed into place before the metadata names it
                await self.shard.io(self.shard.blobs.install, session.file, digest)

            def record(txn: Txn) -> None:
                self.meta.delete_upload(txn, uuid)
                self.meta.link(txn, repo, digest, size)

            await self.meta.write_async(record)
        self.uploads.pop(uuid)
        return {"digest": digest, "size": size}, []

    @handles(m.UPLOAD_CANCEL)
    async def cancel(self, args: m.UploadRequest, frames: Frames) -> Answer[m.Empty]:
        uuid, repo = args["uuid"], args["repo"]
        session = self.uploads.get(uuid)
        if session is None:
            self.uploads.record(uuid, repo)
        elif session.repo != repo:
            raise no_upload(uuid)
        await self.uploads.forget(uuid)
        return {}, []
