"""Spread connections over the gateway's workers: the least-loaded worker accepts.

The workers share one listening socket (:mod:`common.listen`: bound once, without ``SO_REUSEPORT``,
so no other process can take a share of the port). The kernel wakes every worker when a connection
arrives, but asyncio's accept loop takes up to 100 connections per wake-up and the worker that is
already running always gets there first: a burst of keep-alive clients (a CI fleet, the bench)
ended up 32 of 32 on one worker while the other idled. Accepting one connection per wake-up does
not change that (measured: the running worker still takes each one as it arrives).

So each worker publishes how many connections it holds in a small shared array, and accepts only
while it holds no more than the least-loaded live worker; otherwise it stops watching the socket
for :data:`DEFER` seconds and leaves the connection to the others. A worker never waits longer
than :data:`MAX_DEFER` in a row (another worker may be stuck), and a dead worker's slot is marked
absent by the gateway until its replacement starts, so nothing depends on every worker being
healthy. With one worker nothing is installed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

#: Seconds a worker holding more connections than another leaves the listening socket alone.
DEFER = 0.002
#: Longest time in a row a worker defers while connections wait (then it accepts regardless).
MAX_DEFER = 0.25
#: A slot's value while its worker is not running.
ABSENT = -1

Counts = Sequence[int]  # a multiprocessing.Array("i", workers, lock=False): one slot per worker


def new_counts(ctx: Any, workers: int) -> Any:
    """The shared array the workers publish their connection counts in (made by the gateway)."""
    counts = ctx.Array("i", workers, lock=False)
    for slot in range(workers):
        counts[slot] = ABSENT
    return counts


def should_defer(counts: Counts, slot: int) -> bool:
    """Whether worker ``slot`` holds more connections than some live worker."""
    mine = counts[slot]
    return any(0 <= other < mine for index, other in enumerate(counts) if index != slot)


def install(counts: Any, slot: int) -> None:
    """In a worker: count this worker's connections in ``counts[slot]`` and accept only when least loaded."""
    import asyncio.selector_events as selector_events

    counts[slot] = 0
    if len(counts) < 2:
        return
    loop_class: Any = selector_events.BaseSelectorEventLoop  # _accept_connection is private: not in the stubs
    original = loop_class._accept_connection
    deferring: dict[int, tuple[float, float]] = {}  # fd → (start, latest) of the current streak of deferrals

    def counted(protocol_factory: Callable[[], Any]) -> Callable[[], Any]:
        def factory() -> Any:
            protocol = protocol_factory()
            lost = protocol.connection_lost

            def connection_lost(exc: BaseException | None) -> None:
                counts[slot] -= 1
                lost(exc)

            protocol.connection_lost = connection_lost
            counts[slot] += 1
            return protocol

        return factory

    def accept_connection(self: asyncio.AbstractEventLoop, protocol_factory: Any, sock: Any, sslcontext: Any = None,
                          server: Any = None, backlog: int = 100, *rest: Any) -> None:
        fd = sock.fileno()
        if should_defer(counts, slot):
            now = time.monotonic()
            since, last = deferring.get(fd, (now, now))
            if now - last > MAX_DEFER:  # not one streak: the connection we left went to another worker
                since = now
            deferring[fd] = (since, now)
            if now - since < MAX_DEFER:
                self._remove_reader(fd)  # type: ignore[attr-defined]

                def resume() -> None:
                    if server is None or server.is_serving():
                        self._add_reader(fd, accept_connection, self, protocol_factory,  # type: ignore[attr-defined]
                                         sock, sslcontext, server, backlog, *rest)

                self.call_later(DEFER, resume)
                return
        deferring.pop(fd, None)
        # one connection per wake-up: the next one is decided again, by whichever worker is least loaded
        original(self, counted(protocol_factory), sock, sslcontext, server, 1, *rest)

    loop_class._accept_connection = accept_connection


__all__ = ["ABSENT", "DEFER", "MAX_DEFER", "install", "new_counts", "should_defer"]
