"""``search.page``: a page of a sorted repository listing, walked from the ordered index (issue 17).

The shard walks its ``order`` index (:mod:`shard.searchstore`) in the order asked, from the
gateway's cursor, and keeps what the caller may read (:func:`common.readfilter.may_read`, the
gateway's own rules), what it owns (a resize), what contains the query and passes the filter,
until ``limit`` items or :data:`MAX_SCAN` entries: the work is bounded by the page, not by the
number of repositories. A query text of three bytes or more is looked up by its rarest trigram
(:mod:`shard.name_grams`): its few candidates are ranked or sorted directly; RELEVANCE with a
shorter or very common text ranks every name containing it (a walk of names only), as does a
``total`` count that cannot be the kept count (a filter other than Os/Arch, a query, partial
access): see docs/architecture.md, "Search listings".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from common import messages
from common.errors import ErrorCode, RegistryError
from common.protocol import Answer, Frames
from common.readfilter import Reader, name_prefixes
from common.searchorder import keys_pass, rank
from shard.lmdbstore import Txn, unpack
from shard.ops.registry import handles
from shard.search_meta import SearchMeta
from shard.searchstore import ORDER_PREFIX, order_keys, order_name

#: Index entries one request reads at most before answering with a cursor to continue.
MAX_SCAN = 2000
MAX_LIMIT = 1000
#: The same two for a ``skim`` (names and keys only: the gateway skipping a deep offset).
MAX_SKIM_SCAN = 20000
MAX_SKIM = 10000
#: A text's candidates are the names holding its rarest trigram when they are at most this share of
#: the shard's names (:mod:`shard.name_grams`); else every name is walked.
GRAM_SHARE = 0.25
ORDERS = frozenset(ORDER_PREFIX) | {"RELEVANCE"}
Rec = dict[str, Any]


class _Source:
    """The index, or — while it is being built — the same keys computed from the repositories."""

    def __init__(self, search: SearchMeta, txn: Txn, stxn: Txn, counter: list[int]) -> None:
        self.search, self.txn, self.stxn, self.counter = search, txn, stxn, counter
        self.computed: dict[str, Rec] | None = None
        if not search.index_complete(stxn):
            self.computed = {}
            for name in search.meta.repo_names(txn):
                rec = search.index_record(txn, stxn, name)
                if rec is not None:
                    self.computed[name] = rec

    def walk(self, order: str, after: bytes | None, names: list[str] | None = None) -> Iterator[bytes]:
        """``order`` keys after ``after`` (``names``: of the names starting with one of them only)."""
        if self.computed is None:
            yield from self.search.store.index_walk(self.stxn, order, after, self.counter, names)
            return
        prefix = ORDER_PREFIX[order]
        keys = sorted(k for name, rec in self.computed.items() for k in order_keys(name, rec) if k[:1] == prefix)
        if order == "ALPHABETIC_DSC":
            keys.reverse()
        for k in keys:
            if after is None or (k < after if order == "ALPHABETIC_DSC" else k > after):
                self.counter[0] += 1
                yield k

    def entries(self, prefixes: list[str] | None = None) -> Iterator[tuple[str, Any]]:
        """(name, entry) of every repository by name (``prefixes``: of those starting with one of
        them, :func:`~common.readfilter.name_prefixes`); the entry raw (unpack it with :meth:`value`).
        Each one read is counted."""
        if self.computed is not None:
            found: Iterator[tuple[str, Any]] = iter(sorted(self.computed.items()))
        elif prefixes is None:
            found = self.search.store.index_names(self.stxn)
        else:
            found = (e for p in prefixes for e in self.search.store.index_names(self.stxn, p))
        for entry in found:
            self.counter[0] += 1
            yield entry

    def text_names(self, needle: str, most: int | None = None) -> list[str] | None:
        """The names that may contain ``needle``: those holding its rarest trigram (by name); None
        when the index cannot tell (a text shorter than a trigram, or the index being built) or
        more than :data:`GRAM_SHARE` of the names (or ``most``) hold that trigram (a walk of every
        name is then cheaper: one sequential pass instead of a lookup per name)."""
        if self.computed is not None:
            return None
        store = self.search.store
        bound = int(store.index_count(self.stxn) * GRAM_SHARE)
        found = store.gram_names(self.stxn, needle, self.counter, most=bound if most is None else min(bound, most))
        return None if found is None else list(found)

    def entries_of(self, names: list[str]) -> Iterator[tuple[str, Any]]:
        """(name, raw entry) of each of ``names`` that has an entry; each one read is counted."""
        for name in names:
            self.counter[0] += 1
            raw = self.search.store.index_raw(self.stxn, name)
            if raw is not None:
                yield name, raw

    def value(self, raw: Any) -> Rec:
        rec: Rec = raw if self.computed is not None else unpack(raw)
        return rec

    def rec(self, name: str) -> Rec | None:
        if self.computed is not None:
            return self.computed.get(name)
        self.counter[0] += 1
        return self.search.store.index_get(self.stxn, name)


class SearchWalk:
    def __init__(self, search: SearchMeta) -> None:
        self.search = search
        #: Whether the kept count is this shard's listing count (no names left by a resize).
        self.lists_all: Callable[[], bool] = lambda: True

    @handles(messages.SEARCH_PAGE)
    async def op_page(self, args: messages.SearchPageRequest, frames: Frames) -> Answer[messages.SearchPageReply]:
        if args["order"] not in ORDERS:
            raise RegistryError(ErrorCode.BAD_REQUEST, f"unknown order {args['order']!r}")
        await self.search.settled()  # entries a delete or a moved tag asked to rewrite
        if self.search.pending:  # download counts move the index: write them first (one txn)
            self.search.flush()

        def run(txn: Txn) -> messages.SearchPageReply:
            with self.search.store.begin_read() as stxn:
                return self.page(txn, stxn, args)

        return self.search.meta.read(run), []

    def page(self, txn: Txn, stxn: Txn, args: messages.SearchPageRequest) -> messages.SearchPageReply:
        search, user = self.search, args.get("user")
        counter = [0]
        source = _Source(search, txn, stxn, counter)
        reader, owns = Reader(args["access"]), search.owns
        readable = name_prefixes(args["access"])  # the index ranges a readable name can be in
        text = (args.get("query") or "").strip()
        needle = text.lower()
        flt = {k: v for k, v in (args.get("filter") or {}).items() if v not in (None, [], False) or
               (k in ("IsStarred", "IsBookmarked") and v is False)}
        skim = bool(args.get("skim"))
        limit = max(1, min(int(args["limit"]), MAX_SKIM if skim else MAX_LIMIT))
        max_scan = MAX_SKIM_SCAN if skim else MAX_SCAN
        after = args.get("after")

        everyone, all_owned = reader.everything, self.lists_all()

        def listed(name: str) -> bool:
            return ((not needle or needle in name.lower()) and (everyone or reader(name))
                    and (all_owned or owns(name)))

        def item(k: bytes, name: str, rec: Rec, marks: bool = True) -> dict[str, Any] | None:
            keys: dict[str, Any] = {"Name": name, "LastUpdated": rec["l"], "_updated": rec["u"],
                                    "DownloadCount": rec["d"], "StarCount": rec["s"], "Platforms": rec["p"],
                                    "Rank": rank(name, text) if text else 0, "IsStarred": False,
                                    "IsBookmarked": False, "_k": k}
            if user and (marks or "IsStarred" in flt or "IsBookmarked" in flt):
                keys["IsStarred"] = search.store.marked(stxn, "stars", name, user)
                keys["IsBookmarked"] = search.store.marked(stxn, "bookmarks", name, user)
            signed = self._signed(txn, stxn, name) if flt.get("HasToBeSigned") else None
            return keys if keys_pass(keys, flt, signed) else None

        items: list[dict[str, Any]] = []

        def take(k: bytes, name: str) -> bool:
            """Add ``name`` to the page if its entry passes; True once the page is full. A skim
            reads the entry only for a filter, and answers the name and key."""
            if skim and not flt:
                items.append({"Name": name, "_k": k})
                return len(items) >= limit
            rec = source.rec(name)
            found = item(k, name, rec, marks=not skim) if rec is not None else None
            if found is not None:
                items.append({"Name": name, "_k": k} if skim else found)
            return len(items) >= limit
        nxt: bytes | None = None
        total: int | None = None
        platforms: tuple[int, int] | None = None  # (repositories, images) passing an Os/Arch filter alone
        if everyone and all_owned and source.computed is None and not needle and flt and set(flt) <= {"Os", "Arch"}:
            platforms = self._platform_count(stxn, source, flt)
            total = platforms[1] if args.get("images") else platforms[0]
        # None: the names are walked. Ranking and counting need every candidate; a page in another
        # order uses them only when it can sort them (at most MAX_SCAN), else it walks the order.
        every = args["order"] == "RELEVANCE" or bool(args.get("count"))
        candidates = source.text_names(needle, None if every else MAX_SCAN) if needle else None
        if platforms is not None and not platforms[0]:
            pass  # no repository of this shard passes the filter: nothing to walk
        elif args["order"] == "RELEVANCE" and needle:
            names = candidates if candidates is not None else (name for name, _ in source.entries(readable))
            ranked = sorted((b"r" + rank(name, text).to_bytes(4, "big") + name.encode(), name)
                            for name in names if listed(name))
            if not flt and not args.get("images"):
                total = len(ranked)
            for k, name in ranked:
                if after is not None and k <= after:
                    continue
                if take(k, name):
                    nxt = k
                    break
        elif candidates is not None and len(candidates) <= MAX_SCAN:  # few names hold the text: sort them
            order, backwards = args["order"], args["order"] == "ALPHABETIC_DSC"
            keyed = sorted(((found, name) for name in candidates
                            if listed(name) and (found := self._order_key(source, order, name)) is not None),
                           reverse=backwards)
            for k, name in keyed:
                if after is not None and (k >= after if backwards else k <= after):
                    continue
                if take(k, name):
                    nxt = k
                    break
        else:
            order = "ALPHABETIC_ASC" if args["order"] == "RELEVANCE" else args["order"]
            start = counter[0]
            for k in source.walk(order, after, readable):
                name = order_name(k)
                if listed(name) and take(k, name):
                    nxt = k
                    break
                if counter[0] - start >= max_scan:
                    nxt = k
                    break
        if args.get("count") and total is None:
            entries = source.entries_of(candidates) if candidates is not None else source.entries(readable)
            total = self._count(source, stxn, listed, item, bool(needle or flt or not everyone), bool(flt),
                                bool(args.get("images")), entries)
        reply: messages.SearchPageReply = {"items": items, "next": nxt, "scanned": counter[0]}
        if total is not None and args.get("count"):
            reply["total"] = total
        return reply

    def _count(self, source: _Source, stxn: Txn, listed: Callable[[str], bool],
               item: Callable[..., dict[str, Any] | None], narrowed: bool, filtered: bool, images: bool,
               entries: Iterator[tuple[str, Any]]) -> int:
        """How many repositories (``images``: their images) on this shard the listing has: the kept
        count when nothing narrows it, else one pass over ``entries`` (by name: those in the ranges
        the caller may read in, or the names holding the text's rarest trigram; decoded only when
        a filter or the image count needs them)."""
        if not narrowed and source.computed is None and self.lists_all():
            store = self.search.store
            return store.index_images(stxn) if images else store.index_count(stxn)
        total = 0
        for name, raw in entries:
            if not listed(name):
                continue
            if not filtered and not images:
                total += 1
                continue
            rec = source.value(raw)
            if not filtered or item(b"", name, rec, marks=False) is not None:
                total += rec.get("n", 0) if images else 1
        return total

    @staticmethod
    def _order_key(source: _Source, order: str, name: str) -> bytes | None:
        """``name``'s key in ``order`` (None: it has no entry)."""
        if order in ("ALPHABETIC_ASC", "ALPHABETIC_DSC"):
            return b"a" + name.encode()
        rec = source.rec(name)
        prefix = ORDER_PREFIX[order]
        return None if rec is None else next(k for k in order_keys(name, rec) if k[:1] == prefix)

    @staticmethod
    def _platform_count(stxn: Txn, source: _Source, flt: dict[str, Any]) -> tuple[int, int]:
        """(repositories, images) passing an Os/Arch filter, from the kept counts by platform
        signature: O(signatures), not O(repositories)."""
        repos = images = 0
        for oses, arches, sig_repos, sig_images in source.search.store.platform_counts(stxn):
            source.counter[0] += 1
            platforms = [{"Os": os_} for os_ in oses] + [{"Arch": arch} for arch in arches]
            if keys_pass({"Platforms": platforms}, flt):
                repos, images = repos + sig_repos, images + sig_images
        return repos, images

    def _signed(self, txn: Txn, stxn: Txn, name: str) -> bool:
        """Whether the repository's newest image is signed (the full summary's NewestImage)."""
        images = self.search.repo_images(txn, stxn, name)
        newest = max(images, key=lambda i: i["_updated"], default=None)
        return bool(newest and newest.get("IsSigned"))
