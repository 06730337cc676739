"""The sync ops of a shard: pull-through of manifests and blobs, and the registries' state.

Gateways send ``sync.*`` only for repositories an ``onDemand`` rule matches (they read the same
config); a shard without a matching rule answers as ``manifest.get``/``blob.stat`` would.
"""

from __future__ import annotations

import asyncio
import logging

from common import messages as m
from common.config import Config, ConfigError
from common.errors import ErrorCode, RegistryError
from common.protocol import Answer, Frames
from common.sync_messages import SyncBlobReadRequest, SyncBlobReply, SyncBlobRequest, SyncStatusReply
from common.syncrules import on_demand
from shard.hooks import Hooks
from shard.lmdbstore import Txn
from shard.ops.registry import handles
from shard.service import ShardService
from shard.sync.auth import load_credentials
from shard.sync.blobfetch import BlobFetches
from shard.sync.manifests import ManifestPuller
from shard.sync.mirror import Mirror
from shard.sync.upstream import Upstream

log = logging.getLogger("shardreg.sync")


class SyncService:
    def __init__(self, config: Config, shard: ShardService, hooks: Hooks) -> None:
        self.config = config
        self.sync = config.extensions.sync
        self.shard = shard
        timeout = config.cluster.request_timeout
        #: How long a request waits for the upstream's first answer, and a read for more bytes:
        #: below the gateway's request timeout, so that a slow upstream is an answer, not a timeout.
        self.start_wait = max(1.0, timeout * 0.8)
        self.read_wait = max(0.5, min(5.0, timeout / 3))
        try:
            credentials = load_credentials(self.sync.credentials_file) if self.sync.active else {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"extensions.sync.credentialsFile: {exc}") from None
        self.upstreams = [Upstream(r, credentials, timeout=max(5.0, timeout * 0.8)) for r in self.sync.registries] \
            if self.sync.active else []
        names = [u.name for u in self.upstreams]
        for i, upstream in enumerate(self.upstreams):
            if names.count(upstream.name) > 1:  # one host configured twice: tell them apart in status and metrics
                upstream.name = f"{upstream.name}#{i}"
        self.manifests = ManifestPuller(shard, hooks)
        self.blobs = BlobFetches(shard)
        self.mirror = Mirror(self.manifests, self.blobs, shard.index, config.cluster.shards, config.cluster.hash_seed)
        self.mirror_tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start periodic mirroring of the registries with ``pollInterval`` and content rules."""
        loop = asyncio.get_running_loop()
        self.mirror_tasks = [loop.create_task(self.mirror.run(u)) for u in self.upstreams if u.registry.periodic]

    def _route(self, repo: str) -> tuple[Upstream, str] | None:
        found = on_demand(self.sync, repo)
        if found is None:
            return None
        return self.upstreams[found[0]], found[1]

    @handles(m.SYNC_MANIFEST)
    async def manifest(self, args: m.ManifestGetRequest, frames: Frames) -> Answer[m.ManifestGetReply]:
        repo, reference, head = args["repo"], args["reference"], bool(args.get("head", False))
        route = self._route(repo)
        if route is None:
            held = self.manifests.local(repo, reference)
            if held is None:
                raise self.shard.meta.read(lambda txn: self.shard.meta.manifest_unknown(txn, repo, reference))
            return self.manifests.answer(repo, held, head)
        return await self.manifests.get(route[0], route[1], repo, reference, head)

    @handles(m.SYNC_BLOB)
    async def blob(self, args: SyncBlobRequest, frames: Frames) -> Answer[SyncBlobReply]:
        repo, digest = args["repo"], args["digest"]
        route = self._route(repo)
        if route is None:
            def stat(txn: Txn) -> int:
                link = self.shard.meta.link_of(txn, repo, digest)
                if link is None:
                    raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})
                return int(link["size"])
            size, fetch = self.shard.meta.read(stat), None
        else:
            size, fetch = await self.blobs.ensure(route[0], route[1], repo, digest, self.start_wait,
                                                 whole=bool(args.get("whole")), poll=bool(args.get("poll")),
                                                 again=bool(args.get("again")))
        return {"size": size, "path": self.shard.blobs.relative_path(digest), "fetching": fetch is not None}, []

    @handles(m.SYNC_BLOB_READ)
    async def blob_read(self, args: SyncBlobReadRequest, frames: Frames) -> Answer[m.BlobReadReply]:
        data = await self.blobs.read(args["repo"], args["digest"], int(args["offset"]), int(args["length"]),
                                     self.read_wait)
        return {"length": len(data)}, [data]

    @handles(m.SYNC_STATUS)
    async def status(self, args: m.Empty, frames: Frames) -> Answer[SyncStatusReply]:
        counters = {"manifest_hits": self.manifests.hits, "manifest_misses": self.manifests.misses,
                    "manifest_waiters": self.manifests.joined, "blob_hits": self.blobs.hits,
                    "blob_misses": self.blobs.misses, "blob_waiters": self.blobs.joined,
                    "downloading": len(self.blobs.inflight)}
        return {"shard": self.shard.index, "registries": [u.status() for u in self.upstreams],
                "counters": counters}, []

    async def close(self) -> None:
        for task in self.mirror_tasks:
            task.cancel()
        await self.blobs.close()
        for upstream in self.upstreams:
            await upstream.close()
