"""Periodic upkeep of a shard: garbage collection of blobs no manifest uses.

A blob linked into a repository but referenced by none of its manifests (its image was
deleted, or a push was abandoned before the manifest) is unlinked once it is older than
``storage.gcDelay``; the delay protects pushes in progress, which upload blobs before their
manifest. The check and the unlink happen in one LMDB transaction per repository, so a
manifest arriving at the same moment either sees the link or is refused cleanly; files are
deleted only after that commit, under the digest's lock.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from shard.metastore import key, unpack
from shard.service import ShardService

log = logging.getLogger("shardreg.gc")


async def collect_garbage(service: ShardService, delay: float, now: float | None = None) -> list[tuple[str, str]]:
    """Unlink unreferenced blobs older than ``delay`` seconds; returns the (repo, digest) pairs removed."""
    cutoff = (now or time.time()) - delay
    meta = service.meta
    repos = meta.read(lambda txn: [k.decode() for k, _ in meta.scan(txn, "repos", b"")])
    removed: list[tuple[str, str]] = []
    for repo in repos:
        doomed, unused = meta.write(lambda txn, repo=repo: _sweep(service, txn, repo, cutoff))
        for digest in unused:
            await service.remove_file_if_unused(digest)
        removed += [(repo, digest) for digest in doomed]
    if removed:
        log.info("gc: unlinked %d unreferenced blobs", len(removed))
    return removed


def _sweep(service: ShardService, txn: Any, repo: str, cutoff: float) -> tuple[list[str], list[str]]:
    """In one transaction: unlink the repo's unreferenced links older than ``cutoff``.

    Returns (unlinked digests, digests no repository links any more)."""
    meta, prefix = service.meta, key(repo, "")
    referenced: set[str] = set()
    for _, value in meta.scan(txn, "manifests", prefix):
        referenced.update(unpack(value).get("blobs") or [])
    doomed = [k[len(prefix):].decode() for k, v in meta.scan(txn, "links", prefix)
              if k[len(prefix):].decode() not in referenced and unpack(v).get("at", 0) < cutoff]
    unused = [digest for digest in doomed if service.unlink(txn, repo, digest)]
    return doomed, unused
