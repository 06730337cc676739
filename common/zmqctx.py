"""A ZeroMQ context that ends with its sockets, whether its owner is closed or only collected.

pyzmq ends a context collected unclosed with ``destroy()``: it closes the sockets it still tracks
(weakly) and then waits in ``term()`` until every socket is closed. When the owner, its sockets and
the context are garbage together (a reference cycle, which any object with bound callbacks is), the
weak references are cleared before any finalizer runs, so ``term()`` waits for sockets that are
still open: the collecting thread hangs for ever (seen once in the suite; reproduced by collecting an
unclosed ``ShardServer``). Here a finalizer of the owner holds the context and every socket made
from it strongly, and closes the sockets, then the context, exactly once: at ``close()``, or when
the owner is collected.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, TypeVar

import zmq
import zmq.asyncio

log = logging.getLogger("shardreg.zmq")
S = TypeVar("S", bound=zmq.Socket)  # type: ignore[type-arg]


def _end(ctx: zmq.asyncio.Context, sockets: list[zmq.Socket[Any]]) -> None:
    for sock in sockets:
        try:
            sock.close(0)
        except Exception:  # noqa: BLE001 - closing the others and the context matters more
            log.debug("closing a ZeroMQ socket failed", exc_info=True)
    sockets.clear()
    ctx.destroy(0)


class OwnedContext:
    """One owner's ZeroMQ context; make (or ``track``) every socket of it here."""

    def __init__(self, owner: object) -> None:
        self.ctx = zmq.asyncio.Context()
        self._sockets: list[zmq.Socket[Any]] = []
        self._end = weakref.finalize(owner, _end, self.ctx, self._sockets)

    def socket(self, kind: int) -> zmq.asyncio.Socket:
        return self.track(self.ctx.socket(kind))

    def track(self, sock: S) -> S:
        """A socket made from this context some other way (a monitor socket, say)."""
        self._sockets.append(sock)
        return sock

    def close(self) -> None:
        self._end()

    @property
    def closed(self) -> bool:
        return not self._end.alive
