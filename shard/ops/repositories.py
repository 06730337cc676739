"""Ops about the shard and its repositories: ping, status, repository count, catalog, tag list."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, TypeVar

from common.errors import ErrorCode, RegistryError
from common.protocol import Op
from shard.lmdbstore import Txn
from shard.ops.registry import Result, handles
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

    @handles(Op.PING)
    async def ping(self, args: dict[str, Any], frames: list[Any]) -> Result:
        return {"shard": self.shard.index, "time": time.time()}, []

    @handles(Op.STATUS)
    async def status(self, args: dict[str, Any], frames: list[Any]) -> Result:
        count, size = self.shard.blob_usage()
        return {"shard": self.shard.index, "lmdb_bytes": self.meta.size_bytes(), "blob_count": count,
                "blob_bytes": size, "uploads": len(self.shard.uploads), "damaged": self.shard.damaged}, []

    @handles(Op.REPO_COUNT)
    async def repo_count(self, args: dict[str, Any], frames: list[Any]) -> Result:
        """How many repositories this shard holds, and whether ``repo`` (if given) is one of them."""
        repo = args.get("repo")

        def run(txn: Txn) -> Result:
            return {"count": self.meta.repo_count(txn),
                    "exists": bool(repo) and self.meta.repo_exists(txn, str(repo))}, []

        return self.meta.read(run)

    @handles(Op.CATALOG)
    async def catalog(self, args: dict[str, Any], frames: list[Any]) -> Result:
        n, last = int(args.get("n") or 0), args.get("last")

        def run(txn: Txn) -> Result:
            names, more = page(self.meta.repo_names(txn, last), n)
            return {"repos": names, "more": more}, []

        return self.meta.read(run)

    @handles(Op.TAGS_LIST)
    async def tags_list(self, args: dict[str, Any], frames: list[Any]) -> Result:
        repo, n, last = args["repo"], args.get("n"), args.get("last")

        def run(txn: Txn) -> Result:
            if not self.meta.repo_exists(txn, repo):
                raise RegistryError(ErrorCode.NAME_UNKNOWN, detail={"name": repo})
            tags, more = page((tag for tag, _ in self.meta.tags(txn, repo, last)), n)
            return {"tags": tags, "more": more}, []

        return self.meta.read(run)
