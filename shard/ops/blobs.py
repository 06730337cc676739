"""Blob ops: stat, read, mount (link) and delete.

A blob exists in a repository only while it is linked there; the file goes when its last
link does. Deleting updates the metadata first, so a crash leaves an orphan file, never a
record naming a missing file.
"""

from __future__ import annotations

from common import messages as m
from common.errors import ErrorCode, RegistryError
from common.protocol import Answer, Frames
from shard.lmdbstore import Txn
from shard.ops.registry import handles
from shard.service import ShardService


def _blob_unknown(digest: str) -> RegistryError:
    return RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})


class BlobOps:
    def __init__(self, shard: ShardService) -> None:
        self.shard = shard
        self.meta = shard.meta

    @handles(m.BLOB_STAT)
    async def stat(self, args: m.BlobRequest, frames: Frames) -> Answer[m.BlobStatReply]:
        repo, digest = args["repo"], args["digest"]

        def run(txn: Txn) -> Answer[m.BlobStatReply]:
            link = self.meta.link_of(txn, repo, digest)
            if link is None:
                raise _blob_unknown(digest)
            return {"size": link["size"], "path": self.shard.blobs.relative_path(digest)}, []

        return self.meta.read(run)

    @handles(m.BLOB_READ)
    async def read(self, args: m.BlobReadRequest, frames: Frames) -> Answer[m.BlobReadReply]:
        digest, offset, length = args["digest"], int(args["offset"]), int(args["length"])
        if not self.shard.blob_exists(digest):
            raise _blob_unknown(digest)
        data = await self.shard.io(self.shard.blobs.read, digest, offset, length)
        return {"length": len(data)}, [data]

    @handles(m.BLOB_LINK)
    async def link(self, args: m.BlobRequest, frames: Frames) -> Answer[m.BlobLinkReply]:
        """Mount: link a blob this shard already holds into ``repo``."""
        repo, digest = args["repo"], args["digest"]
        async with self.shard.digest_locks[digest]:
            def run(txn: Txn) -> Answer[m.BlobLinkReply]:
                blob = self.meta.blob(txn, digest)
                if blob is None:
                    raise _blob_unknown(digest)
                self.meta.link(txn, repo, digest, blob["size"])
                return {"size": blob["size"]}, []

            return await self.meta.write_async(run)

    @handles(m.BLOB_DELETE)
    async def delete(self, args: m.BlobRequest, frames: Frames) -> Answer[m.BlobDeleteReply]:
        repo, digest = args["repo"], args["digest"]
        # metadata first: a crash leaves an orphan file, never a record naming a missing file
        if await self.meta.write_async(lambda txn: self.meta.unlink(txn, repo, digest)):
            await self.shard.remove_file_if_unused(digest)
        return {"deleted": digest}, []
