"""Ops about the shard and its repositories: ping, status, repository count, catalog, tag list."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import TypeVar

from common import messages as m
from common.errors import ErrorCode, RegistryError
from common.protocol import Answer, Frames
from shard.health import disk_free, readiness
from shard.lmdbstore import Txn
from shard.ops.registry import handles
from shard.service import ShardService

T = TypeVar("T")


def page(items: Iterator[T], n: int | None) -> tuple[list[T], bool]:
    """The first ``n`` items (all if ``n`` is None), and whether more follow."""
    out: list[T] = []
    for item in items:
        if n is not None and len(out) >= n:
            return out, True
        out.append(item)
    return out, False


class RepositoryOps:
    def __init__(self, shard: ShardService) -> None:
        self.shard = shard
        self.meta = shard.meta

    @handles(m.PING)
    async def ping(self, args: m.Empty, frames: Frames) -> Answer[m.PingReply]:
        ready, why = readiness(self.shard)
        return {"shard": self.shard.index, "time": time.time(), "ready": ready, "why": why}, []

    @handles(m.STATUS)
    async def status(self, args: m.Empty, frames: Frames) -> Answer[m.StatusReply]:
        count, size = self.shard.blob_usage()
        ready, why = readiness(self.shard)
        reply: m.StatusReply = {
            "shard": self.shard.index, "lmdb_bytes": self.meta.size_bytes(), "blob_count": count,
            "blob_bytes": size, "uploads": len(self.shard.uploads), "damaged": self.shard.damaged,
            "disk_free": disk_free(self.shard), "ready": ready, "why": why, "pid": os.getpid()}
        if self.shard.lifecycle_status is not None:
            reply["lifecycle"] = self.shard.lifecycle_status()
        reshard = self.shard.reshard_status()
        if reshard:
            reply["reshard"] = reshard
        return reply, []

    @handles(m.REPO_COUNT)
    async def repo_count(self, args: m.RepoCountRequest, frames: Frames) -> Answer[m.RepoCountReply]:
        """How many repositories this shard holds, and whether ``repo`` (if given) is one of them."""
        repo = args.get("repo")

        def run(txn: Txn) -> Answer[m.RepoCountReply]:
            return {"count": self.meta.repo_count(txn),
                    "exists": bool(repo) and self.meta.repo_exists(txn, repo)}, []

        return self.meta.read(run)

    @handles(m.CATALOG)
    async def catalog(self, args: m.CatalogRequest, frames: Frames) -> Answer[m.CatalogReply]:
        n, last = int(args.get("n") or 0), args.get("last")

        def run(txn: Txn) -> Answer[m.CatalogReply]:
            names, more = page((r for r in self.meta.repo_names(txn, last) if self.shard.lists(r)), n)
            return {"repos": names, "more": more}, []

        return self.meta.read(run)

    @handles(m.TAGS_LIST)
    async def tags_list(self, args: m.TagsListRequest, frames: Frames) -> Answer[m.TagsListReply]:
        repo, n, last = args["repo"], args.get("n"), args.get("last")

        def run(txn: Txn) -> Answer[m.TagsListReply]:
            if not self.meta.repo_exists(txn, repo):
                raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": repo})
            tags, more = page((tag for tag, _ in self.meta.tags(txn, repo, last)), n)
            return {"tags": tags, "more": more}, []

        return self.meta.read(run)
