"""The state a shard's ops share: metadata, blob files, the I/O pool, uploads, digest locks.

The ops themselves live in :mod:`shard.ops` (one module per resource). Metadata writes go
through the one LMDB writer (group commit); file writes, hashing and fsync run in a thread
pool. Errors are raised as :class:`RegistryError` and travel back to the gateway unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from common.errors import ErrorCode, RegistryError
from shard.blobstore import BlobStore
from shard.descriptors import Descriptors, exhausted
from shard.diskfull import DiskState
from shard.keyed_locks import KeyedLocks
from shard.metastore import MetaStore
from shard.uploads import UploadSessions

T = TypeVar("T")


class ShardService:
    def __init__(self, root: Path, index: int, shard_count: int, *, durable: bool = True,
                 upload_expiry: float = 86400.0, max_uploads: int = 0, max_uploads_per_user: int = 0) -> None:
        self.index = index
        self.root = root
        self.meta = MetaStore(root / "meta", sync=durable)
        self.meta.check_cluster(index, shard_count)
        self.blobs = BlobStore(root, durable=durable)
        self.pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"shard{index}-io")
        #: Held while a blob file may be created or removed, so that the two never race.
        self.digest_locks = KeyedLocks()
        #: File descriptor headroom (readiness) and failed opens.
        self.descriptors = Descriptors()
        self.uploads = UploadSessions(self.meta, self.blobs, self.io, upload_expiry, max_uploads=max_uploads,
                                      max_uploads_per_user=max_uploads_per_user)
        #: What the last scrub found damaged (shard.maintenance.scrub).
        self.damaged: list[str] = []
        #: The last write refused for lack of space (readiness).
        self.disk = DiskState()
        #: Retention and event figures for ``status`` (set by the server: shard/lifecycle.py).
        self.lifecycle_status: Callable[[], dict[str, Any]] | None = None
        #: Whether a listing (catalog, search) shows a name: during and after a resize a shard
        #: holds names it does not own (shard.routing.Routing.lists).
        self.lists: Callable[[str], bool] = lambda name: True
        #: The shard's map and moves for ``status`` (and the gateway's /metrics).
        self.reshard_status: Callable[[], dict[str, Any]] = dict

    def close(self) -> None:
        self.uploads.close()
        self.pool.shutdown(wait=False)
        self.meta.close()

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking ``fn(*args)`` in the shard's I/O pool.

        Running out of file descriptors is the shard's condition, not the request's fault:
        it is remembered (readiness) and answered 429, retry later."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        except OSError as exc:
            if not exhausted(exc):
                raise
            self.descriptors.failed()
            raise RegistryError(ErrorCode.TOOMANYREQUESTS, "the shard is out of file descriptors; retry later",
                                headers={"Retry-After": "5"}) from None

    def blob_usage(self) -> tuple[int, int]:
        """(count, bytes) of the shard's blobs, from the metadata (no walk over the files)."""
        return self.meta.read(self.meta.blob_usage)

    def blob_exists(self, digest: str) -> bool:
        return self.meta.read(lambda txn: self.meta.blob_exists(txn, digest))

    async def remove_file_if_unused(self, digest: str) -> bool:
        """Delete a blob file whose last link is gone, unless a commit has brought it back meanwhile;
        whether it was deleted."""
        async with self.digest_locks[digest]:
            if self.blob_exists(digest):
                return False
            await self.io(self.blobs.remove, digest)
            return True
