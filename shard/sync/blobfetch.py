"""The one download of each blob digest a shard pulls through, read by every waiter as it arrives.

A download is written to ``<shard>/sync-tmp/`` and hashed as written. Readers get bytes from
that file up to what has been written, minus the last byte until the blob is committed: nobody
can receive a whole blob before its digest has been checked. At the end the length and digest
are verified; then, as ``upload.commit`` does, the file is fsynced and renamed into ``blobs/``
under the digest's lock, and one LMDB transaction links it into every repository that asked.
A mismatch fails every reader and stores nothing. ``sync-tmp/`` is emptied when the shard
starts, so a kill -9 mid-download leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import ErrorCode, RegistryError
from common.grammar import digest_algorithm
from shard.blobstore import UploadFile
from shard.diskfull import is_storage_full, storage_full
from shard.lmdbstore import Txn
from shard.service import ShardService
from shard.sync.upstream import Upstream

log = logging.getLogger("shardreg.sync")

#: Bytes written (and hashed) per thread hop.
WRITE_CHUNK = 256 * 1024


@dataclass
class BlobFetch:
    digest: str
    path: Path
    repos: set[str]
    upstream: str
    size: int | None = None
    written: int = 0
    committed: bool = False
    error: RegistryError | None = None
    #: Set once the size is known (headers in) or the download failed.
    started: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    waiters: int = 0

    @property
    def visible(self) -> int:
        """How many bytes readers may have: all once committed, else all but the last one."""
        return self.written if self.committed else max(0, self.written - 1)


class BlobFetches:
    def __init__(self, shard: ShardService) -> None:
        self.shard = shard
        self.meta = shard.meta
        self.tmp = shard.root / "sync-tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)  # a download cut by a crash: never committed
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.inflight: dict[str, BlobFetch] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        #: single-flight waiters (requests that joined a download another request started)
        self.joined = 0
        self.hits = 0
        self.misses = 0

    def _linked_size(self, repo: str, digest: str) -> int | None:
        def run(txn: Txn) -> int | None:
            link = self.meta.link_of(txn, repo, digest)
            return None if link is None else int(link["size"])
        return self.meta.read(run)

    async def _link_held(self, repo: str, digest: str) -> int | None:
        """Link a blob this shard already holds (another repository's) into ``repo``; its size."""
        async with self.shard.digest_locks[digest]:
            def run(txn: Txn) -> int | None:
                blob = self.meta.blob(txn, digest)
                if blob is None:
                    return None
                self.meta.link(txn, repo, digest, blob["size"])
                return int(blob["size"])
            return await self.meta.write_async(run)

    async def ensure(self, upstream: Upstream, remote: str, repo: str, digest: str, wait: float, *,
                     whole: bool = False, poll: bool = False, again: bool = False) -> tuple[int, BlobFetch | None]:
        """The blob's size, and its download when it is still arriving; starts the download if none.
        With ``whole``, answers only once the blob is verified and stored. With ``poll``, a wait that
        ran out answers size -1 (ask again) instead of an error."""
        size = self._linked_size(repo, digest)
        if size is None and digest not in self.inflight:
            size = await self._link_held(repo, digest)
        if size is not None:
            self.hits += 1
            return size, None
        fetch = self.inflight.get(digest)
        if fetch is None:
            self.misses += 1
            fetch = BlobFetch(digest, self.tmp / f"{uuid.uuid4().hex}", {repo}, upstream.name)
            self.inflight[digest] = fetch
            task = asyncio.get_running_loop().create_task(self._download(fetch, upstream, remote))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        else:
            if not again:
                self.joined += 1
            fetch.repos.add(repo)
        fetch.waiters += 1
        try:
            await asyncio.wait_for(fetch.started.wait(), wait)
            if whole:
                async with fetch.changed:
                    await asyncio.wait_for(fetch.changed.wait_for(
                        lambda: fetch.error is not None or fetch.committed), wait)
        except TimeoutError:
            if poll:
                return -1, fetch
            why = "is still sending the blob" if fetch.started.is_set() else "has not answered yet"
            raise RegistryError(ErrorCode.UNAVAILABLE, f"the upstream registry {upstream.name} {why}; retry",
                                detail={"upstream": upstream.name, "digest": digest},
                                headers={"Retry-After": "2"}) from None
        finally:
            fetch.waiters -= 1
        if fetch.error is not None:
            raise fetch.error
        if fetch.committed and repo not in fetch.repos:
            return await self.ensure(upstream, remote, repo, digest, wait, whole=whole, poll=poll, again=again)
        assert fetch.size is not None
        return fetch.size, (None if fetch.committed else fetch)

    async def read(self, repo: str, digest: str, offset: int, length: int, wait: float) -> bytes:
        """Bytes at ``offset`` (at least one, unless ``wait`` passed first), from the download or the blob."""
        fetch = self.inflight.get(digest)
        if fetch is not None and not fetch.committed:
            async with fetch.changed:
                try:
                    await asyncio.wait_for(fetch.changed.wait_for(
                        lambda: fetch.error is not None or fetch.committed or fetch.visible > offset), wait)
                except TimeoutError:
                    return b""
            if fetch.error is not None:
                raise fetch.error
            if not fetch.committed:
                try:
                    return await self.shard.io(_pread, fetch.path, offset, min(length, fetch.visible - offset))
                except FileNotFoundError:  # renamed into blobs/ meanwhile (linked a moment later)
                    return await self.shard.io(self.shard.blobs.read, digest, offset, length)
        if self._linked_size(repo, digest) is None:
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})
        return await self.shard.io(self.shard.blobs.read, digest, offset, length)

    async def _download(self, fetch: BlobFetch, upstream: Upstream, remote: str) -> None:
        started = time.monotonic()
        file: UploadFile | None = None
        try:
            async with upstream.stream("GET", f"/v2/{remote}/blobs/{fetch.digest}", "blob") as response:
                if response.status_code == 404:
                    raise RegistryError(ErrorCode.BLOB_UNKNOWN, f"the upstream registry {upstream.name} has no "
                                        "such blob", detail={"digest": fetch.digest, "upstream": upstream.name})
                if response.status_code != 200:
                    raise RegistryError(ErrorCode.UNAVAILABLE, f"the upstream registry {upstream.name} answered "
                                        f"{response.status_code} for the blob",
                                        detail={"digest": fetch.digest, "upstream": upstream.name})
                length = response.headers.get("Content-Length")
                fetch.size = int(length) if length and length.isdigit() else None
                file = await self.shard.io(UploadFile, fetch.path, digest_algorithm(fetch.digest))
                if fetch.size is not None:
                    fetch.started.set()
                async for chunk in response.aiter_bytes(WRITE_CHUNK):
                    await self.shard.io(file.write, [chunk])
                    upstream.bytes += len(chunk)
                    async with fetch.changed:
                        fetch.written = file.offset
                        fetch.changed.notify_all()
                    if fetch.size is not None and fetch.written > fetch.size:
                        break
            await self._commit(fetch, file, upstream)
            log.info("sync: fetched %s (%d bytes) from %s in %.2fs", fetch.digest, fetch.written, upstream.name,
                     time.monotonic() - started)
        except RegistryError as exc:
            fetch.error = exc
        except Exception as exc:  # the stream broke, the disk failed: every reader is told
            if is_storage_full(exc):
                fetch.error = storage_full(exc)
                return
            upstream.failed(f"blob {fetch.digest}: {type(exc).__name__} {exc}")
            fetch.error = RegistryError(ErrorCode.UNAVAILABLE, f"fetching the blob from {upstream.name} failed",
                                        detail={"digest": fetch.digest, "upstream": upstream.name,
                                                "reason": f"{type(exc).__name__} {exc}"[:300]})
        finally:
            if file is not None:
                file.close()
            if not fetch.committed:
                await self.shard.io(_remove, fetch.path)
            self.inflight.pop(fetch.digest, None)
            fetch.started.set()
            async with fetch.changed:
                fetch.changed.notify_all()

    async def _commit(self, fetch: BlobFetch, file: UploadFile | None, upstream: Upstream) -> None:
        if file is None:
            raise RegistryError(ErrorCode.UNAVAILABLE, "no blob body from the upstream")
        if fetch.size is not None and file.offset != fetch.size:
            raise _refused(fetch, upstream, f"{file.offset} bytes for a Content-Length of {fetch.size}")
        actual = await self.shard.io(file.digest, digest_algorithm(fetch.digest))
        if actual != fetch.digest:
            raise _refused(fetch, upstream, f"the content's digest is {actual}")
        fetch.size = file.offset
        async with self.shard.digest_locks[fetch.digest]:
            if self.shard.blob_exists(fetch.digest):
                file.close()
            else:
                await self.shard.io(self.shard.blobs.install, file, fetch.digest)
            size = fetch.size

            def link(txn: Txn) -> None:
                for repo in fetch.repos:
                    if self.shard.lists(repo):  # not a repository a resize switched away meanwhile
                        self.meta.link(txn, repo, fetch.digest, size)

            await self.meta.write_async(link)
        async with fetch.changed:
            fetch.committed = True
            fetch.changed.notify_all()

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()


def _refused(fetch: BlobFetch, upstream: Upstream, why: str) -> RegistryError:
    upstream.failed(f"blob {fetch.digest} refused: {why}")
    return RegistryError(ErrorCode.DIGEST_INVALID, f"the upstream registry {upstream.name} sent a blob that does "
                         "not match its digest; nothing was stored", status=502,
                         detail={"digest": fetch.digest, "upstream": upstream.name, "reason": why})


def _pread(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
