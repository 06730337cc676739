"""A sorted page of repositories merged from the shards' ordered indexes (issue 17).

Every shard answers ``search.page`` (:mod:`shard.search_walk`): the first repositories of its
index in the order asked, after a cursor, that the caller may read and that pass the query and
filter. The gateway asks all shards at once for ``offset + limit`` each, merges their sorted
pages k-way on the order keys (:class:`Merged`), and asks a shard for more (all such shards at
once) only when its page ran out before the merged page is full. So a page of 10 reads about
10 × shards index entries, whatever the number of repositories. ``TotalCount`` is the sum of the
shards' counts (their kept counts when the caller reads everything and nothing narrows it).

A deep ``offset`` (zot pages by offset) still means walking the entries before it, but by name
and key only (:func:`skip`, the shards' ``skim``): no entry decoded, no summary built or merged
item by item; then each shard is asked for the page after the last entry it gave.
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
#: Names and keys asked of one shard per call while skipping an offset (the shard's ``MAX_SKIM``).
SKIM_ASK = 10000
#: From this offset on, the entries before it are skipped by key only (:func:`skip`).
SKIM_FROM = 100


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


async def skip(client: Any, args: messages.SearchPageRequest, offset: int, seen: set[str]
               ) -> tuple[list[bytes | None], int]:
    """Walk the first ``offset`` entries of the merged listing by name and key only; returns each
    shard's cursor after the last entry it gave, and the shards' total. Names walked go to ``seen``."""
    first = await client.call_all(messages.SEARCH_PAGE(ask_args(args, limit=min(SKIM_ASK, offset), count=True,
                                                                skim=True)))
    total = sum(int(reply.result.get("total") or 0) for reply in first)
    buffers = [deque(reply.result["items"]) for reply in first]
    nexts: list[bytes | None] = [reply.result["next"] for reply in first]
    cursors: list[bytes | None] = [args.get("after")] * len(first)
    backwards = args["order"] == "ALPHABETIC_DSC"
    left = offset
    while left:
        starving = [i for i, buffer in enumerate(buffers) if not buffer and nexts[i] is not None]
        if starving:
            replies = await asyncio.gather(*(client.call(i, messages.SEARCH_PAGE(
                ask_args(args, limit=min(SKIM_ASK, left), after=nexts[i], skim=True))) for i in starving))
            for i, reply in zip(starving, replies, strict=True):
                buffers[i].extend(reply.result["items"])
                nexts[i] = reply.result["next"]
            continue
        live = [i for i, buffer in enumerate(buffers) if buffer]
        if not live:
            break
        # what every shard with more to give has passed is in its final order
        ends = [buffers[i][-1]["_k"] for i in live if nexts[i] is not None]
        bound = (max(ends) if backwards else min(ends)) if ends else None
        ready = sorted(((item["_k"], i) for i in live for item in buffers[i]
                        if bound is None or (item["_k"] >= bound if backwards else item["_k"] <= bound)),
                       reverse=backwards)
        for k, i in ready:  # each shard's entries keep their order: its buffer's head is this one
            name = buffers[i].popleft()["Name"]
            cursors[i] = k
            if name not in seen:
                seen.add(name)
                left -= 1
                if not left:
                    break
    return cursors, total


async def _after_skip(client: Any, args: messages.SearchPageRequest, offset: int, limit: int
                      ) -> tuple[list[dict[str, Any]], int]:
    """The page after a deep ``offset``: the entries before it skipped by key, then a merge of what
    each shard has after its cursor."""
    merged = Merged(client, args)
    cursors, total = await skip(client, args, offset, merged.seen)
    ask = min(limit, MAX_ASK) if limit > 0 else MAX_ASK
    replies = await asyncio.gather(*(client.call(i, messages.SEARCH_PAGE(ask_args(args, limit=ask, after=cursor)))
                                     for i, cursor in enumerate(cursors)))
    merged.streams = [_Stream(i, reply.result) for i, reply in enumerate(replies)]
    return await merged.take(limit if limit > 0 else None), total


async def merged_page(client: Any, args: messages.SearchPageRequest, offset: int, limit: int
                      ) -> tuple[list[dict[str, Any]], int]:
    """The items ``offset`` to ``offset + limit`` (``limit`` ≤ 0: all) of the merged listing, and
    how many it has in all; redone once if the cluster map changed under a continuation."""
    need = offset + limit if limit > 0 else None
    for attempt in range(2):
        try:
            if offset >= SKIM_FROM:
                return await _after_skip(client, args, offset, limit)
            merged = Merged(client, args)
            await merged.start(need or MAX_ASK)
            return (await merged.take(need))[offset:], merged.total
        except RegistryError as exc:
            if exc.code is not ErrorCode.STALE_MAP or attempt:
                raise
    raise AssertionError("unreachable")
