"""What a shard does for each wire op: repositories, manifests, tags, referrers, blobs, uploads.

Every public ``op_*`` coroutine takes the request's args (a dict) and raw frames and returns
``(result, frames)``; errors are raised as :class:`RegistryError` and travel back unchanged.
Metadata writes happen on the event loop (one LMDB writer); file writes, hashing and fsync
run in a thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid as uuidlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import ErrorCode, RegistryError
from common.rules import digest_algorithm
from shard import search_meta
from shard.blobstore import BlobStore, UploadFile
from shard.metastore import MetaStore, key, unpack

log = logging.getLogger("shardreg.shard")

Result = tuple[Any, list[Any]]
#: A PATCH whose gateway went silent this long no longer blocks its upload.
STALE_PATCH_SECONDS = 120.0
#: At most this many queued chunk messages (about 1 MiB each) are written in one thread job.
WRITE_BATCH = 8
#: How long a new PATCH waits for the upload's previous one to end before it is refused.
BUSY_WAIT = 3.0


def _no_upload(uuid: str) -> RegistryError:
    return RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": uuid})


@dataclass
class UploadSession:
    """An upload being written: the file, the PATCH in progress and its ordered write queue."""

    uuid: str
    repo: str
    file: UploadFile
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    writer: asyncio.Task | None = None
    patch_snapshot: tuple[int, object] | None = None
    patch_start: int = 0
    queued_offset: int = 0
    failed: BaseException | None = None
    touched: float = field(default_factory=time.monotonic)

    @property
    def busy(self) -> bool:
        return self.patch_snapshot is not None and time.monotonic() - self.touched < STALE_PATCH_SECONDS


class ShardService:
    def __init__(self, root: Path, index: int, shard_count: int, *, durable: bool = True,
                 upload_expiry: float = 86400.0) -> None:
        self.index = index
        self.root = root
        self.meta = MetaStore(root / "meta", sync=durable)
        self.meta.check_cluster(index, shard_count)
        self.blobs = BlobStore(root, durable=durable)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"shard{index}-io")
        self.sessions: dict[str, UploadSession] = {}
        self.digest_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.upload_expiry = upload_expiry
        #: What the last scrub found damaged (shard.maintenance.scrub).
        self.damaged: list[str] = []
        self._remove_orphan_uploads()

    def close(self) -> None:
        for session in self.sessions.values():
            session.file.close()
        self.pool.shutdown(wait=False)
        search_meta.close(self)
        self.meta.close()

    async def _io(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    # -- repositories ---------------------------------------------------------------------
    def _ensure_repo(self, txn: Any, repo: str) -> None:
        k = repo.encode()
        if txn.get(k, db=self.meta.db["repos"]) is None:
            self.meta.put(txn, "repos", k, {"created": time.time()})

    def _repo_exists(self, txn: Any, repo: str) -> bool:
        return txn.get(repo.encode(), db=self.meta.db["repos"]) is not None

    async def op_ping(self, args: dict, frames: list) -> Result:
        return {"shard": self.index, "time": time.time()}, []

    def blob_usage(self) -> tuple[int, int]:
        """(count, bytes) of the shard's blobs, from the metadata (no walk over the files)."""

        def run(txn: Any) -> tuple[int, int]:
            count = txn.stat(self.meta.db["blobs"])["entries"]
            return count, sum(unpack(v)["size"] for _, v in self.meta.scan(txn, "blobs", b""))

        return self.meta.read(run)

    async def op_status(self, args: dict, frames: list) -> Result:
        count, size = self.blob_usage()
        return {"shard": self.index, "lmdb_bytes": self.meta.size_bytes(), "blob_count": count,
                "blob_bytes": size, "uploads": len(self.sessions), "damaged": self.damaged}, []

    async def op_repo_count(self, args: dict, frames: list) -> Result:
        """How many repositories this shard holds, and whether ``repo`` (if given) is one of them."""
        repo = args.get("repo")

        def run(txn: Any) -> Result:
            return {"count": txn.stat(self.meta.db["repos"])["entries"],
                    "exists": bool(repo) and self._repo_exists(txn, repo)}, []

        return self.meta.read(run)

    async def op_catalog(self, args: dict, frames: list) -> Result:
        n, last = int(args.get("n") or 0), args.get("last")

        def run(txn: Any) -> Result:
            names: list[str] = []
            after = last.encode() if last else None
            for k, _ in self.meta.scan(txn, "repos", b"", after):
                if len(names) >= n:
                    return {"repos": names, "more": True}, []
                names.append(k.decode())
            return {"repos": names, "more": False}, []

        return self.meta.read(run)

    async def op_tags_list(self, args: dict, frames: list) -> Result:
        repo, n, last = args["repo"], args.get("n"), args.get("last")
        prefix = key(repo, "")

        def run(txn: Any) -> Result:
            if not self._repo_exists(txn, repo):
                raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": repo})
            tags: list[str] = []
            after = prefix + last.encode() if last else None
            for k, _ in self.meta.scan(txn, "tags", prefix, after):
                if n is not None and len(tags) >= n:
                    return {"tags": tags, "more": True}, []
                tags.append(k[len(prefix):].decode())
            return {"tags": tags, "more": False}, []

        return self.meta.read(run)

    # -- manifests --------------------------------------------------------------------------
    def _resolve(self, txn: Any, repo: str, reference: str) -> str:
        if ":" in reference:
            return reference
        digest = txn.get(key(repo, reference), db=self.meta.db["tags"])
        if digest is None:
            code = ErrorCode.MANIFEST_UNKNOWN if self._repo_exists(txn, repo) else ErrorCode.NAME_UNKNOWN
            raise RegistryError(code, detail={"name": repo, "reference": reference})
        return digest.decode()

    async def op_manifest_get(self, args: dict, frames: list) -> Result:
        repo, reference, head = args["repo"], args["reference"], args.get("head", False)

        def run(txn: Any) -> Result:
            digest = self._resolve(txn, repo, reference)
            record = self.meta.get(txn, "manifests", key(repo, digest))
            if record is None:
                code = ErrorCode.MANIFEST_UNKNOWN if self._repo_exists(txn, repo) else ErrorCode.NAME_UNKNOWN
                raise RegistryError(code, detail={"name": repo, "reference": reference})
            result = {"digest": digest, "media_type": record["mediaType"], "size": record["size"]}
            if head:
                return result, []
            search_meta.record_pull(self, repo, digest)
            return result, [txn.get(key(repo, digest), db=self.meta.db["manifest_bytes"])]

        return self.meta.read(run)

    async def op_manifest_put(self, args: dict, frames: list) -> Result:
        """Store a manifest the gateway has parsed; check the blobs and children it names."""
        repo, digest = args["repo"], args["digest"]
        body = bytes(frames[0]) if frames else b""

        def run(txn: Any) -> Result:
            links, manifests = self.meta.db["links"], self.meta.db["manifests"]
            for blob in args.get("blobs", []):
                if txn.get(key(repo, blob), db=links) is None:
                    raise RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN, detail={"digest": blob})
            for child in args.get("children", []):
                if txn.get(key(repo, child), db=manifests) is None:
                    raise RegistryError(ErrorCode.MANIFEST_BLOB_UNKNOWN, detail={"digest": child})
            self._ensure_repo(txn, repo)
            mkey = key(repo, digest)
            existing = self.meta.get(txn, "manifests", mkey)
            record = {
                "mediaType": args["media_type"], "size": len(body), "subject": args.get("subject"),
                "artifactType": args.get("artifact_type"), "annotations": args.get("annotations"),
                "blobs": args.get("blobs", []), "children": args.get("children", []),
                "config": args.get("config"),
                "created": existing["created"] if existing else time.time(),
            }
            self.meta.put(txn, "manifests", mkey, record)
            txn.put(mkey, body, db=self.meta.db["manifest_bytes"])
            for tag in args.get("tags", []):
                txn.put(key(repo, tag), digest.encode(), db=self.meta.db["tags"])
            subject = args.get("subject")
            if subject:
                descriptor = {"mediaType": args["media_type"], "digest": digest, "size": len(body)}
                if args.get("artifact_type"):
                    descriptor["artifactType"] = args["artifact_type"]
                if args.get("annotations"):
                    descriptor["annotations"] = args["annotations"]
                self.meta.put(txn, "referrers", key(repo, subject, digest), descriptor)
            return {"digest": digest, "created": existing is None}, []

        result = await self.meta.write_async(run)
        await search_meta.record_push(self, args)
        return result

    async def op_manifest_delete(self, args: dict, frames: list) -> Result:
        repo, reference = args["repo"], args["reference"]

        def run(txn: Any) -> Result:
            tags = self.meta.db["tags"]
            if ":" not in reference:
                if not txn.delete(key(repo, reference), db=tags):
                    code = ErrorCode.MANIFEST_UNKNOWN if self._repo_exists(txn, repo) else ErrorCode.NAME_UNKNOWN
                    raise RegistryError(code, detail={"name": repo, "reference": reference})
                return {"deleted": reference}, []
            mkey = key(repo, reference)
            record = self.meta.get(txn, "manifests", mkey)
            if record is None:
                code = ErrorCode.MANIFEST_UNKNOWN if self._repo_exists(txn, repo) else ErrorCode.NAME_UNKNOWN
                raise RegistryError(code, detail={"name": repo, "reference": reference})
            self.meta.delete(txn, "manifests", mkey)
            self.meta.delete(txn, "manifest_bytes", mkey)
            prefix = key(repo, "")
            doomed = [k for k, v in self.meta.scan(txn, "tags", prefix) if v == reference.encode()]
            for k in doomed:
                txn.delete(k, db=tags)
            if record.get("subject"):
                self.meta.delete(txn, "referrers", key(repo, record["subject"], reference))
            return {"deleted": reference, "tags": [k[len(prefix):].decode() for k in doomed]}, []

        return await self.meta.write_async(run)

    async def op_referrers(self, args: dict, frames: list) -> Result:
        repo, subject = args["repo"], args["subject"]
        wanted = set(args.get("artifact_types") or [])
        prefix = key(repo, subject, "")

        def run(txn: Any) -> Result:
            found = []
            for _, v in self.meta.scan(txn, "referrers", prefix):
                descriptor = unpack(v)
                if not wanted or descriptor.get("artifactType") in wanted:
                    found.append(descriptor)
            return {"manifests": found}, []

        return self.meta.read(run)

    # -- blobs ------------------------------------------------------------------------------
    def _link(self, txn: Any, repo: str, digest: str, size: int) -> None:
        lkey = key(repo, digest)
        if txn.get(lkey, db=self.meta.db["links"]) is not None:
            return
        self.meta.put(txn, "links", lkey, {"size": size, "at": time.time()})
        bkey = digest.encode()
        blob = self.meta.get(txn, "blobs", bkey) or {"size": size, "links": 0}
        blob["links"] += 1
        self.meta.put(txn, "blobs", bkey, blob)
        self._ensure_repo(txn, repo)

    async def op_blob_stat(self, args: dict, frames: list) -> Result:
        repo, digest = args["repo"], args["digest"]

        def run(txn: Any) -> Result:
            link = self.meta.get(txn, "links", key(repo, digest))
            if link is None:
                raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})
            return {"size": link["size"], "path": self.blobs.relative_path(digest)}, []

        return self.meta.read(run)

    async def op_blob_read(self, args: dict, frames: list) -> Result:
        digest, offset, length = args["digest"], int(args["offset"]), int(args["length"])
        if self.meta.read(lambda txn: txn.get(digest.encode(), db=self.meta.db["blobs"])) is None:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})
        data = await self._io(self.blobs.read, digest, offset, length)
        return {"length": len(data)}, [data]

    async def op_blob_link(self, args: dict, frames: list) -> Result:
        """Mount: link a blob this shard already holds into ``repo``."""
        repo, digest = args["repo"], args["digest"]
        async with self.digest_locks[digest]:
            def run(txn: Any) -> Result:
                blob = self.meta.get(txn, "blobs", digest.encode())
                if blob is None:
                    raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})
                self._link(txn, repo, digest, blob["size"])
                return {"size": blob["size"]}, []

            return await self.meta.write_async(run)

    def unlink(self, txn: Any, repo: str, digest: str) -> bool:
        """Remove ``digest`` from ``repo``; True when no repository links it any more (its file may go)."""
        if not self.meta.delete(txn, "links", key(repo, digest)):
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})
        bkey = digest.encode()
        blob = self.meta.get(txn, "blobs", bkey)
        if blob is None:
            return False
        blob["links"] -= 1
        if blob["links"] > 0:
            self.meta.put(txn, "blobs", bkey, blob)
            return False
        self.meta.delete(txn, "blobs", bkey)
        return True

    async def remove_file_if_unused(self, digest: str) -> None:
        """Delete a blob file whose last link is gone, unless a commit has brought it back meanwhile."""
        async with self.digest_locks[digest]:
            if self.meta.read(lambda txn: txn.get(digest.encode(), db=self.meta.db["blobs"])) is None:
                await self._io(self.blobs.remove, digest)

    async def op_blob_delete(self, args: dict, frames: list) -> Result:
        repo, digest = args["repo"], args["digest"]
        # metadata first: a crash leaves an orphan file, never a record naming a missing file
        if await self.meta.write_async(lambda txn: self.unlink(txn, repo, digest)):
            await self.remove_file_if_unused(digest)
        return {"deleted": digest}, []

    # -- uploads ----------------------------------------------------------------------------
    async def op_upload_start(self, args: dict, frames: list) -> Result:
        repo, alg = args["repo"], args.get("algorithm", "sha256")
        uuid = str(uuidlib.uuid4())
        file = await self._io(self.blobs.open_upload, uuid, alg, 0)
        now = time.time()
        await self.meta.write_async(lambda txn: self.meta.put(txn, "uploads", uuid.encode(), {
            "repo": repo, "offset": 0, "alg": alg, "started": now, "updated": now}))
        self.sessions[uuid] = UploadSession(uuid=uuid, repo=repo, file=file)
        return {"uuid": uuid}, []

    def _upload_record(self, uuid: str, repo: str) -> dict:
        record = self.meta.read(lambda txn: self.meta.get(txn, "uploads", uuid.encode()))
        if record is None or record["repo"] != repo:
            raise _no_upload(uuid)
        return record

    async def _session(self, uuid: str, repo: str) -> UploadSession:
        """The in-memory session, rebuilt from LMDB and the file after a restart."""
        session = self.sessions.get(uuid)
        if session is not None:
            if session.repo != repo:
                raise _no_upload(uuid)
            return session
        record = self._upload_record(uuid, repo)
        if not self.blobs.upload_path(uuid).exists():
            raise _no_upload(uuid)
        file = await self._io(self.blobs.open_upload, uuid, record["alg"], record["offset"])
        session = self.sessions.get(uuid)  # another request may have rebuilt it meanwhile
        if session is None:
            session = UploadSession(uuid=uuid, repo=repo, file=file)
            self.sessions[uuid] = session
        else:
            file.close()
        return session

    async def op_upload_status(self, args: dict, frames: list) -> Result:
        uuid, repo = args["uuid"], args["repo"]
        session = self.sessions.get(uuid)
        if session is not None and session.repo == repo:
            return {"offset": session.file.offset if not session.busy else session.patch_start}, []
        record = self._upload_record(uuid, repo)
        return {"offset": record["offset"]}, []

    async def op_upload_begin(self, args: dict, frames: list) -> Result:
        """Open a PATCH (or the body of a PUT/POST): check ``start`` and remember where to roll back."""
        uuid, repo, start = args["uuid"], args["repo"], args.get("start")
        session = await self._session(uuid, repo)
        # A client retrying right after its connection dropped races the gateway's abort of the
        # dead PATCH: give that a moment before calling the upload busy.
        deadline = time.monotonic() + BUSY_WAIT
        while session.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if session.busy:
            raise RegistryError(ErrorCode.RANGE_INVALID, "another request is writing this upload",
                                headers=_range_headers(session.patch_start))
        if session.patch_snapshot is not None:  # a stale PATCH whose gateway vanished
            await self._drain(session)
            await self._io(session.file.rollback, session.patch_snapshot)
            session.patch_snapshot = None
        offset = session.file.offset
        if start is not None and start != offset:
            raise RegistryError(ErrorCode.RANGE_INVALID, f"chunk starts at {start}, upload is at {offset}",
                                detail={"offset": offset}, headers=_range_headers(offset))
        session.patch_snapshot = session.file.snapshot()
        session.patch_start = offset
        session.queued_offset = offset
        session.failed = None
        session.touched = time.monotonic()
        return {"offset": offset}, []

    def enqueue_write(self, args: dict, frames: list, reply: Any) -> None:
        """Called synchronously by the server loop so that chunks keep their arrival order."""
        session = self.sessions.get(args["uuid"])
        if session is None or session.patch_snapshot is None or session.repo != args["repo"]:
            reply(RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, "no write in progress for this upload"))
            return
        offset = int(args["offset"])
        if offset != session.queued_offset:
            reply(RegistryError(ErrorCode.RANGE_INVALID, f"write at {offset}, expected {session.queued_offset}"))
            return
        session.queued_offset += sum(len(f) for f in frames)
        session.touched = time.monotonic()
        session.queue.put_nowait((frames, reply))
        if session.writer is None or session.writer.done():
            session.writer = asyncio.get_running_loop().create_task(self._write_loop(session))

    async def _write_loop(self, session: UploadSession) -> None:
        """Write queued chunks in order; whatever has queued up meanwhile goes in one thread job."""
        while not session.queue.empty():
            batch = []
            while not session.queue.empty() and len(batch) < WRITE_BATCH:
                batch.append(session.queue.get_nowait())
            try:
                if session.failed is not None:
                    raise session.failed
                buffers = [f.buffer if hasattr(f, "buffer") else f for frames, _ in batch for f in frames]
                offset = await self._io(session.file.write, buffers)
                outcome: Any = ({"offset": offset}, [])
            except Exception as exc:  # disk full, I/O error: fail this PATCH, keep the data safe
                if session.failed is None:
                    log.error("upload %s: write failed: %s", session.uuid, exc)
                    session.failed = exc
                outcome = RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "write failed on the shard")
            for _, reply in batch:
                reply(outcome)
                session.queue.task_done()

    async def _drain(self, session: UploadSession) -> None:
        while session.writer is not None and not session.writer.done():
            await asyncio.shield(session.writer)

    async def op_upload_end(self, args: dict, frames: list) -> Result:
        """Close a PATCH: all its bytes are written; record the new offset."""
        uuid, repo, length = args["uuid"], args["repo"], args.get("length")
        session = await self._session(uuid, repo)
        if session.patch_snapshot is None:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "no write in progress")
        await self._drain(session)
        written = session.file.offset - session.patch_start
        if session.failed is not None or (length is not None and written != length):
            await self._io(session.file.rollback, session.patch_snapshot)
            session.patch_snapshot = None
            if session.failed is not None:
                raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "write failed on the shard")
            raise RegistryError(ErrorCode.SIZE_INVALID, f"received {written} bytes, expected {length}",
                                status=400)
        session.patch_snapshot = None
        offset = session.file.offset

        def record(txn: Any) -> None:
            rec = self.meta.get(txn, "uploads", uuid.encode())
            if rec is None:
                raise _no_upload(uuid)
            rec["offset"], rec["updated"] = offset, time.time()
            self.meta.put(txn, "uploads", uuid.encode(), rec)

        await self.meta.write_async(record)
        return {"offset": offset}, []

    async def op_upload_abort(self, args: dict, frames: list) -> Result:
        """The client went away mid-PATCH: undo that PATCH's bytes."""
        session = self.sessions.get(args["uuid"])
        if session is None or session.patch_snapshot is None:
            return {}, []
        await self._drain(session)
        await self._io(session.file.rollback, session.patch_snapshot)
        session.patch_snapshot = None
        return {"offset": session.file.offset}, []

    async def op_upload_commit(self, args: dict, frames: list) -> Result:
        """Verify the digest, move the file into place, link it: the blob now exists."""
        uuid, repo, digest = args["uuid"], args["repo"], args["digest"]
        session = await self._session(uuid, repo)
        if session.busy:
            raise RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "upload has a write in progress")
        await self._drain(session)
        actual = await self._io(session.file.digest, digest_algorithm(digest))
        if actual != digest:
            raise RegistryError(ErrorCode.DIGEST_INVALID, detail={"digest": digest, "actual": actual})
        size = session.file.offset
        async with self.digest_locks[digest]:
            exists = self.meta.read(lambda txn: txn.get(digest.encode(), db=self.meta.db["blobs"])) is not None
            if exists:
                session.file.close()
                await self._io(self.blobs.remove_upload, uuid)
            else:
                await self._io(self.blobs.install, session.file, digest)

            def record(txn: Any) -> None:
                self.meta.delete(txn, "uploads", uuid.encode())
                self._link(txn, repo, digest, size)

            await self.meta.write_async(record)
        self.sessions.pop(uuid, None)
        return {"digest": digest, "size": size}, []

    async def op_upload_cancel(self, args: dict, frames: list) -> Result:
        uuid, repo = args["uuid"], args["repo"]
        session = self.sessions.get(uuid)
        if session is None:
            self._upload_record(uuid, repo)
        elif session.repo != repo:
            raise _no_upload(uuid)
        await self._forget_upload(uuid)
        return {}, []

    async def _forget_upload(self, uuid: str) -> None:
        session = self.sessions.pop(uuid, None)
        if session is not None:
            with contextlib.suppress(Exception):
                await self._drain(session)
            session.file.close()
        await self.meta.write_async(lambda txn: self.meta.delete(txn, "uploads", uuid.encode()))
        await self._io(self.blobs.remove_upload, uuid)

    # -- maintenance ------------------------------------------------------------------------
    def _remove_orphan_uploads(self) -> None:
        """Upload files with no LMDB record (a crash between creating and recording) are garbage."""
        known = self.meta.read(lambda txn: {k.decode() for k, _ in self.meta.scan(txn, "uploads", b"")})
        for name in self.blobs.upload_files():
            if name not in known:
                self.blobs.remove_upload(name)

    async def expire_uploads(self, now: float | None = None) -> list[str]:
        """Remove uploads untouched for longer than ``upload_expiry``."""
        now = now or time.time()
        cutoff = now - self.upload_expiry
        stale = self.meta.read(lambda txn: [
            k.decode() for k, v in self.meta.scan(txn, "uploads", b"") if unpack(v)["updated"] < cutoff])
        removed = []
        for uuid in stale:
            session = self.sessions.get(uuid)
            if session is not None and (session.busy or time.monotonic() - session.touched < self.upload_expiry):
                continue
            await self._forget_upload(uuid)
            removed.append(uuid)
        if removed:
            log.info("removed %d abandoned uploads", len(removed))
        return removed


def _range_headers(offset: int) -> dict[str, str]:
    return {"Range": f"0-{offset - 1}" if offset > 0 else "0-0"}

