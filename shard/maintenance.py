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

import asyncio
import functools
import hashlib
import logging
import os
import time
from pathlib import Path

from common.grammar import digest_algorithm, digest_of
from shard.blobstore import READ_SIZE
from shard.lmdbstore import Txn
from shard.metastore import MetaStore
from shard.service import ShardService

log = logging.getLogger("shardreg.gc")

#: Repositories swept per group commit by :func:`collect_garbage`.
GC_BATCH = 32


async def collect_garbage(service: ShardService, delay: float, now: float | None = None) -> list[tuple[str, str]]:
    """Unlink unreferenced blobs older than ``delay`` seconds; returns the (repo, digest) pairs removed."""
    cutoff = (now or time.time()) - delay
    meta = service.meta
    repos = meta.read(lambda txn: list(meta.repo_names(txn)))
    removed: list[tuple[str, str]] = []
    # through the writer thread (group commit), GC_BATCH repositories at once: a pass over many
    # repositories never holds the event loop, and their sweeps share a commit (issue 17)
    for i in range(0, len(repos), GC_BATCH):
        chunk = repos[i:i + GC_BATCH]
        swept = await asyncio.gather(*(meta.write_async(functools.partial(_sweep, meta, repo=repo, cutoff=cutoff))
                                       for repo in chunk))
        for repo, (doomed, unused) in zip(chunk, swept, strict=True):
            for digest in unused:
                await service.remove_file_if_unused(digest)
            removed += [(repo, digest) for digest in doomed]
    if removed:
        log.info("gc: unlinked %d unreferenced blobs", len(removed))
    return removed


async def remove_orphan_files(service: ShardService, batch: int = 256) -> int:
    """Delete blob files that no ``blobs`` record names; returns how many went.

    A kill -9 between a file's rename into ``blobs/`` and the commit that records it (an upload, a
    pull-through, a resize's copy) leaves such a file; nothing else ever reads it. Every writer
    holds the digest's lock from before the rename until after its commit, and
    :meth:`ShardService.remove_file_if_unused` takes that lock and checks the record again, so a
    commit in progress is never disturbed. Runs in the background (at start and after each gc) and
    never holds the event loop for more than one fan-out directory (1/256 of the files): each is
    listed in the I/O pool and checked against the records in one read transaction per ``batch``
    names, so a shard's start-up and its requests never wait for the walk (issue 17)."""
    root = service.blobs.root / "blobs"
    removed = 0
    meta = service.meta
    for alg in sorted(await service.io(_entries, root, True)):
        for sub in sorted(await service.io(_entries, root / alg, True)):
            names = await service.io(_entries, root / alg / sub, False)
            for i in range(0, len(names), batch):
                chunk = [f"{alg}:{name}" for name in names[i:i + batch]]
                unknown = meta.read(functools.partial(_unknown, meta, chunk))
                for digest in unknown:
                    if await service.remove_file_if_unused(digest):
                        removed += 1
                await asyncio.sleep(0)
    if removed:
        log.warning("removed %d blob files that no record named (left by a crash before their commit)", removed)
    return removed


def _unknown(meta: MetaStore, digests: list[str], txn: Txn) -> list[str]:
    return [d for d in digests if not meta.blob_exists(txn, d)]


def _entries(path: Path, dirs: bool) -> list[str]:
    """Names of the subdirectories (``dirs``) or regular files in ``path`` (runs in the I/O pool)."""
    try:
        with os.scandir(path) as it:
            return [e.name for e in it if (e.is_dir(follow_symlinks=False) if dirs else e.is_file(follow_symlinks=False))]
    except FileNotFoundError:
        return []


def _sweep(meta: MetaStore, txn: Txn, *, repo: str, cutoff: float) -> tuple[list[str], list[str]]:
    """In one transaction: unlink the repo's unreferenced links older than ``cutoff``.

    Returns (unlinked digests, digests no repository links any more)."""
    if meta.move_of(txn, "repo", repo) is not None:
        return [], []  # being moved (issue 12): an import has links before its manifests; a copy reads them
    referenced: set[str] = set()
    for record in meta.manifests(txn, repo):
        referenced.update(record.get("blobs") or [])
    doomed = [digest for digest, link in meta.links(txn, repo)
              if digest not in referenced and link.get("at", 0) < cutoff]
    unused = [digest for digest in doomed if meta.unlink(txn, repo, digest)]
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
    blobs = meta.read(lambda txn: list(meta.blobs(txn)))
    damaged: list[str] = []
    for digest, size in blobs:
        if await service.io(_blob_is_whole, service.blobs.path(digest), digest, size):
            continue
        if not service.blob_exists(digest):
            continue  # deleted meanwhile
        log.error("scrub: blob %s is missing or does not match its digest", digest)
        damaged.append(digest)
    manifests = meta.read(lambda txn: list(meta.all_manifest_bytes(txn)))
    for repo, digest, body in manifests:
        if digest_of(body, digest_algorithm(digest)) != digest:
            log.error("scrub: manifest %s@%s does not match its digest", repo, digest)
            damaged.append(f"{repo}@{digest}")
    service.damaged = damaged
    log.info("scrub: %d blobs and %d manifests checked, %d damaged", len(blobs), len(manifests), len(damaged))
    return damaged
