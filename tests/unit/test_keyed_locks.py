"""Per-digest locks keep no memory for idle digests (a shard's memory must not grow with every
blob it has seen: the dictionary of locks held one per digest ever committed)."""

from __future__ import annotations

import asyncio

import pytest

from shard.keyed_locks import KeyedLocks


def test_idle_keys_keep_nothing_and_one_key_excludes() -> None:
    async def scenario() -> None:
        locks = KeyedLocks()
        for i in range(1000):
            async with locks[f"sha256:{i:064x}"]:
                assert len(locks) == 1
        assert len(locks) == 0
        order: list[str] = []

        async def holder(name: str, key: str, pause: float) -> None:
            async with locks[key]:
                order.append(f"{name} in")
                await asyncio.sleep(pause)
                order.append(f"{name} out")

        await asyncio.gather(holder("a", "k", 0.05), holder("b", "k", 0), holder("c", "other", 0))
        assert order.index("a out") < order.index("b in")  # same key: one at a time
        assert order.index("c in") < order.index("a out")  # another key: not held up
        assert len(locks) == 0

    asyncio.run(scenario())


def test_a_waiter_cancelled_or_a_holder_failing_leaves_nothing() -> None:
    async def scenario() -> None:
        locks = KeyedLocks()
        entered = asyncio.Event()

        async def hold() -> None:
            async with locks["k"]:
                entered.set()
                await asyncio.sleep(10)

        holder = asyncio.create_task(hold())
        await entered.wait()
        waiter = asyncio.create_task(locks["k"].__aenter__())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        holder.cancel()
        with pytest.raises(asyncio.CancelledError):
            await holder
        assert len(locks) == 0
        with pytest.raises(ValueError):
            async with locks["k"]:
                raise ValueError("the body failed")
        assert len(locks) == 0
        async with locks["k"]:  # and the key locks again
            pass

    asyncio.run(scenario())


def test_a_shard_keeps_no_lock_per_blob_it_has_stored(tmp_path) -> None:
    from shard.ops.blobs import BlobOps
    from shard.service import ShardService
    from tests.unit.test_storage import _upload, sha

    async def scenario() -> None:
        service = ShardService(tmp_path, 0, 1, durable=False)
        for i in range(200):
            await _upload(service, "r", f"blob {i}".encode())
        for i in range(0, 200, 2):
            await BlobOps(service).delete({"repo": "r", "digest": sha(f"blob {i}".encode())}, [])
        assert len(service.digest_locks) == 0  # was 200: one lock per digest, for ever
        service.close()

    asyncio.run(scenario())
