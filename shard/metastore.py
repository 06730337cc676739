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

Writers run on the shard's event loop only (a shard is single-writer by construction);
readers never block them. The map grows on demand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
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
    def __init__(self, path: Path, *, sync: bool = True) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.env = lmdb.open(str(path), map_size=_INITIAL_MAP, max_dbs=len(_DBS) + 2, sync=sync,
                             metasync=sync, writemap=False, max_readers=256)
        self.db = {name: self.env.open_db(name.encode()) for name in _DBS}

    def close(self) -> None:
        self.env.close()

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
