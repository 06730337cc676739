"""A sorted page of repositories merged from the shards' ordered indexes (issue 17).

Every shard answers ``search.page`` (:mod:`shard.search_walk`): the first repositories of its
index in the order asked, after a cursor, that the caller may read and that pass the query and
filter. The gateway asks all shards at once for ``offset + limit`` each, merges their sorted
pages k-way on the order keys, and asks a shard for more (all such shards at once) only when its
page ran out before the merged page is full. So a page of 10 reads about 10 × shards index
entries, whatever the number of repositories. ``TotalCount`` is the sum of the shards' counts
(their kept counts when the caller reads everything and nothing narrows the listing).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, cast

from common import messages
from common.errors import ErrorCode, RegistryError

#: Items asked of one shard per call at most (as the shard's own limit).
MAX_ASK = 1000


class _Stream:
    __slots__ = ("shard", "items", "next")

    def __init__(self, shard: int, reply: dict[str, Any]) -> None:
        self.shard = shard
        self.items: deque[dict[str, Any]] = deque(reply["items"])
        self.next: bytes | None = reply["next"]


def _ask(args: messages.SearchPageRequest, **more: Any) -> messages.SearchPageRequest:
    return cast(messages.SearchPageRequest, {**args, **more})


def _order_key(order: str) -> Any:
    if order == "ALPHABETIC_DSC":  # the shards walk names backwards: the greater name first
        return lambda item: (*(-b for b in item["_k"]), 1)
    return lambda item: item["_k"]


async def merged_page(client: Any, args: messages.SearchPageRequest, offset: int, limit: int
                      ) -> tuple[list[dict[str, Any]], int]:
    """The items ``offset`` to ``offset + limit`` (``limit`` ≤ 0: all) of the merged listing, and
    how many it has in all; redone once if the cluster map changed under a continuation."""
    for attempt in range(2):
        try:
            return await _merge(client, args, offset, limit)
        except RegistryError as exc:
            if exc.code is not ErrorCode.STALE_MAP or attempt:
                raise
    raise AssertionError("unreachable")


async def _merge(client: Any, args: messages.SearchPageRequest, offset: int, limit: int
                 ) -> tuple[list[dict[str, Any]], int]:
    need = offset + limit if limit > 0 else None
    ask = min(need or MAX_ASK, MAX_ASK)
    first = await client.call_all(messages.SEARCH_PAGE(_ask(args, limit=ask, count=True)))
    total = sum(int(reply.result.get("total") or 0) for reply in first)
    streams = [_Stream(shard, reply.result) for shard, reply in enumerate(first)]
    key = _order_key(args["order"])
    out: list[dict[str, Any]] = []
    seen: set[str] = set()  # during a resize's switch two shards may list a name: once is enough
    while need is None or len(out) < need:
        starving = [s for s in streams if not s.items and s.next is not None]
        if starving:
            ask = min(MAX_ASK, max(1, need - len(out)) if need is not None else MAX_ASK)
            replies = await asyncio.gather(*(client.call(s.shard, messages.SEARCH_PAGE(
                _ask(args, limit=ask, after=s.next))) for s in starving))
            for stream, reply in zip(starving, replies, strict=True):
                stream.items.extend(reply.result["items"])
                stream.next = reply.result["next"]
            continue
        heads = [s for s in streams if s.items]
        if not heads:
            break
        best = min(heads, key=lambda s: key(s.items[0]))
        item = best.items.popleft()
        if item["Name"] not in seen:
            seen.add(item["Name"])
            out.append(item)
    for item in out:
        item.pop("_k", None)
    return out[offset:], total
