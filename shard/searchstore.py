"""The extensions' LMDB environment, ``<shard dir>/search``, and its key layout.

Kept beside the shard's main metadata; everything here can be lost without harming an image
(it is search data, user preferences and trust material). Only this module knows the keys::

    pushes     repo \\0 digest       -> {at, by}        first push of a manifest, and who pushed it
    tagtimes   repo \\0 tag          -> timestamp       when the tag last moved
    stats      repo \\0 digest       -> {downloads, last}
    stars      repo \\0 user         -> the user's name (b"1" in stores of before issue 17)
    bookmarks  repo \\0 user         -> the user's name (alike)
    umarks     mark \\0 user \\0 repo -> repo   the same marks by user (``StarredRepos`` reads a user's
                                            own), kept in every transaction that changes a mark
    trust      cosign \\0 sha256(key)             -> PEM public key
               notation \\0 type \\0 sha256(cert)  -> DER certificate

The ordered listing index (issue 17, :mod:`shard.search_index`), written in the same
transaction as the records it derives from (push times, download counts, stars) and, for a
change of the main store, by the hook that follows its commit::

    rkeys      repo                 -> {u: updated, l: LastUpdated, d: downloads, s: stars, p: platforms,
                                        n: images} of a repository with an image (none: no entry anywhere)
    order      "a" repo             -> b""      by name (ALPHABETIC_ASC; ALPHABETIC_DSC walks it backwards)
               "u" desc8(u) repo    -> b""      newest update first (UPDATE_TIME), then by name
               "d" desc8(d) repo    -> b""      most downloads first (DOWNLOADS), then by name
               "s" desc8(s) repo    -> b""      most stars first (STARS), then by name
    psigs      [oses, arches]       -> [repositories, images] with an entry of these platforms (the
                                       sorted lower-case Os and Arch sets of ``p``), kept alike:
                                       an Os/Arch filter's count sums the signatures it matches
    indexmeta  "count"              -> repositories with an entry (kept in the same transactions)
               "images"             -> the sum of their ``n`` (kept alike)
               "complete"           -> True once every repository was indexed (a build sets it last)
               "open"               -> set while a shard has the store open: found at start, the last
                                       run did not stop cleanly and the index is rebuilt
               CLOSED_KEY           -> the transaction of the last clean close: a store opened with a
                                       later one was written since by a version that does not keep
                                       the index as this one does (a rollback, or a version of
                                       before: none), and the index is rebuilt. The key names the
                                       index's format, so an older version's clean close (which
                                       writes its own key) is "written since" too

By text (``GlobalSearch``'s query: :mod:`shard.name_grams`), kept with the listing index alike::

    grams      trigram repo         -> b""     every lower-case three-byte piece of every indexed name
    gramcount  trigram              -> count   how many names hold it (the rarest is walked)

By digest (``ImageListForDigest``, ``Derived``/``BaseImageList``: :mod:`shard.digest_index`), kept
with the listing index (built with it, each repository's part rewritten with its entry)::

    digests    hex \\0 repo \\0 manifest -> b""   every digest a stored manifest names (its own, its
                                           config's, its layers', an index's children), by hex
    mdigests   repo \\0 manifest        -> [hex, ...] the same, by manifest (to remove them)
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from shard.lmdbstore import Txn, key, pack, unpack
from shard.name_grams import NameGrams

_DBS = ("pushes", "tagtimes", "stats", "stars", "bookmarks", "trust", "rkeys", "order", "indexmeta", "umarks",
        "digests", "mdigests", "psigs", "grams", "gramcount")
#: ``indexmeta`` key of the last clean close; a new format of the index (a new database kept with
#: it) takes a new key, so that a store last closed by another version is rebuilt.
CLOSED_KEY = b"closed_txn:grams"
#: The databases keyed by repository (they move with it in a resize).
_REPO_DBS = ("pushes", "tagtimes", "stats", "stars", "bookmarks")
#: A per-user mark on a repository.
Mark = Literal["stars", "bookmarks"]
MARKS: tuple[Mark, ...] = ("stars", "bookmarks")


# -- the ordered listing index (issue 17) ---------------------------------------------------
#: The index's key prefix of each order (ALPHABETIC_DSC walks "a" backwards).
ORDER_PREFIX = {"ALPHABETIC_ASC": b"a", "ALPHABETIC_DSC": b"a", "UPDATE_TIME": b"u", "DOWNLOADS": b"d",
                "STARS": b"s"}
_MAX64 = (1 << 64) - 1


def _desc_float(value: float) -> bytes:
    """8 bytes that sort the greater float first (IEEE 754 made byte-comparable, then inverted)."""
    n = int.from_bytes(struct.pack(">d", float(value) + 0.0), "big")
    n = (~n & _MAX64) if n >> 63 else (n | (1 << 63))
    return (_MAX64 - n).to_bytes(8, "big")


def _desc_int(value: int) -> bytes:
    return (_MAX64 - max(0, min(int(value), _MAX64))).to_bytes(8, "big")


def order_keys(repo: str, rec: dict[str, Any]) -> list[bytes]:
    """The ``order`` keys of one repository's index record."""
    name = repo.encode()
    return [b"a" + name, b"u" + _desc_float(rec["u"]) + name, b"d" + _desc_int(rec["d"]) + name,
            b"s" + _desc_int(rec["s"]) + name]


def platform_signature(rec: dict[str, Any]) -> bytes:
    """The ``psigs`` key of an entry: its platforms' Os and Arch values, each a sorted lower-case set."""
    platforms = rec.get("p") or []
    oses = sorted({(p.get("Os") or "").lower() for p in platforms})
    arches = sorted({(p.get("Arch") or "").lower() for p in platforms})
    return pack([oses, arches])


def order_name(k: bytes) -> str:
    """The repository of an ``order`` key."""
    return (k[1:] if k[:1] == b"a" else k[9:]).decode()


def _mark_user(suffix: bytes, value: bytes) -> str | None:
    """The user of a ``stars``/``bookmarks`` record: its value, or (older records, ``b"1"``) its key's
    part after the repository, unless that part was shortened (:func:`~shard.lmdbstore.key`)."""
    if value != b"1":
        return value.decode()
    return None if suffix.startswith(b"\xff") else suffix.decode()


class ListingIndex(NameGrams):
    """Accessors of ``rkeys``, ``order`` and ``indexmeta`` (the base of :class:`SearchStore`)."""

    def index_get(self, txn: Txn, repo: str) -> dict[str, Any] | None:
        record: dict[str, Any] | None = self.get(txn, "rkeys", repo.encode())
        return record

    def index_put(self, txn: Txn, repo: str, rec: dict[str, Any] | None) -> bool:
        """Make ``repo``'s entry ``rec`` (None: no image, no entry); True when it changed."""
        old = self.index_get(txn, repo)
        if old == rec:
            return False
        order = self.db["order"]
        if old is not None:
            for k in order_keys(repo, old):
                txn.delete(k, db=order)
        if rec is None:
            txn.delete(repo.encode(), db=self.db["rkeys"])
        else:
            self.put(txn, "rkeys", repo.encode(), rec)
            for k in order_keys(repo, rec):
                txn.put(k, b"", db=order)
        before = (platform_signature(old), old.get("n", 0)) if old is not None else None
        after = (platform_signature(rec), rec.get("n", 0)) if rec is not None else None
        if before != after:  # most rewrites (a push's time, a star) leave the platform counts alone
            if before is not None:
                self._add_signature(txn, before[0], -1, -before[1])
            if after is not None:
                self._add_signature(txn, after[0], 1, after[1])
        if (old is None) != (rec is None):
            self.put(txn, "indexmeta", b"count", self.index_count(txn) + (1 if old is None else -1))
            (self.grams_add if old is None else self.grams_drop)(txn, repo)
        images = (rec or {}).get("n", 0) - (old or {}).get("n", 0)
        if images:
            self.put(txn, "indexmeta", b"images", self.index_images(txn) + images)
        return True

    def _add_signature(self, txn: Txn, sig: bytes, repos: int, images: int) -> None:
        counts = self.get(txn, "psigs", sig) or [0, 0]
        counts = [counts[0] + repos, counts[1] + images]
        if counts[0] > 0:
            self.put(txn, "psigs", sig, counts)
        else:
            txn.delete(sig, db=self.db["psigs"])

    def platform_counts(self, txn: Txn) -> Iterator[tuple[list[str], list[str], int, int]]:
        """(oses, arches, repositories, images) of every platform signature with an entry."""
        for k, v in self.scan(txn, "psigs", b""):
            (oses, arches), (repos, images) = unpack(bytes(k)), unpack(v)
            yield oses, arches, repos, images

    def index_raw(self, txn: Txn, repo: str) -> Any:
        """``repo``'s entry undecoded (None: no entry)."""
        return txn.get(repo.encode(), db=self.db["rkeys"])

    def index_add_downloads(self, txn: Txn, repo: str, delta: int) -> None:
        """Pulls counted: the entry's downloads and its one ``"d"`` key move (a delete and a put)."""
        rec = self.index_get(txn, repo)
        if rec is None:
            return
        order, name = self.db["order"], repo.encode()
        txn.delete(b"d" + _desc_int(rec["d"]) + name, db=order)
        rec["d"] += delta
        txn.put(b"d" + _desc_int(rec["d"]) + name, b"", db=order)
        self.put(txn, "rkeys", name, rec)

    def index_count(self, txn: Txn) -> int:
        """Repositories with an entry (kept, O(1))."""
        return int(self.get(txn, "indexmeta", b"count") or 0)

    def index_images(self, txn: Txn) -> int:
        """Images of the repositories with an entry (kept, O(1))."""
        return int(self.get(txn, "indexmeta", b"images") or 0)

    def index_flag(self, txn: Txn, name: str) -> bool:
        return bool(self.get(txn, "indexmeta", name.encode()))

    def set_index_flag(self, txn: Txn, name: str, value: bool) -> None:
        if value:
            self.put(txn, "indexmeta", name.encode(), True)
        else:
            txn.delete(name.encode(), db=self.db["indexmeta"])

    def index_clear(self, txn: Txn) -> None:
        """Drop every entry (a rebuild starts here)."""
        for db in ("rkeys", "order", "digests", "mdigests", "psigs", "grams", "gramcount"):
            txn.drop(self.db[db], delete=False)
        self.put(txn, "indexmeta", b"count", 0)
        self.put(txn, "indexmeta", b"images", 0)

    def index_names(self, txn: Txn, prefix: str = "") -> Iterator[tuple[str, bytes]]:
        """(repository, raw entry) of every entry whose name starts with ``prefix``, by name: one
        sequential pass (counts)."""
        for k, v in self.scan(txn, "rkeys", prefix.encode()):
            yield bytes(k).decode(), v

    def index_walk(self, txn: Txn, order: str, after: bytes | None, counter: list[int],
                   names: list[str] | None = None) -> Iterator[bytes]:
        """``order`` keys in the listing's order, after ``after``; ``counter[0]`` counts the reads.
        ``names`` (by name only, sorted, none a prefix of another): walk just the names starting
        with one of them, range after range (:func:`~common.readfilter.name_prefixes`)."""
        prefix = ORDER_PREFIX[order]
        if names is not None and prefix == b"a":
            ranges = [b"a" + n.encode() for n in names]
            for lo in reversed(ranges) if order == "ALPHABETIC_DSC" else ranges:
                yield from self._walk_range(txn, order, lo, after, counter)
            return
        yield from self._walk_range(txn, order, prefix, after, counter)

    def _walk_range(self, txn: Txn, order: str, prefix: bytes, after: bytes | None,
                    counter: list[int]) -> Iterator[bytes]:
        cursor = txn.cursor(db=self.db["order"])
        if order == "ALPHABETIC_DSC":  # backwards from just before ``after`` (or the end of the range)
            end = _after_prefix(prefix)
            found = cursor.set_range(end if after is None else min(after, end))
            found = cursor.prev() if found else cursor.last()
            while found:
                k = cursor.key()
                if not k.startswith(prefix):
                    return
                counter[0] += 1
                yield bytes(k)
                found = cursor.prev()
            return
        start = prefix if after is None else max(prefix, after + b"\0")
        if not cursor.set_range(start):
            return
        for k in cursor.iternext(values=False):
            if not k.startswith(prefix):
                return
            counter[0] += 1
            yield bytes(k)


def _after_prefix(prefix: bytes) -> bytes:
    """The least key greater than every key starting with ``prefix`` (an order prefix: a letter first)."""
    stripped = prefix.rstrip(b"\xff")
    return stripped[:-1] + bytes([stripped[-1] + 1])


class DigestIndex(ListingIndex):
    """Accessors of ``digests`` and ``mdigests``."""

    def digest_add(self, txn: Txn, repo: str, manifest: str, hexes: Iterable[str]) -> None:
        """Index what ``manifest`` of ``repo`` names (once: a manifest never changes)."""
        mkey = key(repo, manifest)
        if txn.get(mkey, db=self.db["mdigests"]) is not None:
            return
        named = sorted(set(hexes))
        self.put(txn, "mdigests", mkey, named)
        for hexdigest in named:
            txn.put(key(hexdigest, repo, manifest), b"", db=self.db["digests"])

    def digest_drop(self, txn: Txn, repo: str, manifest: str) -> None:
        mkey = key(repo, manifest)
        for hexdigest in self.get(txn, "mdigests", mkey) or []:
            txn.delete(key(hexdigest, repo, manifest), db=self.db["digests"])
        txn.delete(mkey, db=self.db["mdigests"])

    def digest_manifests(self, txn: Txn, repo: str) -> list[str]:
        """The manifests of ``repo`` indexed."""
        prefix = key(repo, "")
        return [bytes(k)[len(prefix):].decode() for k, _ in self.scan(txn, "mdigests", prefix)]

    def digest_repos(self, txn: Txn, hex_prefix: str) -> set[str]:
        """Repositories with a manifest naming a digest whose hex part starts with ``hex_prefix``:
        O(such digests)."""
        return {bytes(k).split(b"\0")[1].decode() for k, _ in self.scan(txn, "digests", hex_prefix.encode())}


class SearchStore(DigestIndex):
    def __init__(self, path: Path, *, sync: bool = True) -> None:
        super().__init__(path, dbs=_DBS, sync=sync, map_size=64 << 20)
        #: The last transaction when opened (O(1)): compared with ``CLOSED_KEY`` by the index's build.
        self.opened_txn: int = self.env.info()["last_txnid"]

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
            self._user_mark(txn, mark, repo, user, False)
            return False
        txn.put(k, user.encode(), db=self.db[mark])
        self._user_mark(txn, mark, repo, user, True)
        return True

    def marked_repos(self, txn: Txn, mark: Mark, user: str) -> list[str]:
        """The repositories ``user`` marked, by name: O(their number) (``user_marks_built`` first)."""
        return [bytes(v).decode() for _, v in self.scan(txn, "umarks", key(mark, user, ""))]

    def user_marks_built(self, txn: Txn) -> bool:
        """Whether ``umarks`` holds every mark (a store of before issue 17 gets it at start: ``warm``)."""
        return self.index_flag(txn, "umarks")

    def build_user_marks(self, txn: Txn) -> None:
        """Write ``umarks`` from every mark: once, O(marks)."""
        txn.drop(self.db["umarks"], delete=False)
        for mark in MARKS:
            for k, v in self.scan(txn, mark, b""):
                repo, _, suffix = bytes(k).partition(b"\0")
                self._user_mark(txn, mark, repo.decode(), _mark_user(suffix, bytes(v)), True)
        self.set_index_flag(txn, "umarks", True)

    def _user_mark(self, txn: Txn, mark: Mark, repo: str, user: str | None, on: bool) -> None:
        if user is None:  # an old record under a shortened key: its user is unknown (never in practice)
            return
        k = key(mark, user, repo)
        if on:
            txn.put(k, repo.encode(), db=self.db["umarks"])
        else:
            txn.delete(k, db=self.db["umarks"])

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
            for k, v in list(self.scan(txn, db, prefix)):
                suffix = bytes(k)[len(prefix):]
                if suffix.decode("latin-1") not in wanted:
                    txn.delete(k, db=self.db[db])
                    if db in MARKS:
                        self._user_mark(txn, db, repo, _mark_user(suffix, bytes(v)), False)
            for suffix_text, value in wanted.items():
                txn.put(prefix + suffix_text.encode("latin-1"), bytes(value), db=self.db[db])
                if db in MARKS:
                    user = _mark_user(suffix_text.encode("latin-1"), bytes(value))
                    self._user_mark(txn, db, repo, user, True)

    def delete_repo_records(self, txn: Txn, repo: str) -> None:
        """Every record of ``repo``, its listing index entry and digests included."""
        self.put_repo_records(txn, repo, {})
        self.index_put(txn, repo, None)
        for manifest in self.digest_manifests(txn, repo):
            self.digest_drop(txn, repo, manifest)

    # -- trust material ------------------------------------------------------------------
    def put_cosign_key(self, txn: Txn, pem: bytes) -> None:
        txn.put(key("cosign", hashlib.sha256(pem.strip()).hexdigest()), pem, db=self.db["trust"])

    def put_notation_cert(self, txn: Txn, store_type: str, der: bytes) -> None:
        txn.put(key("notation", store_type, hashlib.sha256(der).hexdigest()), der, db=self.db["trust"])

    def trust_entries(self, txn: Txn) -> list[tuple[bytes, str, bytes]]:
        """(key, kind, value) of every trust entry, in key order; kind is ``cosign`` or ``notation``."""
        return [(bytes(k), k.split(b"\0", 1)[0].decode(), bytes(v)) for k, v in self.scan(txn, "trust", b"")]
