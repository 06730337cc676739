"""The shard's metadata: one LMDB environment under ``<shard dir>/meta``, and its key layout.

This module is the only place that knows the layout (as Distribution's ``paths.go`` owns
paths): everything else calls the named accessors of :class:`MetaStore`, which take the
transaction they run in so that callers can compose them atomically. Named databases and
their keys (``\\0`` separates parts, so a cursor lists in spec order)::

    repos           name                      -> {created}
    tags            repo \\0 tag               -> digest (ascii)
    manifests       repo \\0 digest            -> {mediaType, size, subject, artifactType, annotations,
                                                   blobs, children, config, created}
    manifest_bytes  repo \\0 digest            -> the exact bytes that were pushed
    links           repo \\0 digest            -> {size, at}   a blob exists in a repo only if linked here
    blobs           digest                    -> {size, links}   one file per digest on this shard
    referrers       repo \\0 subject \\0 digest -> descriptor of the referring manifest
    uploads         uuid                      -> {repo, offset, alg, started, updated}
    outbox          seq (8 bytes, big-endian) -> event record   lifecycle events not yet sent (shard/events)
    system          key                       -> value (cluster shape, schema version, user data)
                    "cluster"                 -> the shard's view of the cluster map (common.clustermap)
                                                 {index, epoch, shards, from, seed, created}; an old
                                                 {index, shards} record reads as epoch 1, stable
                    "cluster/plan", "cluster/lease"   (shard 0 only) the resize plan and driver lease
    moves           kind \0 name              -> {role: "out"|"in", state, peer, at}   a name moving
                                                 during a resize (kind "repo" or "user"); dropped
                                                 once the map is stable again
                    "counters/blobs"          -> {count, bytes}   of the ``blobs`` database

Counters: ``counters/blobs`` holds the number of blob records and the sum of their sizes. It
is updated by :meth:`MetaStore.link` / :meth:`MetaStore.unlink` in the same transaction that
creates or removes a blob record, so it cannot drift, even on a crash; readers get usage in
O(1). A store without it (written by an older version) gets it on open from one scan of
``blobs`` (a migration); so does one whose recorded count differs from LMDB's own entry count
of ``blobs`` (written meanwhile by an older version). The repository count is LMDB's entry
count of ``repos`` (kept by LMDB in the same transaction, O(1)): repositories are only added.

Key lengths: LMDB takes keys of at most 511 bytes. Names are at most 255 bytes, tags 128 and
digests (sha256, sha512) 135, so every key fits except a referrer's (up to 527 bytes): when
``repo \\0 subject \\0 digest`` is too long, :func:`shard.lmdbstore.key` replaces the last
part by ``\\xff`` + its SHA-256 (referrer keys are only scanned by prefix, never decoded; the
value holds the digest). Keys that fit are stored as before this rule, so no migration is
needed. The keys that are decoded (repos, tags, links, manifest_bytes) always fit.

Writes are group-committed (see :mod:`shard.lmdbstore`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.errors import ErrorCode, RegistryError
from shard.lmdbstore import LmdbStore, Txn, key, unpack

__all__ = ["ClusterSizeMismatch", "MetaStore", "SCHEMA_VERSION", "key"]

SCHEMA_VERSION = 1
_BLOB_COUNTERS = b"counters/blobs"
_DBS = ("repos", "tags", "manifests", "manifest_bytes", "links", "blobs", "referrers", "uploads", "system",
        "outbox", "moves")
_OUTBOX_SEQ = b"outbox/seq"
_OUTBOX_CURSOR = b"outbox/cursor/"
Record = dict[str, Any]


class ClusterSizeMismatch(RuntimeError):
    """The shard was created for a different number of shards: routing would be wrong."""


def _after(prefix: bytes, last: str | None) -> bytes | None:
    return prefix + last.encode() if last else None


class MetaStore(LmdbStore):
    def __init__(self, path: Path, *, sync: bool = True, map_size: int | None = None, readonly: bool = False) -> None:
        super().__init__(path, dbs=_DBS, sync=sync, map_size=map_size, readonly=readonly)
        if not readonly:
            self._check_counters()

    # -- repositories ----------------------------------------------------------------------
    def repo_exists(self, txn: Txn, repo: str) -> bool:
        return txn.get(repo.encode(), db=self.db["repos"]) is not None

    def ensure_repo(self, txn: Txn, repo: str) -> None:
        if not self.repo_exists(txn, repo):
            self.put(txn, "repos", repo.encode(), {"created": time.time()})

    def repo_count(self, txn: Txn) -> int:
        return self.entries(txn, "repos")

    def repo_names(self, txn: Txn, after: str | None = None) -> Iterator[str]:
        """Repository names in order, starting after ``after``."""
        for k, _ in self.scan(txn, "repos", b"", after.encode() if after else None):
            yield k.decode()

    def manifest_unknown(self, txn: Txn, repo: str, reference: str) -> RegistryError:
        """The error for a missing manifest: MANIFEST_UNKNOWN in a known repository, else NAME_UNKNOWN."""
        code = ErrorCode.MANIFEST_UNKNOWN if self.repo_exists(txn, repo) else ErrorCode.NAME_UNKNOWN
        return RegistryError(code, detail={"name": repo, "reference": reference})

    # -- tags ------------------------------------------------------------------------------
    def tag_digest(self, txn: Txn, repo: str, tag: str) -> str | None:
        digest = txn.get(key(repo, tag), db=self.db["tags"])
        return None if digest is None else bytes(digest).decode()

    def resolve(self, txn: Txn, repo: str, reference: str) -> str:
        """The digest a reference (tag or digest) names; raises if the tag is unknown."""
        if ":" in reference:
            return reference
        digest = self.tag_digest(txn, repo, reference)
        if digest is None:
            raise self.manifest_unknown(txn, repo, reference)
        return digest

    def set_tag(self, txn: Txn, repo: str, tag: str, digest: str) -> None:
        txn.put(key(repo, tag), digest.encode(), db=self.db["tags"])

    def delete_tag(self, txn: Txn, repo: str, tag: str) -> bool:
        return self.delete(txn, "tags", key(repo, tag))

    def tags(self, txn: Txn, repo: str, after: str | None = None) -> Iterator[tuple[str, str]]:
        """(tag, digest) pairs of ``repo`` in order, starting after the tag ``after``."""
        prefix = key(repo, "")
        for k, v in self.scan(txn, "tags", prefix, _after(prefix, after)):
            yield k[len(prefix):].decode(), bytes(v).decode()

    def tags_pointing_to(self, txn: Txn, repo: str, digest: str) -> list[str]:
        return [tag for tag, target in self.tags(txn, repo) if target == digest]

    # -- manifests -------------------------------------------------------------------------
    def get_manifest(self, txn: Txn, repo: str, digest: str) -> Record | None:
        record: Record | None = self.get(txn, "manifests", key(repo, digest))
        return record

    def manifest_exists(self, txn: Txn, repo: str, digest: str) -> bool:
        return txn.get(key(repo, digest), db=self.db["manifests"]) is not None

    def manifest_bytes(self, txn: Txn, repo: str, digest: str) -> bytes | None:
        body: bytes | None = txn.get(key(repo, digest), db=self.db["manifest_bytes"])
        return body

    def put_manifest(self, txn: Txn, repo: str, digest: str, record: Record, body: bytes) -> None:
        mkey = key(repo, digest)
        self.put(txn, "manifests", mkey, record)
        txn.put(mkey, body, db=self.db["manifest_bytes"])

    def delete_manifest(self, txn: Txn, repo: str, digest: str) -> None:
        mkey = key(repo, digest)
        self.delete(txn, "manifests", mkey)
        self.delete(txn, "manifest_bytes", mkey)

    def manifests(self, txn: Txn, repo: str) -> Iterator[Record]:
        """The records of every manifest of ``repo``."""
        for _, value in self.scan(txn, "manifests", key(repo, "")):
            yield unpack(value)

    def manifest_items(self, txn: Txn, repo: str) -> Iterator[tuple[str, Record]]:
        """(digest, record) of every manifest of ``repo``."""
        prefix = key(repo, "")
        for k, value in self.scan(txn, "manifests", prefix):
            yield k[len(prefix):].decode(), unpack(value)

    def manifest_digests(self, txn: Txn, repo: str) -> list[str]:
        prefix = key(repo, "")
        return [bytes(k)[len(prefix):].decode() for k, _ in self.scan(txn, "manifests", prefix)]

    def all_manifest_bytes(self, txn: Txn) -> Iterator[tuple[str, str, bytes]]:
        """(repo, digest, stored bytes) of every manifest on the shard."""
        for k, body in self.scan(txn, "manifest_bytes", b""):
            repo, digest = k.decode().split("\0", 1)
            yield repo, digest, bytes(body)

    # -- referrers -------------------------------------------------------------------------
    def put_referrer(self, txn: Txn, repo: str, subject: str, digest: str, descriptor: Record) -> None:
        self.put(txn, "referrers", key(repo, subject, digest), descriptor)

    def delete_referrer(self, txn: Txn, repo: str, subject: str, digest: str) -> None:
        self.delete(txn, "referrers", key(repo, subject, digest))

    def referrers(self, txn: Txn, repo: str, subject: str) -> Iterator[Record]:
        """Descriptors of the manifests of ``repo`` whose subject is ``subject``."""
        for _, value in self.scan(txn, "referrers", key(repo, subject, "")):
            yield unpack(value)

    # -- links and blobs -------------------------------------------------------------------
    def link_of(self, txn: Txn, repo: str, digest: str) -> Record | None:
        link: Record | None = self.get(txn, "links", key(repo, digest))
        return link

    def is_linked(self, txn: Txn, repo: str, digest: str) -> bool:
        return txn.get(key(repo, digest), db=self.db["links"]) is not None

    def links(self, txn: Txn, repo: str) -> Iterator[tuple[str, Record]]:
        """(digest, link record) of every blob linked into ``repo``."""
        prefix = key(repo, "")
        for k, v in self.scan(txn, "links", prefix):
            yield k[len(prefix):].decode(), unpack(v)

    def link(self, txn: Txn, repo: str, digest: str, size: int) -> None:
        """Link blob ``digest`` into ``repo`` (counting the link on the blob); creates the repo."""
        lkey = key(repo, digest)
        if txn.get(lkey, db=self.db["links"]) is not None:
            return
        self.put(txn, "links", lkey, {"size": size, "at": time.time()})
        bkey = digest.encode()
        blob = self.get(txn, "blobs", bkey)
        if blob is None:
            blob = {"size": size, "links": 0}
            self._count_blobs(txn, 1, size)
        blob["links"] += 1
        self.put(txn, "blobs", bkey, blob)
        self.ensure_repo(txn, repo)

    def unlink(self, txn: Txn, repo: str, digest: str) -> bool:
        """Remove ``digest`` from ``repo``; True when no repository links it any more (its file may go)."""
        if not self.delete(txn, "links", key(repo, digest)):
            raise RegistryError(ErrorCode.BLOB_UNKNOWN, detail={"digest": digest})
        bkey = digest.encode()
        blob = self.get(txn, "blobs", bkey)
        if blob is None:
            return False
        blob["links"] -= 1
        if blob["links"] > 0:
            self.put(txn, "blobs", bkey, blob)
            return False
        self._count_blobs(txn, -1, -blob["size"])
        self.delete(txn, "blobs", bkey)
        return True

    def blob(self, txn: Txn, digest: str) -> Record | None:
        record: Record | None = self.get(txn, "blobs", digest.encode())
        return record

    def blob_exists(self, txn: Txn, digest: str) -> bool:
        return txn.get(digest.encode(), db=self.db["blobs"]) is not None

    def blobs(self, txn: Txn) -> Iterator[tuple[str, int]]:
        """(digest, size) of every blob on the shard."""
        for k, v in self.scan(txn, "blobs", b""):
            yield k.decode(), unpack(v)["size"]

    def blob_usage(self, txn: Txn) -> tuple[int, int]:
        """(count, bytes) of the shard's blobs, from the counters: O(1)."""
        counters = self.get(txn, "system", _BLOB_COUNTERS) or self.scan_blob_usage(txn)
        return counters["count"], counters["bytes"]

    def scan_blob_usage(self, txn: Txn) -> Record:
        """The blob counters computed from every blob record (the migration; tests compare with it)."""
        count = size = 0
        for _, blob_size in self.blobs(txn):
            count, size = count + 1, size + blob_size
        return {"count": count, "bytes": size}

    def _count_blobs(self, txn: Txn, count: int, size: int) -> None:
        """Add to the blob counters, in the transaction that adds or removes the blob record.

        Called before that record is written or deleted, so that a store without counters
        (never after :meth:`_check_counters`) would still be counted right."""
        counters = self.get(txn, "system", _BLOB_COUNTERS) or self.scan_blob_usage(txn)
        self.put(txn, "system", _BLOB_COUNTERS, {"count": counters["count"] + count,
                                                  "bytes": counters["bytes"] + size})

    def _check_counters(self) -> None:
        """On open: compute the blob counters once if this store has none (or stale ones)."""

        def stale(txn: Txn) -> bool:
            counters = self.get(txn, "system", _BLOB_COUNTERS)
            return counters is None or counters["count"] != self.entries(txn, "blobs")

        def recount(txn: Txn) -> None:
            if stale(txn):
                self.put(txn, "system", _BLOB_COUNTERS, self.scan_blob_usage(txn))

        if self.read(stale):
            self.write(recount)

    # -- uploads ---------------------------------------------------------------------------
    def get_upload(self, txn: Txn, uuid: str) -> Record | None:
        record: Record | None = self.get(txn, "uploads", uuid.encode())
        return record

    def put_upload(self, txn: Txn, uuid: str, record: Record) -> None:
        self.put(txn, "uploads", uuid.encode(), record)

    def delete_upload(self, txn: Txn, uuid: str) -> bool:
        return self.delete(txn, "uploads", uuid.encode())

    def uploads(self, txn: Txn) -> Iterator[tuple[str, Record]]:
        """(uuid, record) of every upload in progress."""
        for k, v in self.scan(txn, "uploads", b""):
            yield k.decode(), unpack(v)

    # -- system records --------------------------------------------------------------------
    def system_get(self, txn: Txn, name: bytes) -> Any:
        return self.get(txn, "system", name)

    def system_put(self, txn: Txn, name: bytes, value: Any) -> None:
        self.put(txn, "system", name, value)

    def system_delete(self, txn: Txn, name: bytes) -> bool:
        return self.delete(txn, "system", name)

    def system_names(self, txn: Txn, prefix: bytes) -> Iterator[bytes]:
        """The system record names starting with ``prefix``, in order."""
        for k, _ in self.scan(txn, "system", prefix):
            yield bytes(k)

    def check_cluster(self, shard_index: int, shard_count: int) -> None:
        """Record (first start) or verify this shard's place in the cluster.

        The shard count is no longer fixed (issue 12: the map has an epoch and changes by resizing),
        so only the index is checked. Only the home (shard 0) of a brand-new cluster takes its map
        from the config, ``{epoch 1, stable, shard_count}``; any other new shard records epoch 0 and
        gets its map from a gateway (the home's) or a resize: a shard never adopts a count from its
        own config, which may already name shards a resize has not brought in yet."""

        def check(txn: Txn) -> None:
            recorded = self.system_get(txn, b"cluster")
            if recorded is None:
                view: Record = {"index": shard_index, "created": time.time()}
                if shard_index == 0:
                    view.update(epoch=1, shards=shard_count, **{"from": shard_count})
                else:
                    view.update(epoch=0, shards=0, **{"from": 0})
                self.system_put(txn, b"cluster", view)
                self.system_put(txn, b"schema", SCHEMA_VERSION)
                return
            if recorded["index"] != shard_index:
                raise ClusterSizeMismatch(
                    f"this shard's data was created as shard {recorded['index']}, but it was started as shard "
                    f"{shard_index}: start it with --index {recorded['index']} (names are routed by index)."
                )

        self.write(check)

    # -- event outbox (shard/events) -------------------------------------------------------
    def outbox_append(self, txn: Txn, record: Record) -> int:
        """Append an event in the caller's transaction; returns its sequence number (from 1)."""
        seq = int(self.system_get(txn, _OUTBOX_SEQ) or 0) + 1
        self.system_put(txn, _OUTBOX_SEQ, seq)
        self.put(txn, "outbox", seq.to_bytes(8, "big"), record)
        return seq

    def outbox_last(self, txn: Txn) -> int:
        return int(self.system_get(txn, _OUTBOX_SEQ) or 0)

    def outbox_after(self, txn: Txn, seq: int, n: int) -> list[tuple[int, Record]]:
        """Up to ``n`` (seq, event) pairs after ``seq``, in order."""
        out: list[tuple[int, Record]] = []
        cursor = txn.cursor(db=self.db["outbox"])
        if not cursor.set_range((seq + 1).to_bytes(8, "big")):
            return out
        for k, v in cursor.iternext():
            out.append((int.from_bytes(k, "big"), unpack(v)))
            if len(out) >= n:
                break
        return out

    def outbox_first(self, txn: Txn) -> int:
        """The oldest sequence number still held (0: empty)."""
        cursor = txn.cursor(db=self.db["outbox"])
        return int.from_bytes(cursor.key(), "big") if cursor.first() else 0

    def outbox_count(self, txn: Txn) -> int:
        return self.entries(txn, "outbox")

    def outbox_drop_through(self, txn: Txn, seq: int) -> int:
        """Delete the events up to and including ``seq``; returns how many were deleted."""
        cursor = txn.cursor(db=self.db["outbox"])
        dropped = 0
        while cursor.first() and int.from_bytes(cursor.key(), "big") <= seq:
            cursor.delete()
            dropped += 1
        return dropped

    def outbox_cursor(self, txn: Txn, sink: str) -> int | None:
        """The last sequence number ``sink`` has been sent (None: a sink never seen)."""
        value = self.system_get(txn, _OUTBOX_CURSOR + sink.encode())
        return None if value is None else int(value)

    def set_outbox_cursor(self, txn: Txn, sink: str, seq: int) -> None:
        self.system_put(txn, _OUTBOX_CURSOR + sink.encode(), seq)

    # -- the cluster map and moves (issue 12) -------------------------------------------------
    def view(self, txn: Txn) -> Record | None:
        """The shard's cluster map record (see the layout above)."""
        record: Record | None = self.system_get(txn, b"cluster")
        return record

    def put_view(self, txn: Txn, record: Record) -> None:
        self.system_put(txn, b"cluster", record)

    def move_of(self, txn: Txn, kind: str, name: str) -> Record | None:
        record: Record | None = self.get(txn, "moves", key(kind, name))
        return record

    def put_move(self, txn: Txn, kind: str, name: str, record: Record) -> None:
        self.put(txn, "moves", key(kind, name), record)

    def delete_move(self, txn: Txn, kind: str, name: str) -> bool:
        return self.delete(txn, "moves", key(kind, name))

    def moves(self, txn: Txn) -> Iterator[tuple[str, str, Record]]:
        """(kind, name, record) of every move record."""
        for k, v in self.scan(txn, "moves", b""):
            kind, name = k.decode().split("\0", 1)
            yield kind, name, unpack(v)

    def has_moves(self, txn: Txn) -> bool:
        return self.entries(txn, "moves") > 0

    def repo_keys(self, txn: Txn, repo: str) -> dict[str, list[bytes]]:
        """Every key of ``repo`` in each per-repository database (for a purge)."""
        prefix = key(repo, "")
        return {db: [bytes(k) for k, _ in self.scan(txn, db, prefix)]
                for db in ("tags", "manifests", "manifest_bytes", "links", "referrers")}

    def delete_repo(self, txn: Txn, repo: str) -> list[str]:
        """Remove a repository that moved away: its records, links and uploads; returns the
        digests no repository links any more (their files may go)."""
        unused = [digest for digest, _ in list(self.links(txn, repo)) if self.unlink(txn, repo, digest)]
        for db, keys in self.repo_keys(txn, repo).items():
            if db == "links":
                continue
            for k in keys:
                self.delete(txn, db, k)
        for uuid, record in list(self.uploads(txn)):
            if record.get("repo") == repo:
                self.delete_upload(txn, uuid)
        self.delete(txn, "repos", repo.encode())
        return unused
