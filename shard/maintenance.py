"""Periodic upkeep of a shard: garbage collection of blobs no manifest uses, and scrubbing
(re-hashing what is stored to find damage).

A blob linked into a repository but referenced by none of its manifests (its image was
deleted, or a push was abandoned before the manifest) is unlinked once it is older than
``storage.gcDelay``; the delay protects pushes in progress, which upload blobs before their
manifest. The check and the unlink happen in one LMDB transaction per repository, so a
manifest arriving at the same moment either sees the link or is refused cleanly; files are
deleted only after that commit, under the digest's lock.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from common.rules import digest_algorithm, digest_of
from shard.blobstore import READ_SIZE
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


def _blob_is_whole(path: Path, digest: str, size: int) -> bool:
    """Re-hash one blob file (runs in a worker thread)."""
    algorithm, expected = digest.split(":", 1)
    hasher, seen = hashlib.new(algorithm), 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(READ_SIZE):
                hasher.update(chunk)
                seen += len(chunk)
    except FileNotFoundError:
        return False
    return seen == size and hasher.hexdigest() == expected


async def scrub(service: ShardService) -> list[str]:
    """Check every blob file and stored manifest of the shard against its digest (zot's scrub).

    Returns what is damaged (blob digests, and ``repo@digest`` for manifests) and logs each at
    ERROR; ``service.damaged`` keeps the last report for ``status`` and the shard's metrics.
    Blobs deleted while the pass runs are not reported.
    """
    meta = service.meta
    blobs = meta.read(lambda txn: [(k.decode(), unpack(v)["size"]) for k, v in meta.scan(txn, "blobs", b"")])
    damaged: list[str] = []
    for digest, size in blobs:
        if await service._io(_blob_is_whole, service.blobs.path(digest), digest, size):
            continue
        if meta.read(lambda txn, d=digest: txn.get(d.encode(), db=meta.db["blobs"])) is None:
            continue  # deleted meanwhile
        log.error("scrub: blob %s is missing or does not match its digest", digest)
        damaged.append(digest)
    manifests = meta.read(lambda txn: [(k.decode(), bytes(v)) for k, v in meta.scan(txn, "manifest_bytes", b"")])
    for name, body in manifests:
        repo, digest = name.split("\0", 1)
        if digest_of(body, digest_algorithm(digest)) != digest:
            log.error("scrub: manifest %s@%s does not match its digest", repo, digest)
            damaged.append(f"{repo}@{digest}")
    service.damaged = damaged
    log.info("scrub: %d blobs and %d manifests checked, %d damaged", len(blobs), len(manifests), len(damaged))
    return damaged
