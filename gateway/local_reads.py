"""Blob lookups (GET and HEAD) and manifest GETs and HEADs answered from the owning shard's
metadata, read in place: no ZeroMQ round trip.

With ``cluster.sharedStorage`` (the embedded cluster) a gateway worker already opens the shards'
blob files; here it also opens each shard's LMDB environment **read-only** (LMDB is built for
readers in other processes: they take a slot in the lock file's reader table and never block the
writer). A HEAD is then an auth check and one read transaction in the worker, where it used to be
two process hops (docs/performance.md: the round trip was most of a HEAD's latency at c=1).

Only a *found* record that the shard itself would serve is answered here: the shard's committed
cluster view must have the epoch the worker routes with, the name must not be moving (its source
and target shard are the same, this one), and the worker holds no redirect hint for it. Anything
else — a miss (its exact error, a pull-through fetch), a resize, a shard whose directory cannot be
opened, any LMDB error — goes to the shard as before. Records are committed state, so an answer
here is never older than what the shard would have said at the same moment.

A manifest GET is a pull the shard records (download counts): the caller tells it afterwards,
in a batch (gateway.pull_notices, not waited for). A GET the shard must see before the client does (a
repository under a retention policy, a pull-through repository) is not read here: see
:func:`gateway.distribution.manifests.read_in_place`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb
from prometheus_client import Counter

from common.clustermap import ClusterMap
from common.errors import RegistryError
from common.messages import BlobStatReply, ManifestGetReply
from gateway.shard_client import ShardClient
from shard.blobstore import relative_path
from shard.lmdbstore import Txn
from shard.metastore import MetaStore

log = logging.getLogger("shardreg.gateway")
#: Seconds before a shard whose metadata could not be opened is tried again.
RETRY = 10.0
#: In multiprocess mode (a gateway with metrics on) this reaches /metrics like the gateway's own series.
ANSWERED = Counter("shardreg_gateway_local_reads", "Blob lookups and manifest GETs/HEADs answered from the "
                   "owning shard's metadata read in place (no shard round trip)", ["kind"], registry=None)


class LocalReads:
    """The shards' metadata of one gateway worker, each opened read-only on first use."""

    def __init__(self, shard_dir: Callable[[int], Path]) -> None:
        self.shard_dir = shard_dir
        self._stores: dict[int, MetaStore] = {}
        #: When a shard's environment last failed to open (tried again RETRY seconds later).
        self._failed: dict[int, float] = {}
        #: Answers given here (the rest went to the shards), for tests and /metrics.
        self.answered = 0

    def _store(self, shard: int) -> MetaStore | None:
        meta = self._stores.get(shard)
        if meta is not None:
            return meta
        failed = self._failed.get(shard)
        if failed is not None and time.monotonic() - failed < RETRY:
            return None  # e.g. a shard a resize is adding: looked at again later
        path = self.shard_dir(shard) / "meta"
        held = MetaStore.open_here(path)
        if isinstance(held, MetaStore):  # the shard runs in this process (tests/inprocess.py): borrowed
            meta = held
        else:
            try:
                meta = MetaStore(path, readonly=True)
            except (lmdb.Error, OSError) as exc:  # not created yet, another version, no access
                log.info("shard %d's metadata cannot be read in place (%s): its reads go over ZeroMQ", shard, exc)
                self._failed[shard] = time.monotonic()
                return None
        self._stores[shard] = meta
        return meta

    def _owner(self, client: ShardClient, repo: str) -> tuple[int, MetaStore] | None:
        cmap: ClusterMap = client.map
        if cmap.epoch <= 0 or repo in client.hints or cmap.is_moving(repo):
            return None
        shard = cmap.owner(repo)
        meta = self._store(shard)
        return None if meta is None else (shard, meta)

    def _read(self, meta: MetaStore, epoch: int, fn: Any) -> Any:
        def run(txn: Txn) -> Any:
            view = meta.view(txn)
            if view is None or int(view.get("epoch", 1)) != epoch:
                return None
            return fn(txn)

        try:
            return meta.read(run)
        except (lmdb.Error, RegistryError, ValueError):  # e.g. a name too long for a key: the shard says why
            return None

    def blob(self, client: ShardClient, repo: str, digest: str) -> tuple[int, BlobStatReply] | None:
        """(shard, ``blob.stat``'s answer) when ``repo`` links ``digest`` and its shard would say so."""
        owner = self._owner(client, repo)
        if owner is None:
            return None
        shard, meta = owner

        def run(txn: Txn) -> BlobStatReply | None:
            link = meta.link_of(txn, repo, digest)
            return None if link is None else {"size": link["size"], "path": relative_path(digest)}

        found: BlobStatReply | None = self._read(meta, client.map.epoch, run)
        if found is None:
            return None
        self._count("blob")
        return shard, found

    def manifest(self, client: ShardClient, repo: str, reference: str, head: bool
                 ) -> tuple[int, ManifestGetReply, bytes] | None:
        """(shard, ``manifest.get``'s answer, the manifest's bytes or b"" for a HEAD) when it is there."""
        owner = self._owner(client, repo)
        if owner is None:
            return None
        shard, meta = owner

        def run(txn: Txn) -> tuple[ManifestGetReply, bytes] | None:
            digest = reference if ":" in reference else meta.tag_digest(txn, repo, reference)
            record = None if digest is None else meta.get_manifest(txn, repo, digest)
            if digest is None or record is None:
                return None
            body = b"" if head else meta.manifest_bytes(txn, repo, digest)
            if body is None:
                return None
            return {"digest": digest, "media_type": record["mediaType"], "size": record["size"]}, bytes(body)

        found: tuple[ManifestGetReply, bytes] | None = self._read(meta, client.map.epoch, run)
        if found is None:
            return None
        self._count("manifest")
        return shard, found[0], found[1]

    def _count(self, kind: str) -> None:
        self.answered += 1
        ANSWERED.labels(kind).inc()

    def close(self) -> None:
        for meta in self._stores.values():
            if meta.readonly:  # not a borrowed one: the shard in this process closes that
                meta.close()
        self._stores.clear()
