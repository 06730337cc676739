"""Which shard owns a repository: ``jump_hash(xxh3_64(name, seed), shard_count)``.

Jump consistent hash (Lamping & Veach, 2014) maps keys onto buckets 0..N-1 so that growing
N to N+1 moves only ~1/(N+1) of the keys, all of them to the new bucket. This matches
StatefulSet ordinals, where shard ``i`` is pod ``shard-i``.
"""

from __future__ import annotations

import xxhash

_MASK64 = (1 << 64) - 1


def jump_hash(key: int, buckets: int) -> int:
    """Return the bucket in ``range(buckets)`` for a 64-bit ``key``."""
    if buckets <= 0:
        raise ValueError("buckets must be positive")
    b, j = -1, 0
    key &= _MASK64
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & _MASK64
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def shard_for(name: str, shard_count: int, seed: int = 0) -> int:
    """The shard index that owns repository (or user) ``name``."""
    return jump_hash(xxhash.xxh3_64_intdigest(name.encode(), seed), shard_count)
