"""The request and reply types of the sync ops (issue 13); their ``Wire`` constants are in
:mod:`common.messages` with every other op's.

* ``sync.manifest`` — ``manifest.get`` for a pull-through repository (fetched, or its tag
  re-checked, upstream); same request and reply.
* ``sync.blob`` — a blob's size after ``blob.stat`` missed, starting or joining its one download.
* ``sync.blob.read`` — bytes of a blob as its download arrives; the reply frame holds them (none,
  with ``length`` 0, when the shard waited its bound for more: ask again).
* ``sync.status`` — each sync registry's state and counters.
"""

# No ``from __future__ import annotations``: TypedDict must see NotRequired[...] at run time.
from typing import Any, NotRequired, TypedDict


class SyncBlobRequest(TypedDict):
    repo: str
    digest: str
    #: Answer only once the blob is verified and stored (a HEAD: nothing is streamed to wait on).
    whole: NotRequired[bool]
    #: When the upstream has not answered within the shard's bound (its request slot may be taken
    #: by other downloads), answer ``size`` -1 instead of an error: the gateway asks again.
    poll: NotRequired[bool]
    #: This is such a repeated ask (not another waiter).
    again: NotRequired[bool]


class SyncBlobReply(TypedDict):
    size: int
    #: The blob file relative to the shard directory (complete only when ``fetching`` is false).
    path: str
    #: The blob is still being downloaded: read it with ``sync.blob.read``.
    fetching: bool


class SyncBlobReadRequest(TypedDict):
    repo: str
    digest: str
    offset: int
    length: int


class SyncStatusReply(TypedDict):
    shard: int
    #: One entry per configured registry: name, urls, onDemand, periodic, requests by kind/outcome,
    #: bytes, last error and success, token requests, the last mirroring pass.
    registries: list[dict[str, Any]]
    #: Cache hits and misses, single-flight waiters (by manifest/blob), downloads in progress.
    counters: dict[str, int]
