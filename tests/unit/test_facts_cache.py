"""The cached facts of stored manifests are bounded by their size (``bench scale``: a cap of 50,000
entries let a shard hold gigabytes for many-layer images): the bytes the cache holds, as measured
by tracemalloc, stay near its budget however many manifests and layers pass through it, and what
it still holds is returned unchanged."""

from __future__ import annotations

import hashlib
import json
import tracemalloc

from shard.facts_cache import FactsCache, approx_size
from shard.imageinfo import manifest_facts

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def facts(n: int, layers: int) -> tuple[str, dict]:
    """The facts of the ``n``-th manifest of ``layers`` distinct layers."""
    blobs = [sha(f"{n}-{i}".encode()) for i in range(layers)]
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(CONFIG),
                                  "size": len(CONFIG)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": 10}
                                  for d in blobs]}).encode()
    record = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(body),
              "blobs": [sha(CONFIG), *blobs]}
    return sha(body), manifest_facts(sha(body), record, body, lambda digest, size=None: CONFIG)


def test_the_cache_holds_about_its_budget_of_bytes_whatever_passes_through() -> None:
    budget = 2 * 1024 * 1024
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        cache = FactsCache(budget)
        for n in range(300):  # 300 manifests of 100 layers: about 17 MB of facts
            digest, info = facts(n, 100)
            cache.put(("repo", digest), info)
            del info
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cache.held <= budget
    assert held <= 1.5 * budget, held  # the estimate does not undercount what is really held
    assert 10 <= len(cache) < 300


def test_what_is_cached_comes_back_and_a_drop_forgets_it() -> None:
    cache = FactsCache(10 * 1024 * 1024)
    kept = {}
    for n in range(20):
        digest, info = facts(n, n % 5)
        kept[digest] = info
        cache.put(("repo", digest), info)
    assert all(cache.lookup(("repo", d)) == (True, info) for d, info in kept.items())
    assert cache.held == sum(approx_size(info) + approx_size(("repo", d)) for d, info in kept.items())
    some = next(iter(kept))
    cache.drop(("repo", some))
    assert cache.lookup(("repo", some)) == (False, None)
    assert cache.held == sum(approx_size(info) + approx_size(("repo", d)) for d, info in kept.items() if d != some)


def test_the_oldest_go_first_and_one_larger_than_the_budget_is_not_kept() -> None:
    _, small = facts(0, 0)
    cache = FactsCache((approx_size(small) + approx_size("a")) * 3)
    cache.put("a", small)
    cache.put("b", small)
    cache.put("c", small)
    cache.put("d", small)
    assert [cache.lookup(k)[0] for k in "abcd"] == [False, True, True, True]
    _, big = facts(1, 100)
    cache.put("big", big)
    assert cache.lookup("big") == (False, None) and len(cache) == 3
