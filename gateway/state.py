"""What one gateway worker holds: its config, its shard client and its access control."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.config import Config
from gateway.auth.access import AccessControl
from gateway.local_reads import LocalReads
from gateway.shard_client import ShardCallObserver, ShardClient

#: Where the Quart app keeps the worker's :class:`GatewayState` (``app.config``).
STATE_KEY = "SHARDREG_STATE"


@dataclass
class GatewayState:
    config: Config
    access: AccessControl
    #: Told of every shard round trip (the metrics series, when metrics are on).
    shard_observer: ShardCallObserver | None = None
    _client: ShardClient | None = field(default=None, repr=False)
    _local_reads: LocalReads | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)
    #: The resize driver and its watcher task (gateway.cluster.driver), once serving.
    driver: Any = field(default=None, repr=False)
    watcher: Any = field(default=None, repr=False)

    @property
    def client(self) -> ShardClient:
        """The worker's shard client, created on first use inside the running event loop (not
        again once closed: nothing would close it)."""
        if self._client is None:
            if self._closed:
                raise RuntimeError("this gateway worker's shard client is closed")
            self._client = ShardClient(self.config, self.shard_observer)
        return self._client

    @property
    def local_reads(self) -> LocalReads | None:
        """The shards' metadata read in place, when this gateway shares their filesystem."""
        if self._local_reads is None and self.config.cluster.shared_storage and not self._closed:
            self._local_reads = LocalReads(self.config.shard_dir)
        return self._local_reads

    def blob_file(self, shard: int, relative_path: str) -> Path | None:
        """The blob file itself when this gateway shares the shards' filesystem."""
        if not self.config.cluster.shared_storage:
            return None
        return self.config.shard_dir(shard) / relative_path

    def spool_dir(self, shard: int) -> Path | None:
        """Where this gateway may hand a shard upload bytes as files (same filesystem only)."""
        if not self.config.cluster.shared_storage:
            return None
        return self.config.shard_dir(shard) / "spool"

    async def drain(self) -> None:
        """Before ``close``: what this worker still owes the shards (pull notices) reaches them."""
        if self._client is not None:
            await self._client.drain()

    def close(self) -> None:
        self._closed = True
        try:
            if self._local_reads is not None:
                self._local_reads.close()
                self._local_reads = None
        finally:  # the sockets close whatever happened above (an unclosed context can block at exit)
            if self._client is not None:
                self._client.close()
                self._client = None
