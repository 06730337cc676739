"""The durable outbox of lifecycle events in the shard's main LMDB (``outbox`` database).

Events are appended by the write that causes them, in its transaction (a push, a delete, a
retention pass): an acknowledged change always has its event stored, and a killed shard
sends it after its restart. Each sink has its own cursor (``outbox/cursor/<sink>`` in
``system``); events every configured sink has passed are deleted. A sink added later starts
at the end (it does not replay history).

The outbox is bounded (``extensions.events.outboxSize``, per shard). When it is full the
oldest event is dropped to make room — a sink that is down never blocks or fails a push — and
this is logged once per burst, counted (``dropped``) and visible as every sink's queue length.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from shard.lmdbstore import Txn
from shard.metastore import MetaStore

log = logging.getLogger("shardreg.shard.events")
#: Seconds between two "outbox full" log lines.
FULL_LOG_INTERVAL = 60.0


class Outbox:
    def __init__(self, meta: MetaStore, sinks: list[str], size: int) -> None:
        self.meta = meta
        self.sinks = sinks
        self.size = size
        self.dropped = 0
        self._logged_full = 0.0
        meta.write(self._adopt_sinks)

    def _adopt_sinks(self, txn: Txn) -> None:
        last = self.meta.outbox_last(txn)
        for sink in self.sinks:
            if self.meta.outbox_cursor(txn, sink) is None:
                self.meta.set_outbox_cursor(txn, sink, last)

    def append(self, txn: Txn, records: list[dict[str, Any]]) -> None:
        """Store ``records`` in the caller's write transaction, dropping the oldest when full."""
        for record in records:
            if self.meta.outbox_count(txn) >= self.size:
                self.dropped += self.meta.outbox_drop_through(txn, self.meta.outbox_first(txn))
                now = time.monotonic()
                if now - self._logged_full > FULL_LOG_INTERVAL:
                    self._logged_full = now
                    log.error("event outbox full (%d events): the oldest undelivered events are dropped to keep "
                              "accepting pushes (%d dropped so far); check the sinks (queue length per sink in "
                              "/metrics) or raise extensions.events.outboxSize", self.size, self.dropped)
            self.meta.outbox_append(txn, record)

    def batch(self, sink: str, n: int) -> list[tuple[int, dict[str, Any]]]:
        """The next ``n`` events ``sink`` has not been sent."""
        def run(txn: Txn) -> list[tuple[int, dict[str, Any]]]:
            return self.meta.outbox_after(txn, self.meta.outbox_cursor(txn, sink) or 0, n)
        return self.meta.read(run)

    async def advance(self, sink: str, seq: int) -> None:
        """Record that ``sink`` has been sent everything up to ``seq``; delete what all sinks passed."""
        def run(txn: Txn) -> None:
            self.meta.set_outbox_cursor(txn, sink, seq)
            done = min((self.meta.outbox_cursor(txn, s) or 0) for s in self.sinks)
            if self.meta.outbox_first(txn) and self.meta.outbox_first(txn) <= done:
                self.meta.outbox_drop_through(txn, done)
        await self.meta.write_async(run)

    def queued(self) -> dict[str, int]:
        """Events waiting, per sink."""
        def run(txn: Txn) -> dict[str, int]:
            last, first = self.meta.outbox_last(txn), self.meta.outbox_first(txn)
            if not first:
                return dict.fromkeys(self.sinks, 0)
            return {s: last - max(self.meta.outbox_cursor(txn, s) or 0, first - 1) for s in self.sinks}
        return self.meta.read(run)
