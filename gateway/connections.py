"""Connection life in Hypercorn's asyncio worker: a connection whose client is gone is closed at once.

Hypercorn 0.18 notices the end of a connection's input (the client half-closed, or the read
failed) but then waits for its keep-alive timer before closing the socket: a client that
connects, sends nothing and half-closes is held for ``keep_alive_timeout`` (75 s), and a flood
of them holds sockets and file descriptors for nothing. :func:`install` makes every connection
close as soon as its input has ended and no response is being written — requests in flight
were already told the client disconnected (Hypercorn sends them ``http.disconnect``).
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    """Make Hypercorn's asyncio worker serve every connection through :class:`_TCPServer`."""
    import hypercorn.asyncio.run as hypercorn_run
    from hypercorn.events import Updated

    base = getattr(hypercorn_run, "TCPServer", None)
    if base is None or not hasattr(base, "_read_data") or not hasattr(base, "protocol_send"):
        raise RuntimeError("hypercorn.asyncio.run.TCPServer not as expected: cannot bound idle connections")
    if getattr(base, "_shardreg_closes_at_eof", False):
        return  # already installed

    class _TCPServer(base):  # type: ignore[misc, valid-type]
        """Hypercorn's TCPServer, closing the connection when the client's input has ended."""

        _shardreg_closes_at_eof = True
        _input_ended = False
        idle_task: Any

        async def _read_data(self) -> None:
            await super()._read_data()
            self._input_ended = True
            await self.idle_task.stop()  # nothing more can arrive: no keep-alive wait

        async def protocol_send(self, event: Any) -> None:
            if self._input_ended and isinstance(event, Updated) and event.idle:
                await self._close()  # the response is out and no further request can come
                return
            await super().protocol_send(event)

    hypercorn_run.TCPServer = _TCPServer  # type: ignore[misc]
