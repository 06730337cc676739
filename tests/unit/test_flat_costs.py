"""Costs that must not grow with the data (issue 17).

* the usage counters (blob count and bytes, repository count) equal a full scan after a move's
  purge, and an aborted transaction changes neither;
* opening a shard (the server's whole constructor: stores, counters check, routing, uploads,
  search, lifecycle, sync) and answering readiness, ``ping`` and ``status`` read a number of
  records that does not depend on how many repositories the shard holds (counted at
  :meth:`LmdbStore.scan`, the one way the code walks a database);
* the orphan sweep at start lets the event loop run between fan-out directories;
* the post-resize cleanup scans the repositories once per epoch, not every 5 seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest

from common.config import Config, StorageConfig
from common.errors import ErrorCode, RegistryError
from shard.health import readiness
from shard.lmdbstore import LmdbStore
from shard.maintenance import remove_orphan_files
from shard.metastore import MetaStore
from shard.ops.cluster import Cleanup
from shard.ops.repositories import RepositoryOps
from shard.routing import Routing
from shard.server import ShardServer
from shard.service import ShardService
from tests.unit.test_counters import assert_exact, repos_scanned, scanned, usage


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def fill(meta: MetaStore, repos: int, prefix: str = "r") -> None:
    """``repos`` repositories, each with a config blob, one shared layer, a manifest and two tags."""
    layer = sha(b"shared layer")

    def run(txn) -> None:
        for i in range(repos):
            repo, config = f"{prefix}{i:06d}", sha(f"config {prefix}{i}".encode())
            meta.link(txn, repo, config, 100 + i)
            meta.link(txn, repo, layer, 12)
            digest = sha(f"manifest {prefix}{i}".encode())
            meta.put_manifest(txn, repo, digest, {"blobs": [config, layer], "size": 300}, b"{}")
            meta.set_tag(txn, repo, "latest", digest)
            meta.set_tag(txn, repo, "v1", digest)

    meta.write(run)


@pytest.fixture
def scan_counter(monkeypatch):
    """Counts every record read through LmdbStore.scan, per database."""
    counts: dict[str, int] = {}
    original = LmdbStore.scan

    def counting(self, txn, db, prefix, after=None):
        for item in original(self, txn, db, prefix, after):
            counts[db] = counts.get(db, 0) + 1
            yield item

    monkeypatch.setattr(LmdbStore, "scan", counting)
    return counts


def test_counters_equal_a_scan_after_a_moves_purge(tmp_path):
    meta = MetaStore(tmp_path / "meta", sync=False)
    fill(meta, 30)
    shared = sha(b"shared layer")
    unused = meta.write(lambda txn: meta.delete_repo(txn, "r000003"))
    assert unused == [sha(b"config r3")]  # the shared layer is still linked elsewhere
    assert usage(meta) == scanned(meta) == (30, sum(100 + i for i in range(30)) - 103 + 12)
    assert meta.read(meta.repo_count) == repos_scanned(meta) == 29
    for i in range(30):
        if i != 3:
            meta.write(lambda txn, i=i: meta.delete_repo(txn, f"r{i:06d}"))
    assert usage(meta) == scanned(meta) == (0, 0)
    assert meta.read(meta.repo_count) == repos_scanned(meta) == 0
    assert not meta.read(lambda txn: meta.blob_exists(txn, shared))
    meta.close()


def test_an_aborted_transaction_changes_no_counter(tmp_path):
    """A kill between the steps of a write is an aborted LMDB transaction: nothing of it stays."""
    meta = MetaStore(tmp_path / "meta", sync=False)
    fill(meta, 5)
    before = (usage(meta), meta.read(meta.repo_count))

    def half_done(txn) -> None:
        meta.link(txn, "new-repo", sha(b"new blob"), 1000)  # a new repository and blob record
        meta.delete_repo(txn, "r000001")  # a purge
        assert meta.entries(txn, "repos") == 5  # counted inside the transaction...
        raise RegistryError(ErrorCode.INTERNAL)  # ...and gone with it

    with pytest.raises(RegistryError):
        meta.write(half_done)
    assert (usage(meta), meta.read(meta.repo_count)) == before
    assert usage(meta) == scanned(meta) and meta.read(meta.repo_count) == repos_scanned(meta)
    meta.close()
    reopened = MetaStore(tmp_path / "meta", sync=False)  # the check on open agrees
    assert usage(reopened) == before[0]
    reopened.close()


def _start_cost(root, counts: dict[str, int]) -> int:
    """Records read while a shard server is constructed and answers readiness, ping and status."""
    counts.clear()
    server = ShardServer(Config(storage=StorageConfig(root_directory=root, commit=False)), 0)
    try:
        assert readiness(server.service) == (True, "ok")
        ops = RepositoryOps(server.service)
        asyncio.run(ops.ping({}, []))
        status = asyncio.run(ops.status({}, []))[0]
        assert status["blob_count"] > 0
    finally:
        server.close()
    return sum(counts.values())


def test_opening_a_shard_reads_the_same_whatever_it_stores(tmp_path, scan_counter):
    costs = {}
    for n in (20, 400):
        root = tmp_path / f"n{n}"
        service = ShardService(root / "shard-0", 0, 1, durable=False)
        fill(service.meta, n)
        assert_exact(service)
        service.close()
        costs[n] = _start_cost(root, scan_counter)
    assert costs[400] == costs[20], costs
    assert costs[20] < 20  # a few system records, not one per repository


def test_the_orphan_sweep_lets_the_loop_run(tmp_path):
    """Most files are recorded (nothing to remove, nothing awaited per file): the walk itself must
    still give the loop back between fan-out directories, not list every file in one go."""
    async def scenario() -> None:
        s = ShardService(tmp_path, 0, 1, durable=False)
        dirs = set()
        digests = [sha(str(i).encode()) for i in range(800)]
        for d in digests:
            path = s.blobs.path(d)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
            dirs.add(path.parent)
        recorded, orphans = digests[:797], digests[797:]
        s.meta.write(lambda txn: [s.meta.link(txn, "r", d, 1) for d in recorded])
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.ensure_future(ticker())
        assert await remove_orphan_files(s) == 3
        stop = True
        await t
        assert ticks >= len(dirs) > 200  # the loop ran at least once per directory
        assert all(s.blobs.path(d).exists() for d in recorded)
        assert not any(s.blobs.path(d).exists() for d in orphans)
        s.close()

    asyncio.run(scenario())


def test_the_cleanup_after_a_resize_scans_once_per_epoch(tmp_path, scan_counter):
    async def scenario() -> None:
        s = ShardService(tmp_path, 0, 1, durable=False)
        fill(s.meta, 40)
        # a finished resize 1 -> 2: this shard (0) keeps the names jump hash leaves it
        s.meta.write(lambda txn: s.meta.put_view(txn, {"index": 0, "epoch": 3, "shards": 2, "seed": 0,
                                                       "created": time.time(), "since": 0}))
        cleanup = Cleanup(s, Routing(s.meta, 0, lambda repo: False))
        scan_counter.clear()
        purged = await cleanup.run_once(delay=0)
        assert 0 < purged < 40 and scan_counter.get("repos", 0) == 40
        assert_exact(s)
        scan_counter.clear()
        assert await cleanup.run_once(delay=0) == 0
        assert scan_counter.get("repos", 0) == 0  # no walk over the repositories any more
        # a later resize (a new epoch) scans again
        s.meta.write(lambda txn: s.meta.put_view(txn, {"index": 0, "epoch": 5, "shards": 2, "seed": 0,
                                                       "created": time.time(), "since": 0}))
        cleanup.routing.reload()
        scan_counter.clear()
        assert await cleanup.run_once(delay=0) == 0
        assert scan_counter.get("repos", 0) == 40 - purged
        s.close()

    asyncio.run(scenario())
