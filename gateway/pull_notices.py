"""Manifest GETs a worker answered in place (gateway.local_reads), told to their shards in batches.

The shard counts pulls (download counts, retention's last-pulled time) but the client need not
wait for that: each pull is noted here and leaves with the others for the same shard as one
``manifest.pulls`` notice (never answered) — PULLS_DELAY seconds after the first, at once when
MAX_PULLS are waiting, or just before anything else the worker sends that shard
(``ShardClient.send`` calls :meth:`PullNotices.flush`), so a caller that reads download counts
after its GETs, through the same worker, sees them counted (through another worker or gateway: at
most PULLS_DELAY later). A worker that stops tells its shards what waits (``ShardClient.drain``).
One notice for many GETs, and no answer, is what makes a pull cheap: a message each way per GET was
a fifth of a pull's CPU (docs/performance.md, "Pull notices in batches").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from common.messages import MAX_PULLS

#: Longest a pull waits before its shard hears of it. Batches fill at the rate of one worker's GETs
#: of one shard's repositories: a few hundred a second on the bench's pull-small, ~1 per 10 ms — so a
#: 10 ms delay batched nothing and gained nothing, 100 ms (~9 a notice) is what gains (performance.md).
PULLS_DELAY = 0.1
#: Sends one shard its batch of [repo, digest] pairs.
Tell = Callable[[int, list[list[str]]], None]


class PullNotices:
    def __init__(self, tell: Tell) -> None:
        self.tell = tell
        #: Pulls not yet told, per shard, and when each batch leaves at the latest.
        self.waiting: dict[int, list[list[str]]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}

    def note(self, shard: int, repo: str, digest: str) -> None:
        batch = self.waiting.get(shard)
        if batch is None:
            batch = self.waiting[shard] = []
            self._timers[shard] = asyncio.get_running_loop().call_later(PULLS_DELAY, self.flush, shard)
        batch.append([repo, digest])
        if len(batch) >= MAX_PULLS:
            self.flush(shard)

    def flush(self, shard: int) -> None:
        """Send shard ``shard`` the pulls waiting for it, if any."""
        batch = self.waiting.pop(shard, None)
        timer = self._timers.pop(shard, None)
        if timer is not None:
            timer.cancel()
        if batch:
            self.tell(shard, batch)

    def close(self) -> None:
        """Forget what waits (the client's sockets close with LINGER 0: it would be dropped anyway)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.waiting.clear()
