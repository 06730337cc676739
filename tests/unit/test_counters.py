"""The shard's usage counters (issue 17): blob count and bytes kept in LMDB with every change.

They are checked against a full scan of the ``blobs`` database after random sequences of
pushes, mounts, deletes, manifest deletes and GC; a store without counters (an older version)
gets them on open; concurrent commits of one digest count it once; a failed write leaves them
as they were; readers (status op, shard metrics) read them without scanning.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time

import pytest

from common.errors import ErrorCode, RegistryError
from shard.health import OpLatency, metrics_text
from shard.hooks import Hooks
from shard.maintenance import collect_garbage
from shard.metastore import MetaStore
from shard.ops.blobs import BlobOps
from shard.ops.manifests import ManifestOps
from shard.ops.repositories import RepositoryOps
from shard.ops.uploads import UploadOps
from shard.service import ShardService
from tests.unit.test_storage import _upload


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def usage(meta: MetaStore) -> tuple[int, int]:
    return meta.read(meta.blob_usage)


def scanned(meta: MetaStore) -> tuple[int, int]:
    """What a full scan finds: (blob records, sum of their sizes)."""
    blobs = meta.read(lambda txn: list(meta.blobs(txn)))
    return len(blobs), sum(size for _, size in blobs)


def repos_scanned(meta: MetaStore) -> int:
    return meta.read(lambda txn: sum(1 for _ in meta.repo_names(txn)))


def assert_exact(service: ShardService) -> None:
    meta = service.meta
    assert usage(meta) == scanned(meta)
    assert meta.read(meta.repo_count) == repos_scanned(meta)


@pytest.mark.parametrize("seed", range(4))
def test_counters_match_a_scan_after_random_operations(tmp_path, seed):
    rng = random.Random(seed)
    contents = [rng.randbytes(rng.randint(1, 4000)) for _ in range(10)]
    repos = [f"r{i}" for i in range(4)]

    async def linked(s: ShardService) -> list[tuple[str, str]]:
        return s.meta.read(lambda txn: [(repo, d) for repo in s.meta.repo_names(txn)
                                        for d, _ in s.meta.links(txn, repo)])

    async def scenario() -> None:
        s = ShardService(tmp_path, 0, 1, durable=False)
        blobs, manifests = BlobOps(s), ManifestOps(s, Hooks())
        pushed: list[tuple[str, str]] = []  # (repo, manifest digest)
        for step in range(60):
            action = rng.choice(["push", "push", "mount", "delete", "manifest", "unmanifest", "gc"])
            if action == "push":
                await _upload(s, rng.choice(repos), rng.choice(contents))
            elif action == "mount":
                links = await linked(s)
                if links:
                    _, d = rng.choice(links)
                    await blobs.link({"repo": rng.choice(repos), "digest": d}, [])
            elif action == "delete":
                links = await linked(s)
                if links:
                    repo, d = rng.choice(links)
                    await blobs.delete({"repo": repo, "digest": d}, [])
            elif action == "manifest":
                links = await linked(s)
                if links:
                    repo, _ = rng.choice(links)
                    mine = [d for r, d in links if r == repo]
                    body = f"manifest {step}".encode()
                    await manifests.put({"repo": repo, "digest": sha(body), "media_type": "application/x",
                                         "tags": [f"t{step}"], "blobs": rng.sample(mine, min(2, len(mine)))},
                                        [body])
                    pushed.append((repo, sha(body)))
            elif action == "unmanifest" and pushed:
                repo, d = pushed.pop(rng.randrange(len(pushed)))
                await manifests.delete({"repo": repo, "reference": d}, [])
            elif action == "gc":
                await collect_garbage(s, delay=0, now=time.time() + 10)
            assert_exact(s)
        # whatever is left, collected to nothing: the counters come back to zero
        for repo, d in list(pushed):
            await manifests.delete({"repo": repo, "reference": d}, [])
        await collect_garbage(s, delay=0, now=time.time() + 10)
        assert usage(s.meta) == (0, 0) == scanned(s.meta)
        s.close()

    asyncio.run(scenario())


def test_a_store_without_counters_gets_them_on_open(tmp_path, monkeypatch):
    async def fill() -> None:
        s = ShardService(tmp_path, 0, 1, durable=False)
        for repo, data in (("a", b"one"), ("a", b"two!"), ("b", b"one"), ("c", b"three")):
            await _upload(s, repo, data)
        s.close()

    asyncio.run(fill())
    meta = MetaStore(tmp_path / "meta", sync=False)
    expected = scanned(meta)
    assert expected == (3, len(b"one") + len(b"two!") + len(b"three"))
    meta.write(lambda txn: meta.system_delete(txn, b"counters/blobs"))  # as an older version left it
    meta.close()

    meta = MetaStore(tmp_path / "meta", sync=False)  # the migration: one scan
    assert meta.read(lambda txn: meta.system_get(txn, b"counters/blobs")) == {"count": 3, "bytes": expected[1]}
    assert usage(meta) == expected
    meta.close()

    # an older version wrote a blob record since (no counter update): the count differs, recount
    meta = MetaStore(tmp_path / "meta", sync=False)
    meta.write(lambda txn: meta.put(txn, "blobs", sha(b"four").encode(), {"size": 4, "links": 1}))
    meta.close()
    meta = MetaStore(tmp_path / "meta", sync=False)
    assert usage(meta) == (4, expected[1] + 4) == scanned(meta)
    meta.close()

    # a store with counters opens without scanning, and readers use the counters as they are
    def no_scan(self, txn):
        raise AssertionError("scanned the blobs")

    monkeypatch.setattr(MetaStore, "scan_blob_usage", no_scan)
    meta = MetaStore(tmp_path / "meta", sync=False)
    assert usage(meta) == (4, expected[1] + 4)
    meta.close()


def test_a_new_store_starts_at_zero(tmp_path):
    meta = MetaStore(tmp_path / "meta", sync=False)
    assert meta.read(lambda txn: meta.system_get(txn, b"counters/blobs")) == {"count": 0, "bytes": 0}
    assert usage(meta) == (0, 0) and meta.read(meta.repo_count) == 0
    meta.close()


def test_concurrent_commits_of_one_digest_count_it_once(tmp_path):
    data = b"the same layer" * 1000

    async def scenario() -> None:
        s = ShardService(tmp_path, 0, 1, durable=False)
        # the uploads first (each to its own uuid), then every commit at once
        repos = [f"r{i % 5}" for i in range(20)]
        uuids = [await _upload(s, repo, data, commit=False) for repo in repos]
        ops = UploadOps(s)
        await asyncio.gather(*(ops.commit({"repo": repo, "uuid": uuid, "digest": sha(data)}, [])
                               for repo, uuid in zip(repos, uuids, strict=True)))
        assert usage(s.meta) == (1, len(data)) == scanned(s.meta)
        assert s.meta.read(s.meta.repo_count) == 5
        assert s.meta.read(lambda txn: s.meta.blob(txn, sha(data)))["links"] == 5
        # concurrent mounts and deletes of that digest
        blobs = BlobOps(s)
        await asyncio.gather(*(blobs.link({"repo": f"m{i}", "digest": sha(data)}, []) for i in range(5)),
                             *(blobs.delete({"repo": f"r{i}", "digest": sha(data)}, []) for i in range(5)))
        assert usage(s.meta) == (1, len(data)) == scanned(s.meta)
        await asyncio.gather(*(blobs.delete({"repo": f"m{i}", "digest": sha(data)}, []) for i in range(5)))
        assert usage(s.meta) == (0, 0) == scanned(s.meta)
        assert not s.blobs.path(sha(data)).exists()
        s.close()

    asyncio.run(scenario())


def test_a_failed_write_leaves_the_counters_as_they_were(tmp_path):
    meta = MetaStore(tmp_path / "meta", sync=False)

    def half_done(txn) -> None:
        meta.link(txn, "r", sha(b"x"), 1)
        raise RegistryError(ErrorCode.NAME_INVALID)  # fails after the blob was counted

    async def scenario() -> None:
        kept = meta.write_async(lambda txn: meta.link(txn, "r", sha(b"kept"), 4))
        results = await asyncio.gather(kept, meta.write_async(half_done), return_exceptions=True)
        assert results[0] is None and isinstance(results[1], RegistryError)

    asyncio.run(scenario())
    assert usage(meta) == (1, 4) == scanned(meta)
    meta.close()


def test_status_and_metrics_read_the_counters(tmp_path, monkeypatch):
    async def scenario() -> None:
        s = ShardService(tmp_path, 0, 1, durable=False)
        await _upload(s, "r", b"12345")
        await _upload(s, "q", b"1234567")

        def no_scan(self, txn):
            raise AssertionError("scanned the blobs")

        monkeypatch.setattr(MetaStore, "blobs", no_scan)
        status = (await RepositoryOps(s).status({}, []))[0]
        assert (status["blob_count"], status["blob_bytes"]) == (2, 12)
        text = metrics_text(s, OpLatency(0)).decode()
        assert 'shardreg_shard_blob_count{shard="0"} 2.0' in text
        assert 'shardreg_shard_blob_bytes{shard="0"} 12.0' in text
        assert (await RepositoryOps(s).repo_count({"repo": "q"}, []))[0] == {"count": 2, "exists": True}
        s.close()

    asyncio.run(scenario())
