"""Drain the outbox to each sink: in order, at least once, with retries and back-off.

One task per sink sends the events after its cursor one by one (so a repository's events
arrive in the order they were committed), and moves the cursor after each batch (up to 64) it
sent, and before it waits on a failing sink.
A failure is retried with exponential back-off (0.2 s doubling to 30 s); Distribution
endpoints retry at once up to ``threshold`` failures in a row, then wait ``backoff``. A kill
between a send and the cursor's commit sends that event again after the restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from common.config.lifecycle import Sink
from shard import clock
from shard.events.outbox import Outbox
from shard.events.sinks import DeliveryError, Target, target

log = logging.getLogger("shardreg.shard.events")
BATCH = 64
MAX_BACKOFF = 30.0
#: How often a sink with nothing to send looks at the outbox anyway (normally it is woken).
IDLE_POLL = 1.0


@dataclass
class SinkStats:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    ignored: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0
    last_error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class Sender:
    def __init__(self, outbox: Outbox, sinks: tuple[Sink, ...]) -> None:
        self.outbox = outbox
        self.targets: list[Target] = [target(s) for s in sinks]
        self.stats = {s.label: SinkStats() for s in sinks}
        self._wake = [asyncio.Event() for _ in sinks]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(i)) for i in range(len(self.targets))]

    def notify(self) -> None:
        """New events were committed: wake every sink."""
        for event in self._wake:
            event.set()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        queued = self.outbox.queued()
        return {"sinks": {label: {**stats.as_dict(), "queued": queued.get(label, 0)}
                          for label, stats in self.stats.items()},
                "dropped": self.outbox.dropped, "capacity": self.outbox.size}

    async def _run(self, index: int) -> None:
        try:
            await self._drain(index)
        finally:  # cancelled (the shard stops): close the sink's connections
            await self.targets[index].close()

    async def _drain(self, index: int) -> None:
        sink = self.targets[index]
        label = sink.sink.label
        while True:
            try:
                batch = self.outbox.batch(label, BATCH)
                if not batch:
                    self._wake[index].clear()
                    try:
                        await asyncio.wait_for(self._wake[index].wait(), IDLE_POLL)
                    except TimeoutError:
                        pass
                    continue
                await self._send_batch(sink, batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug or the store: log and go on after a pause, never stop sending
                log.exception("event sender for %s failed", label)
                await asyncio.sleep(1.0)

    async def _send_batch(self, sink: Target, batch: list[tuple[int, dict[str, Any]]]) -> None:
        sent: list[int] = []

        async def checkpoint() -> None:  # at the end, and before waiting on a failing sink
            if sent:
                await self.outbox.advance(sink.sink.label, sent[-1])

        for seq, record in batch:
            await self._deliver(sink, record, checkpoint)
            sent.append(seq)
        await checkpoint()

    async def _deliver(self, sink: Target, record: dict[str, Any],
                       checkpoint: Callable[[], Awaitable[None]]) -> None:
        stats = self.stats[sink.sink.label]
        attempt, backoff = 0, sink.sink.backoff
        while True:
            try:
                if not await sink.deliver(record):
                    stats.ignored += 1
                    return
            except DeliveryError as exc:
                attempt += 1
                stats.failed += 1
                stats.retried += 1
                stats.last_error = str(exc)
                if attempt == 1:
                    await checkpoint()
                if attempt == 1 or attempt % 20 == 0:
                    log.warning("event %s to %s not delivered (attempt %d): %s; retrying", record["type"],
                                sink.sink.label, attempt, exc)
                await asyncio.sleep(self._pause(sink.sink, attempt, backoff))
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            latency = max(0.0, clock.now() - record["time"])
            stats.sent += 1
            stats.latency_sum += latency
            stats.latency_max = max(stats.latency_max, latency)
            return

    @staticmethod
    def _pause(sink: Sink, attempt: int, backoff: float) -> float:
        if sink.type == "notification":
            return 0.05 if attempt < max(1, sink.threshold) else sink.backoff
        return backoff

