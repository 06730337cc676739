"""Caches keyed by what clients ask for stay bounded (common.recent.Recent): the shard's signature
verdicts and the pull-through cache's tag checks kept one entry per key ever seen before."""

from __future__ import annotations

from common.recent import Recent
from shard import trust
from shard.hooks import Hooks
from shard.searchstore import SearchStore
from shard.service import ShardService
from shard.sync import manifests
from shard.sync.manifests import ManifestPuller
from shard.trust import Trust


def test_the_oldest_entries_go_beyond_the_cap() -> None:
    seen: Recent[str, int] = Recent(3)
    for i in range(10):
        seen[f"k{i}"] = i
    assert list(seen.items()) == [("k7", 7), ("k8", 8), ("k9", 9)]
    seen["k8"] = 80  # replacing a key drops nothing
    assert len(seen) == 3 and seen["k8"] == 80 and "k7" in seen
    seen["new"] = 1
    assert "k7" not in seen and len(seen) == 3


def test_the_shards_caches_are_bounded(tmp_path) -> None:
    service = ShardService(tmp_path / "shard-0", 0, 1, durable=False)
    store = SearchStore(service.root / "search")
    verdicts = Trust(store)._verdicts
    checked = ManifestPuller(service, Hooks()).checked
    for cache, cap in ((verdicts, trust.VERDICTS), (checked, manifests.CHECKED)):
        assert isinstance(cache, Recent) and cache.cap == cap <= 1_000_000
    service.close()
