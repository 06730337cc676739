"""The shard's storage with real LMDB and real files: blob store, metadata store, upload recovery."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import pytest

from common.errors import ErrorCode, RegistryError
from shard.blobstore import BlobStore
from shard.hooks import Hooks
from shard.metastore import ClusterSizeMismatch, MetaStore, key
from shard.ops.blobs import BlobOps
from shard.ops.manifests import ManifestOps
from shard.ops.repositories import RepositoryOps
from shard.ops.uploads import UploadOps
from shard.service import ShardService


def sha(data: bytes, alg: str = "sha256") -> str:
    return f"{alg}:{hashlib.new(alg, data).hexdigest()}"


def test_upload_file_write_rollback_and_rehash(tmp_path):
    store = BlobStore(tmp_path)
    f = store.open_upload("u1", "sha256")
    f.write([b"hello ", memoryview(b"world")])
    snap = f.snapshot()
    f.write([b"!!!"])
    f.rollback(snap)
    assert f.digest("sha256") == sha(b"hello world")
    assert f.digest("sha512") == sha(b"hello world", "sha512")
    f.close()
    # reopened after a "crash" with extra bytes on disk past the recorded offset
    with open(store.upload_path("u1"), "ab") as fh:
        fh.write(b"garbage")
    g = store.open_upload("u1", "sha256", offset=11)
    assert g.offset == 11 and g.digest("sha256") == sha(b"hello world")
    store.install(g, sha(b"hello world"))
    assert store.path(sha(b"hello world")).read_bytes() == b"hello world"
    assert not store.upload_path("u1").exists()
    assert store.relative_path(sha(b"x")).startswith("blobs/sha256/")


def test_metastore_scan_and_map_growth(tmp_path, monkeypatch):
    monkeypatch.setattr("shard.lmdbstore._INITIAL_MAP", 4 * 1024 * 1024)
    meta = MetaStore(tmp_path / "meta", sync=False)
    meta.write(lambda txn: [meta.put(txn, "tags", key("r", f"t{i}"), i) for i in range(5)])
    meta.write(lambda txn: meta.put(txn, "tags", key("r2", "t0"), 0))
    keys = meta.read(lambda txn: [k for k, _ in meta.scan(txn, "tags", key("r", ""))])
    assert keys == [key("r", f"t{i}") for i in range(5)]
    after = meta.read(lambda txn: [k for k, _ in meta.scan(txn, "tags", key("r", ""), key("r", "t2"))])
    assert after == [key("r", "t3"), key("r", "t4")]
    big = os.urandom(1024 * 1024)
    for i in range(12):  # more than the initial map: it must grow, not fail
        meta.write(lambda txn, i=i: txn.put(f"k{i}".encode(), big, db=meta.db["manifest_bytes"]))
    assert meta.env.info()["map_size"] > 4 * 1024 * 1024
    assert meta.read(lambda txn: txn.get(b"k11", db=meta.db["manifest_bytes"])) == big


def test_cluster_shape_is_recorded(tmp_path):
    meta = MetaStore(tmp_path / "meta", sync=False)
    meta.check_cluster(0, 4)
    meta.check_cluster(0, 4)
    # issue 12: the count is the cluster map's (it changes by `shardreg cluster resize`), not the
    # config's: another configured count starts, and routing keeps following the recorded map
    meta.check_cluster(0, 5)
    assert meta.read(meta.view)["shards"] == 4 and meta.read(meta.view)["epoch"] == 1
    with pytest.raises(ClusterSizeMismatch):
        meta.check_cluster(2, 4)
    other = MetaStore(tmp_path / "meta2", sync=False)
    other.check_cluster(1, 4)  # not the home: its map comes from the home (through a gateway)
    assert other.read(other.view)["epoch"] == 0
    other.check_cluster(1, 4)
    with pytest.raises(ClusterSizeMismatch):
        other.check_cluster(3, 4)


def run(coro):
    return asyncio.run(coro)


async def _upload(service: ShardService, repo: str, data: bytes, commit: bool = True) -> str:
    uuid = (await UploadOps(service).start({"repo": repo}, []))[0]["uuid"]
    await UploadOps(service).begin({"repo": repo, "uuid": uuid, "start": 0}, [])
    done: list = []
    service.uploads.enqueue_write({"repo": repo, "uuid": uuid, "offset": 0}, [data], done.append)
    await UploadOps(service).end({"repo": repo, "uuid": uuid, "length": len(data)}, [])
    assert isinstance(done[0], tuple)
    if commit:
        await UploadOps(service).commit({"repo": repo, "uuid": uuid, "digest": sha(data)}, [])
    return uuid


def test_service_upload_commit_link_and_delete(tmp_path):
    async def scenario():
        s = ShardService(tmp_path, 0, 1, durable=False)
        await _upload(s, "a", b"shared")
        await _upload(s, "b", b"shared")  # same digest: one file, two links
        d = sha(b"shared")
        assert s.blobs.path(d).exists()
        await BlobOps(s).delete({"repo": "a", "digest": d}, [])
        assert s.blobs.path(d).exists()  # still linked from b
        await BlobOps(s).delete({"repo": "b", "digest": d}, [])
        assert not s.blobs.path(d).exists()
        with pytest.raises(RegistryError) as info:
            await BlobOps(s).stat({"repo": "b", "digest": d}, [])
        assert info.value.code == ErrorCode.BLOB_UNKNOWN
        s.close()

    run(scenario())


def test_service_recovers_upload_after_restart(tmp_path):
    async def before():
        s = ShardService(tmp_path, 0, 1, durable=False)
        uuid = await _upload(s, "r", b"first part ", commit=False)
        s.close()
        return uuid

    uuid = run(before())

    async def after():
        s = ShardService(tmp_path, 0, 1, durable=False)
        status = (await UploadOps(s).status({"repo": "r", "uuid": uuid}, []))[0]
        assert status["offset"] == len(b"first part ")
        await UploadOps(s).begin({"repo": "r", "uuid": uuid, "start": 11}, [])
        done: list = []
        s.uploads.enqueue_write({"repo": "r", "uuid": uuid, "offset": 11}, [b"second"], done.append)
        await UploadOps(s).end({"repo": "r", "uuid": uuid, "length": 6}, [])
        result = (await UploadOps(s).commit({"repo": "r", "uuid": uuid, "digest": sha(b"first part second")}, []))[0]
        assert result["size"] == 17
        s.close()

    run(after())


def test_orphan_upload_files_removed_and_expiry(tmp_path):
    async def scenario():
        s = ShardService(tmp_path, 0, 1, durable=False, upload_expiry=60)
        uuid = await _upload(s, "r", b"abandoned", commit=False)
        s.uploads.sessions.clear()  # as after a restart
        assert await s.uploads.expire(now=time.time() + 30) == []
        assert await s.uploads.expire(now=time.time() + 120) == [uuid]
        assert not s.blobs.upload_path(uuid).exists()
        with pytest.raises(RegistryError):
            await UploadOps(s).status({"repo": "r", "uuid": uuid}, [])
        s.close()

    run(scenario())
    (tmp_path / "uploads" / "stray").write_bytes(b"x")
    ShardService(tmp_path, 0, 1, durable=False).close()
    assert not (tmp_path / "uploads" / "stray").exists()


def test_digest_mismatch_keeps_nothing(tmp_path):
    async def scenario():
        s = ShardService(tmp_path, 0, 1, durable=False)
        uuid = await _upload(s, "r", b"content", commit=False)
        with pytest.raises(RegistryError) as info:
            await UploadOps(s).commit({"repo": "r", "uuid": uuid, "digest": sha(b"other")}, [])
        assert info.value.code == ErrorCode.DIGEST_INVALID
        assert not s.blobs.path(sha(b"other")).exists() and not s.blobs.path(sha(b"content")).exists()
        s.close()

    run(scenario())


def test_garbage_collection_of_unreferenced_blobs(tmp_path):
    from shard.maintenance import collect_garbage

    async def scenario():
        s = ShardService(tmp_path, 0, 1, durable=False)
        for data in (b"config", b"layer", b"orphan"):
            await _upload(s, "r", data)
        await _upload(s, "other", b"orphan")  # the same bytes linked elsewhere keep their file
        await ManifestOps(s, Hooks()).put({"repo": "r", "digest": sha(b"m"), "media_type": "application/x", "tags": ["t"],
                                 "blobs": [sha(b"config"), sha(b"layer")]}, [b"m"])
        assert await collect_garbage(s, delay=3600) == []  # too young
        removed = await collect_garbage(s, delay=3600, now=time.time() + 7200)
        assert set(removed) == {("r", sha(b"orphan")), ("other", sha(b"orphan"))}
        assert not s.blobs.path(sha(b"orphan")).exists()
        assert s.blobs.path(sha(b"layer")).exists()
        # once the manifest is gone its blobs go too
        await ManifestOps(s, Hooks()).delete({"repo": "r", "reference": sha(b"m")}, [])
        removed = await collect_garbage(s, delay=3600, now=time.time() + 7200)
        assert set(removed) == {("r", sha(b"config")), ("r", sha(b"layer"))}
        assert not s.blobs.path(sha(b"layer")).exists()
        s.close()

    run(scenario())


def test_group_commit_keeps_each_write_isolated(tmp_path):
    meta = MetaStore(tmp_path / "meta", sync=False)

    def good(i):
        return lambda txn: (meta.put(txn, "repos", f"r{i}".encode(), {"i": i}), i)[1]

    def bad(txn):
        meta.put(txn, "repos", b"half-done", {})
        raise RegistryError(ErrorCode.NAME_INVALID)

    async def scenario():
        results = await asyncio.gather(*(meta.write_async(good(i)) for i in range(50)),
                                       meta.write_async(bad), return_exceptions=True)
        assert results[:50] == list(range(50))
        assert isinstance(results[50], RegistryError)

    asyncio.run(scenario())
    names = meta.read(lambda txn: [k for k, _ in meta.scan(txn, "repos", b"")])
    assert b"half-done" not in names and len(names) == 50
    meta.close()


def test_scrub_finds_damaged_blobs_and_manifests(tmp_path):
    from shard.maintenance import scrub

    async def scenario():
        s = ShardService(tmp_path, 0, 1, durable=False)
        await _upload(s, "r", b"healthy bytes")
        await _upload(s, "r", b"about to rot")
        await ManifestOps(s, Hooks()).put({"repo": "r", "digest": sha(b"{}"), "media_type": "application/x", "tags": [],
                                 "blobs": []}, [b"{}"])
        assert await scrub(s) == []
        s.blobs.path(sha(b"about to rot")).write_bytes(b"about to rOt")  # bit rot
        await s.meta.write_async(lambda txn: txn.put(key("r", sha(b"{}")), b"{ }", db=s.meta.db["manifest_bytes"]))
        assert await scrub(s) == [sha(b"about to rot"), f"r@{sha(b'{}')}"]
        assert (await RepositoryOps(s).status({}, []))[0]["damaged"] == s.damaged
        s.close()

    run(scenario())


def test_blob_files_a_crash_left_without_a_record_are_removed(tmp_path):
    """A kill -9 between an upload's rename into blobs/ and its commit leaves a file no record names:
    the shard's background sweep removes it, and never a file that is recorded or being committed."""
    from shard.maintenance import remove_orphan_files

    async def scenario():
        s = ShardService(tmp_path, 0, 1, durable=False)
        await _upload(s, "a", b"kept")
        kept = sha(b"kept")
        orphan = sha(b"orphan")
        s.blobs.install_bytes(b"orphan", orphan)  # as if the commit after the rename never ran
        committing = sha(b"committing")
        lock = s.digest_locks[committing]
        await lock.__aenter__()  # a commit in progress holds its digest's lock across rename and commit
        s.blobs.install_bytes(b"committing", committing)
        sweep = asyncio.ensure_future(remove_orphan_files(s))
        await asyncio.sleep(0.05)
        assert not sweep.done()  # waits for the commit instead of deleting its file
        s.meta.write(lambda txn: s.meta.link(txn, "a", committing, len(b"committing")))
        await lock.__aexit__(None, None, None)
        assert await sweep == 1
        assert not s.blobs.path(orphan).exists()
        assert s.blobs.path(kept).exists() and s.blobs.path(committing).exists()
        assert await remove_orphan_files(s) == 0
        s.close()

    run(scenario())
