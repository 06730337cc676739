"""A sorted page of repositories merged from the shards' ordered indexes (issue 17).

Every shard answers ``search.page`` (:mod:`shard.search_walk`): the first repositories of its
index in the order asked, after a cursor, that the caller may read and that pass the query and
filter. The gateway asks all shards at once for ``offset + limit`` each, merges their sorted
pages k-way on the order keys (:class:`Merged`), and asks a shard for more (all such shards at
once) only when its page ran out before the merged page is full. So a page of 10 reads about
10 × shards index entries, whatever the number of repositories. ``TotalCount`` is the sum of the
shards' counts (their kept counts when the caller reads everything and nothing narrows it).
"""

from __future__ import annotations

import asyncio
import heapq
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


def ask_args(args: messages.SearchPageRequest, **more: Any) -> messages.SearchPageRequest:
    return cast(messages.SearchPageRequest, {**args, **more})


def _order_key(order: str) -> Any:
    if order == "ALPHABETIC_DSC":  # the shards walk names backwards: the greater name first
        return lambda item: (*(-b for b in item["_k"]), 1)
    return lambda item: item["_k"]


class Merged:
    """The shards' sorted streams merged: :meth:`take` the next items, :meth:`peek` the next one."""

    def __init__(self, client: Any, args: messages.SearchPageRequest) -> None:
        self.client, self.args = client, args
        self.key = _order_key(args["order"])
        self.streams: list[_Stream] | None = None
        self.total = 0
        self.seen: set[str] = set()  # during a resize's switch two shards may list a name: once is enough

    async def start(self, ask: int, count: bool = True) -> None:
        first = await self.client.call_all(messages.SEARCH_PAGE(ask_args(self.args, limit=min(ask, MAX_ASK), count=count)))
        self.total = sum(int(reply.result.get("total") or 0) for reply in first)
        self.streams = [_Stream(shard, reply.result) for shard, reply in enumerate(first)]

    async def peek(self, want: int = MAX_ASK) -> dict[str, Any] | None:
        """The next item (None: none left), asking the shards whose pages ran out for ``want`` more."""
        assert self.streams is not None
        while True:
            starving = [s for s in self.streams if not s.items and s.next is not None]
            if starving:
                ask = min(MAX_ASK, max(1, want))
                replies = await asyncio.gather(*(self.client.call(s.shard, messages.SEARCH_PAGE(
                    ask_args(self.args, limit=ask, after=s.next))) for s in starving))
                for stream, reply in zip(starving, replies, strict=True):
                    stream.items.extend(reply.result["items"])
                    stream.next = reply.result["next"]
                continue
            heads = [s for s in self.streams if s.items]
            if not heads:
                return None
            best = min(heads, key=lambda s: self.key(s.items[0]))
            if best.items[0]["Name"] in self.seen:
                best.items.popleft()
                continue
            return best.items[0]

    async def take(self, n: int | None) -> list[dict[str, Any]]:
        """The next ``n`` items (None: all)."""
        assert self.streams is not None
        if n is None:
            return await self._take_all()
        out: list[dict[str, Any]] = []
        while n is None or len(out) < n:
            item = await self.peek(MAX_ASK if n is None else n - len(out))
            if item is None:
                break
            best = next(s for s in self.streams if s.items and s.items[0] is item)
            best.items.popleft()
            self.seen.add(item["Name"])
            item.pop("_k", None)
            out.append(item)
        return out


    async def _take_all(self) -> list[dict[str, Any]]:
        """Everything left: each shard read to its end (all at once), then one k-way merge."""
        assert self.streams is not None
        while pending := [s for s in self.streams if s.next is not None]:
            replies = await asyncio.gather(*(self.client.call(s.shard, messages.SEARCH_PAGE(
                ask_args(self.args, limit=MAX_ASK, after=s.next))) for s in pending))
            for stream, reply in zip(pending, replies, strict=True):
                stream.items.extend(reply.result["items"])
                stream.next = reply.result["next"]
        out = []
        for item in heapq.merge(*(s.items for s in self.streams), key=self.key):
            if item["Name"] not in self.seen:
                self.seen.add(item["Name"])
                item.pop("_k", None)
                out.append(item)
        for stream in self.streams:
            stream.items.clear()
        return out


async def merged_page(client: Any, args: messages.SearchPageRequest, offset: int, limit: int
                      ) -> tuple[list[dict[str, Any]], int]:
    """The items ``offset`` to ``offset + limit`` (``limit`` ≤ 0: all) of the merged listing, and
    how many it has in all; redone once if the cluster map changed under a continuation."""
    need = offset + limit if limit > 0 else None
    for attempt in range(2):
        try:
            merged = Merged(client, args)
            await merged.start(need or MAX_ASK)
            return (await merged.take(need))[offset:], merged.total
        except RegistryError as exc:
            if exc.code is not ErrorCode.STALE_MAP or attempt:
                raise
    raise AssertionError("unreachable")
