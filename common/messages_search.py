"""The wire op of sorted search listings (issue 17): ``search.page``.

Re-exported by :mod:`common.messages` (which lists it in ``ALL``). A shard answers the first
``limit`` repositories of its ordered index (:mod:`shard.search_walk`) after ``after`` that the
caller may read (``access``: a :data:`common.readfilter.ReadFilter`) and that pass the query
and filter; the gateway merges the shards' pages (:mod:`gateway.extensions.search_merge`).
"""

# No ``from __future__ import annotations``: TypedDict must see NotRequired[...] at run time.
from typing import Any, NotRequired, TypedDict

from common.protocol import Op, Wire


class SearchPageRequest(TypedDict):
    #: zot's SortCriteria: RELEVANCE, UPDATE_TIME, ALPHABETIC_ASC, ALPHABETIC_DSC, DOWNLOADS, STARS.
    order: str
    #: At most this many items (the shard also stops after a bounded number of index entries).
    limit: int
    #: What the caller may read (common.readfilter).
    access: dict[str, Any]
    #: The caller (None: anonymous): IsStarred, IsBookmarked and their filters.
    user: str | None
    #: Continue after this order key (a previous reply's ``next``).
    after: NotRequired[bytes | None]
    #: Keep names containing it (case-insensitive); RELEVANCE ranks by it.
    query: NotRequired[str | None]
    #: zot's Filter: Os, Arch, HasToBeSigned, IsBookmarked, IsStarred.
    filter: NotRequired[dict[str, Any] | None]
    #: Also answer ``total``: how many repositories on this shard pass (first page only).
    count: NotRequired[bool]
    #: ``total`` counts their images instead (ImageList without a repository).
    images: NotRequired[bool]
    #: Items are only ``Name`` and ``_k`` (up to ``MAX_SKIM`` of them): the gateway skipping an offset.
    skim: NotRequired[bool]


class SearchPageReply(TypedDict):
    #: The listing keys of each repository (Name, LastUpdated, DownloadCount, StarCount,
    #: Platforms, IsStarred, IsBookmarked, Rank, _updated) and ``_k``, its order key (bytes:
    #: the gateway merges the shards' pages on it).
    items: list[dict[str, Any]]
    #: Where to continue (None: the shard has nothing more).
    next: bytes | None
    #: Index entries read for this answer (bounded; tests read it).
    scanned: int
    total: NotRequired[int]


SEARCH_PAGE = Wire(Op.SEARCH_PAGE, SearchPageRequest, SearchPageReply)
SEARCH_WIRES = (SEARCH_PAGE,)
