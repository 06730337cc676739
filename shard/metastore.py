"""The shard's metadata: one LMDB environment under ``<shard dir>/meta``.

Named databases and their keys (``\\0`` separates parts, so a cursor lists in spec order)::

    repos           name                      -> {created}
    tags            repo \\0 tag               -> digest (ascii)
    manifests       repo \\0 digest            -> {mediaType, size, subject, artifactType, annotations,
                                                   blobs, children, created}
    manifest_bytes  repo \\0 digest            -> the exact bytes that were pushed
    links           repo \\0 digest            -> {size}   a blob exists in a repo only if linked here
    blobs           digest                    -> {size, links}   one file per digest on this shard
    referrers       repo \\0 subject \\0 digest -> descriptor of the referring manifest
    uploads         uuid                      -> {repo, offset, alg, started, updated}
    system          key                       -> value (schema version, shard count, ...)

Writes go through one writer thread with group commit (``write_async``): the writes that
arrive while a commit is being flushed are applied together in the next transaction, each in
its own nested transaction (one failing does not undo the others), with one fsync for all.
The event loop keeps serving reads meanwhile; readers never block writers. The map grows on
demand.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import msgpack

SCHEMA_VERSION = 1
_DBS = ("repos", "tags", "manifests", "manifest_bytes", "links", "blobs", "referrers", "uploads", "system")
_INITIAL_MAP = 1 << 30
T = TypeVar("T")


def key(*parts: str) -> bytes:
    return "\0".join(parts).encode()


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes | None) -> Any:
    return None if data is None else msgpack.unpackb(data, raw=False)


class ClusterSizeMismatch(RuntimeError):
    """The shard was created for a different number of shards: routing would be wrong."""


class MetaStore:
    def __init__(self, path: Path, *, sync: bool = True, dbs: tuple[str, ...] = _DBS,
                 map_size: int | None = None) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.env = lmdb.open(str(path), map_size=map_size or _INITIAL_MAP, max_dbs=len(dbs) + 2, sync=sync,
                             metasync=sync, writemap=False, max_readers=256)
        self.db = {name: self.env.open_db(name.encode()) for name in dbs}
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmdb-writer")
        self._batch: list[tuple[Callable[[lmdb.Transaction], Any], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        self.env.close()

    async def write_async(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in a write transaction on the writer thread; group-committed with its neighbours.

        ``fn`` runs in another thread: it may only touch the transaction and its own data.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._batch.append((fn, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._batch:
            batch, self._batch = self._batch, []
            try:
                outcomes = await loop.run_in_executor(self._writer, self._commit_batch, [fn for fn, _ in batch])
            except Exception as exc:  # the commit itself failed: every write of the batch failed
                outcomes = [(False, exc)] * len(batch)
            for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _commit_batch(self, fns: list[Callable[[lmdb.Transaction], Any]]) -> list[tuple[bool, Any]]:
        def run(txn: lmdb.Transaction) -> list[tuple[bool, Any]]:
            outcomes: list[tuple[bool, Any]] = []
            for fn in fns:
                try:
                    with self.env.begin(write=True, parent=txn) as child:
                        outcomes.append((True, fn(child)))
                except lmdb.MapFullError:
                    raise  # grow the map and redo the whole batch (write() does that)
                except Exception as exc:  # noqa: BLE001 - this write failed; its neighbours go on
                    outcomes.append((False, exc))
            return outcomes

        return self.write(run)

    # -- transactions -------------------------------------------------------------------
    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in a write transaction, growing the map and retrying if it is full."""
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)

    def read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        with self.env.begin() as txn:
            return fn(txn)

    def get(self, txn: lmdb.Transaction, db: str, k: bytes) -> Any:
        return unpack(txn.get(k, db=self.db[db]))

    def put(self, txn: lmdb.Transaction, db: str, k: bytes, value: Any) -> None:
        txn.put(k, pack(value), db=self.db[db])

    def delete(self, txn: lmdb.Transaction, db: str, k: bytes) -> bool:
        return txn.delete(k, db=self.db[db])

    def scan(self, txn: lmdb.Transaction, db: str, prefix: bytes, after: bytes | None = None
             ) -> Iterator[tuple[bytes, bytes]]:
        """(key, raw value) pairs with ``prefix``, in key order, starting after ``after``."""
        cursor = txn.cursor(db=self.db[db])
        start = prefix if after is None or after < prefix else after + b"\0"
        if not cursor.set_range(start):
            return
        for k, v in cursor.iternext():
            if not k.startswith(prefix):
                return
            yield k, v

    # -- system records -----------------------------------------------------------------
    def check_cluster(self, shard_index: int, shard_count: int) -> None:
        """Record (first start) or verify the cluster shape this shard belongs to."""

        def check(txn: lmdb.Transaction) -> None:
            recorded = self.get(txn, "system", b"cluster")
            if recorded is None:
                self.put(txn, "system", b"cluster", {"index": shard_index, "shards": shard_count,
                                                      "created": time.time()})
                self.put(txn, "system", b"schema", SCHEMA_VERSION)
                return
            if recorded["shards"] != shard_count or recorded["index"] != shard_index:
                raise ClusterSizeMismatch(
                    f"this shard's data was created as shard {recorded['index']} of {recorded['shards']}, "
                    f"but it was started as shard {shard_index} of {shard_count}. Repositories are routed "
                    f"by jump_hash(repo, shard count): changing the count would misroute them. Start with "
                    f"cluster.shards={recorded['shards']}, or migrate the data into a new cluster "
                    f"(skopeo sync) before resizing."
                )

        self.write(check)

    def size_bytes(self) -> int:
        info = self.env.info()
        stat = self.env.stat()
        return info["last_pgno"] * stat["psize"]
