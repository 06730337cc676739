"""The extensions' LMDB environment, ``<shard dir>/search``, and its key layout.

Kept beside the shard's main metadata; everything here can be lost without harming an image
(it is search data, user preferences and trust material). Only this module knows the keys::

    pushes     repo \\0 digest       -> {at, by}        first push of a manifest, and who pushed it
    tagtimes   repo \\0 tag          -> timestamp       when the tag last moved
    stats      repo \\0 digest       -> {downloads, last}
    stars      repo \\0 user         -> b"1"
    bookmarks  repo \\0 user         -> b"1"
    trust      cosign \\0 sha256(key)             -> PEM public key
               notation \\0 type \\0 sha256(cert)  -> DER certificate
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from shard.lmdbstore import LmdbStore, Txn, key

_DBS = ("pushes", "tagtimes", "stats", "stars", "bookmarks", "trust")
#: The databases keyed by repository (they move with it in a resize).
_REPO_DBS = ("pushes", "tagtimes", "stats", "stars", "bookmarks")
#: A per-user mark on a repository.
Mark = Literal["stars", "bookmarks"]


class SearchStore(LmdbStore):
    def __init__(self, path: Path, *, sync: bool = True) -> None:
        super().__init__(path, dbs=_DBS, sync=sync, map_size=64 << 20)

    # -- pushes and tag times ------------------------------------------------------------
    def record_push(self, txn: Txn, repo: str, digest: str, tags: Iterable[str], at: float, by: str) -> None:
        """The first push of ``digest`` (time, pusher) and the time its ``tags`` moved."""
        pkey = key(repo, digest)
        if txn.get(pkey, db=self.db["pushes"]) is None:
            self.put(txn, "pushes", pkey, {"at": at, "by": by})
        for tag in tags:
            self.put(txn, "tagtimes", key(repo, tag), at)

    def push(self, txn: Txn, repo: str, digest: str) -> dict[str, Any]:
        """``{at, by}`` of the manifest's first push, or ``{}``."""
        record: dict[str, Any] = self.get(txn, "pushes", key(repo, digest)) or {}
        return record

    def tag_time(self, txn: Txn, repo: str, tag: str) -> float | None:
        moved: float | None = self.get(txn, "tagtimes", key(repo, tag))
        return moved

    # -- download statistics -------------------------------------------------------------
    def stats(self, txn: Txn, repo: str, digest: str) -> tuple[int, float]:
        """(downloads, last pull) as stored."""
        stored = self.get(txn, "stats", key(repo, digest)) or {"downloads": 0, "last": 0.0}
        return stored["downloads"], stored["last"]

    def add_downloads(self, txn: Txn, repo: str, digest: str, count: int, last: float) -> None:
        skey = key(repo, digest)
        stats = self.get(txn, "stats", skey) or {"downloads": 0, "last": 0.0}
        stats["downloads"] += count
        stats["last"] = max(stats["last"], last)
        self.put(txn, "stats", skey, stats)

    # -- user marks (stars, bookmarks) ---------------------------------------------------
    def marked(self, txn: Txn, mark: Mark, repo: str, user: str) -> bool:
        return txn.get(key(repo, user), db=self.db[mark]) is not None

    def toggle_mark(self, txn: Txn, mark: Mark, repo: str, user: str) -> bool:
        """Set the mark if absent, clear it if present; True when it is now set."""
        k = key(repo, user)
        if txn.get(k, db=self.db[mark]) is not None:
            txn.delete(k, db=self.db[mark])
            return False
        txn.put(k, b"1", db=self.db[mark])
        return True

    def mark_count(self, txn: Txn, mark: Mark, repo: str) -> int:
        return sum(1 for _ in self.scan(txn, mark, key(repo, "")))

    # -- a repository's records, as a resize moves them (issue 12) ---------------------------
    def repo_records(self, txn: Txn, repo: str) -> dict[str, dict[str, bytes]]:
        """Every record of ``repo`` (raw values) by database and the key's part after the name."""
        prefix = key(repo, "")
        return {db: {bytes(k)[len(prefix):].decode("latin-1"): bytes(v) for k, v in self.scan(txn, db, prefix)}
                for db in _REPO_DBS}

    def put_repo_records(self, txn: Txn, repo: str, records: dict[str, dict[str, bytes]]) -> None:
        """Make ``repo``'s records exactly ``records`` (from :meth:`repo_records` on another shard)."""
        prefix = key(repo, "")
        for db in _REPO_DBS:
            wanted = records.get(db) or {}
            for k, _ in list(self.scan(txn, db, prefix)):
                if bytes(k)[len(prefix):].decode("latin-1") not in wanted:
                    txn.delete(k, db=self.db[db])
            for suffix, value in wanted.items():
                txn.put(prefix + suffix.encode("latin-1"), bytes(value), db=self.db[db])

    def delete_repo_records(self, txn: Txn, repo: str) -> None:
        self.put_repo_records(txn, repo, {})

    # -- trust material ------------------------------------------------------------------
    def put_cosign_key(self, txn: Txn, pem: bytes) -> None:
        txn.put(key("cosign", hashlib.sha256(pem.strip()).hexdigest()), pem, db=self.db["trust"])

    def put_notation_cert(self, txn: Txn, store_type: str, der: bytes) -> None:
        txn.put(key("notation", store_type, hashlib.sha256(der).hexdigest()), der, db=self.db["trust"])

    def trust_entries(self, txn: Txn) -> list[tuple[bytes, str, bytes]]:
        """(key, kind, value) of every trust entry, in key order; kind is ``cosign`` or ``notation``."""
        return [(bytes(k), k.split(b"\0", 1)[0].decode(), bytes(v)) for k, v in self.scan(txn, "trust", b"")]
