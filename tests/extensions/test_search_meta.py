"""shard.search_meta: download counts stay in memory on the pull path and are flushed in batches."""

from __future__ import annotations

import asyncio

from shard import search_meta
from shard.metastore import key
from shard.search_meta import SearchMeta
from shard.searchstore import SearchStore
from shard.service import ShardService
from shard.trust import Trust


def test_pulls_are_batched(tmp_path):
    async def main() -> None:
        service = ShardService(tmp_path / "shard-0", 0, 1, durable=False)
        store = SearchStore(service.root / "search")
        meta = SearchMeta(service.meta, service.blobs, store, Trust(store))
        writes = []
        original = meta.store.write
        meta.store.write = lambda fn: writes.append(1) or original(fn)  # type: ignore[method-assign]
        for _ in range(100):
            meta.record_pull("repo", "sha256:" + "a" * 64)
        assert writes == []  # nothing written on the pull path
        stored = meta.store.read(lambda txn: meta.store.get(txn, "stats", key("repo", "sha256:" + "a" * 64)))
        assert stored is None
        assert meta.read_stats("repo", "sha256:" + "a" * 64)[0] == 100  # but visible at once
        await asyncio.sleep(search_meta.FLUSH_INTERVAL + 0.3)
        assert writes == [1]  # one transaction for all of them
        stored = meta.store.read(lambda txn: meta.store.get(txn, "stats", key("repo", "sha256:" + "a" * 64)))
        assert stored["downloads"] == 100
        meta.close()
        service.close()

    asyncio.run(main())
