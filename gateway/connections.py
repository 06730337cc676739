"""Connection life in Hypercorn's asyncio worker: the keep-alive wait, and connections whose client is gone.

* **The keep-alive wait is a timer.** Hypercorn waits for a kept-alive connection's next request in a
  task (``wait_for`` on the worker's termination: a second task) that it cancels when the request
  arrives, and it waits for that cancellation before it reads the request. Counted: seven event-loop
  iterations from a request's bytes to its answer, five of them spent cancelling. Under load every
  iteration is a round over all the other connections' work, so a cheap request (a manifest GET) waited
  seven rounds (docs/performance.md, "Loop iterations per request"). :class:`_IdleTimer` keeps the
  same rule — close after ``keep_alive_timeout`` idle, or at once when the worker stops — with a
  timer cancelled in place: two iterations from bytes to answer.
* **A connection whose client is gone is closed at once.** Hypercorn 0.18 notices the end of a
  connection's input (the client half-closed, or the read failed) but then waits for its keep-alive
  timer before closing the socket: a client that connects, sends nothing and half-closes was held for
  ``keep_alive_timeout`` (75 s), and a flood of them held sockets and file descriptors for nothing.
  Every connection now closes as soon as its input has ended and no response is being written —
  requests in flight were already told the client disconnected (Hypercorn sends them ``http.disconnect``).
"""

from __future__ import annotations

import asyncio
from typing import Any


def install() -> None:
    """Make Hypercorn's asyncio worker serve every connection through :class:`_TCPServer`."""
    import hypercorn.asyncio.run as hypercorn_run
    from hypercorn.events import Updated

    base = getattr(hypercorn_run, "TCPServer", None)
    if base is None or not all(hasattr(base, name) for name in ("_read_data", "protocol_send",
                                                                 "_initiate_server_close")):
        raise RuntimeError("hypercorn.asyncio.run.TCPServer not as expected: cannot bound idle connections")
    if getattr(base, "_shardreg_closes_at_eof", False):
        return  # already installed

    class _TCPServer(base):  # type: ignore[misc, valid-type]
        """Hypercorn's TCPServer with a timer for the keep-alive wait, closing the connection when the
        client's input has ended."""

        _shardreg_closes_at_eof = True
        _input_ended = False
        idle_task: Any

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.idle_task = _IdleTimer(self)

        async def _read_data(self) -> None:
            await super()._read_data()
            self._input_ended = True
            await self.idle_task.stop()  # nothing more can arrive: no keep-alive wait

        async def protocol_send(self, event: Any) -> None:
            if self._input_ended and isinstance(event, Updated) and event.idle:
                await self._close()  # the response is out and no further request can come
                return
            await super().protocol_send(event)

    setattr(hypercorn_run, "TCPServer", _TCPServer)  # noqa: B010 - replacing a module global


class _IdleTimer:
    """One connection's keep-alive wait (Hypercorn's ``SingleTask`` interface, which the server calls
    with its own idle action): a timer on the loop, and membership of the worker's idle set, which a
    single task per worker closes when the worker stops."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.timer: asyncio.TimerHandle | None = None

    async def restart(self, task_group: Any, action: Any) -> None:
        self.cancel()
        if self.server.context.terminated.is_set():  # a connection whose wait starts after the worker's
            self.expire()  # watcher ran (Hypercorn itself closes one whose answer ends after the stop)
            return
        self.timer = self.server.loop.call_later(self.server.config.keep_alive_timeout, self.expire)
        _idle_connections(self.server.context).add(self)

    async def stop(self) -> None:
        self.cancel()

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            _idle_connections(self.server.context).discard(self)

    def expire(self) -> None:
        """Close the connection (it was idle for the keep-alive timeout, or the worker is stopping)."""
        self.cancel()
        try:
            self.server._task_group.spawn(self.server._initiate_server_close)
        except RuntimeError:
            pass  # the connection's task group has ended: it is closed already


def _idle_connections(context: Any) -> set[_IdleTimer]:
    """The worker's idle connections; the first call starts the task that closes them when it stops."""
    idle: set[_IdleTimer] | None = getattr(context, "_shardreg_idle", None)
    if idle is None:
        idle = context._shardreg_idle = set()
        context._shardreg_idle_watch = asyncio.get_running_loop().create_task(_close_when_terminated(context, idle))
    return idle


async def _close_when_terminated(context: Any, idle: set[_IdleTimer]) -> None:
    await context.terminated.wait()
    for timer in list(idle):
        timer.expire()
