"""One LMDB environment with named databases, group-committed writes and growing map.

Writes go through one writer thread with group commit (``write_async``): the writes that
arrive while a commit is being flushed are applied together in the next transaction, each in
its own nested transaction (one failing does not undo the others), with one fsync for all.
The event loop keeps serving reads meanwhile; readers never block writers. The map grows on
demand.

This module knows nothing of what is stored: :mod:`shard.metastore` and
:mod:`shard.searchstore` own their key layouts and give their callers named accessors.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import msgpack

from common.errors import ErrorCode, RegistryError
from shard.diskfull import diagnose

#: An LMDB transaction (the lmdb package has no type stubs).
Txn = Any
_INITIAL_MAP = 1 << 30
T = TypeVar("T")


#: LMDB's longest key (its default build): a longer one raises ``BadValsizeError``.
MAX_KEY = 511
#: Starts a hashed last part. UTF-8 never contains this byte, so no plain key can look like one.
HASHED = b"\xff"


def key(*parts: str) -> bytes:
    """The parts of a key joined by ``\\0``, so that a cursor lists them in order.

    A key longer than LMDB allows keeps its leading parts (prefix scans and their order still
    work) and has its last part replaced by ``\\xff`` + its SHA-256: such keys are never
    decoded back into their parts. Keys that fit are unchanged, so data stored before this
    scheme reads as it did. A key whose leading parts alone do not fit is refused (400).
    """
    joined = "\0".join(parts).encode()
    if len(joined) <= MAX_KEY:
        return joined
    head = "\0".join(parts[:-1]).encode() + b"\0" if len(parts) > 1 else b""
    hashed = head + HASHED + hashlib.sha256(parts[-1].encode()).digest()
    if len(hashed) > MAX_KEY:
        raise RegistryError(ErrorCode.BAD_REQUEST, "name too long for the metadata store",
                            detail={"length": len(joined)})
    return hashed


def pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpack(data: bytes | None) -> Any:
    return None if data is None else msgpack.unpackb(data, raw=False)


#: The environments open in this process, by directory: LMDB forbids a second open of one in the
#: same process (an in-process registry runs the gateway beside its shards).
_OPEN: dict[Path, LmdbStore] = {}


class LmdbStore:
    @classmethod
    def open_here(cls, path: Path) -> LmdbStore | None:
        """The store this process already holds on ``path``, if any."""
        return _OPEN.get(path.resolve())

    def __init__(self, path: Path, *, dbs: tuple[str, ...], sync: bool = True,
                 map_size: int | None = None, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        if readonly:  # another process's environment, read beside it (gateway.local_reads)
            self.env = lmdb.open(str(path), readonly=True, create=False, max_dbs=len(dbs) + 2, max_readers=256)
            self.db = {name: self.env.open_db(name.encode(), create=False) for name in dbs}
        else:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            # data.mdb holds the session secret and user records: owner-only, whatever the umask
            self.env = lmdb.open(str(path), map_size=map_size or _INITIAL_MAP, max_dbs=len(dbs) + 2, sync=sync,
                                 metasync=sync, writemap=False, max_readers=256, mode=0o600)
            self.db = {name: self.env.open_db(name.encode()) for name in dbs}
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmdb-writer")
        _OPEN[path.resolve()] = self
        self._batch: list[tuple[Callable[[Txn], Any], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def free_stale_readers(self) -> int:
        """Free the read slots of processes that died mid-read (a gateway worker killed while it
        read in place): a stale slot pins the pages of its snapshot, so the file could only grow.
        Returns how many were freed."""
        return int(self.env.reader_check())

    def close(self) -> None:
        self._writer.shutdown(wait=True)
        if _OPEN.get(self.path.resolve()) is self:
            del _OPEN[self.path.resolve()]
        self.env.close()

    async def write_async(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a write transaction on the writer thread; group-committed with its neighbours.

        ``fn`` runs in another thread: it may only touch the transaction and its own data.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
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

    def _commit_batch(self, fns: list[Callable[[Txn], Any]]) -> list[tuple[bool, Any]]:
        def run(txn: Txn) -> list[tuple[bool, Any]]:
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
    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a write transaction, growing the map and retrying if it is full."""
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except lmdb.Error as exc:  # a full disk shows as EIO: say so (shard.diskfull)
                diagnosed = diagnose(exc, self.path / "data.mdb")
                if diagnosed is exc:
                    raise
                raise diagnosed from exc

    def read(self, fn: Callable[[Txn], T]) -> T:
        try:
            with self.env.begin() as txn:
                return fn(txn)
        except lmdb.MapResizedError:  # only a reader beside the writer: adopt the grown map
            self.env.set_mapsize(0)
            with self.env.begin() as txn:
                return fn(txn)

    def begin_read(self) -> Any:
        """A read transaction as a context manager (for reads spanning two environments)."""
        return self.env.begin()

    # -- raw records (for the stores' accessors) -----------------------------------------
    def get(self, txn: Txn, db: str, k: bytes) -> Any:
        return unpack(txn.get(k, db=self.db[db]))

    def put(self, txn: Txn, db: str, k: bytes, value: Any) -> None:
        txn.put(k, pack(value), db=self.db[db])

    def delete(self, txn: Txn, db: str, k: bytes) -> bool:
        deleted: bool = txn.delete(k, db=self.db[db])
        return deleted

    def scan(self, txn: Txn, db: str, prefix: bytes, after: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """(key, raw value) pairs with ``prefix``, in key order, starting after ``after``."""
        cursor = txn.cursor(db=self.db[db])
        start = prefix if after is None or after < prefix else after + b"\0"
        if not cursor.set_range(start):
            return
        for k, v in cursor.iternext():
            if not k.startswith(prefix):
                return
            yield k, v

    def entries(self, txn: Txn, db: str) -> int:
        count: int = txn.stat(self.db[db])["entries"]
        return count

    def size_bytes(self) -> int:
        info = self.env.info()
        stat = self.env.stat()
        size: int = info["last_pgno"] * stat["psize"]
        return size
