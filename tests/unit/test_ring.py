from collections import Counter

import pytest

from common.ring import jump_hash, shard_for


def test_jump_hash_golden_vectors():
    # published vectors of the reference jump consistent hash
    assert jump_hash(42, 57) == 43
    assert jump_hash(0xDEAD10CC, 666) == 361
    assert jump_hash(256, 1024) == 520
    assert jump_hash(0xDEAD10CC, 1) == 0
    assert [jump_hash(k, 10) for k in (0, 1, 2, 0xDEADBEEF, 2**64 - 1)] == [0, 6, 6, 5, 9]


def test_shard_for_golden_vectors():
    # xxh3_64(name, seed 0) then jump hash: changing either breaks every deployed cluster
    assert [shard_for(n, 4) for n in ("library/alpine", "a", "org/team/app", "x" * 255)] == [1, 1, 2, 2]


def test_growth_moves_only_to_the_new_shard():
    names = [f"org/repo{i}" for i in range(5000)]
    before = {n: shard_for(n, 4) for n in names}
    after = {n: shard_for(n, 5) for n in names}
    moved = [n for n in names if before[n] != after[n]]
    assert all(after[n] == 4 for n in moved)
    assert 0.12 < len(moved) / len(names) < 0.28  # about 1/5


def test_balance():
    counts = Counter(shard_for(f"team{i}/app", 8) for i in range(8000))
    assert set(counts) == set(range(8))
    assert max(counts.values()) < 1.15 * 1000


def test_invalid_bucket_count():
    with pytest.raises(ValueError):
        jump_hash(1, 0)
