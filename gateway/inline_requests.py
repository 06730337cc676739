"""Bodiless reads answered in the connection's own task: one event-loop iteration from bytes to answer.

Hypercorn starts every request's application in a task of its own: the connection's reader task
parses the request and creates the task, which runs at the next iteration of the loop. Under load an
iteration is a round over every other connection's work, so a manifest GET — answered from the
metadata read in place, awaiting nothing — waited a whole round for its own task to start
(docs/performance.md, "Loop iterations per request").

A ``GET`` or ``HEAD`` without a body that the application asks for (``serves_inline(scope)``: the read
fast path) now runs in the reader task itself, as soon as h11 hands over the request's end. On an
HTTP/1.1 connection the reader has nothing else to do until the answer is out: a request pipelined
behind it waits in h11's buffer either way. The application gets the same ASGI messages, and its
``http.disconnect`` too: the reader cannot watch the socket while it runs the application, so a
``receive`` that waits (a body streamed from another process watches for the client leaving) watches
the connection's transport itself, through a forwarding protocol (:class:`_InputWatch`) for as long as
it waits. Every other request — with a body, another method or path, HTTP/2 — starts in a task as before.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Callable
from typing import Any

#: What the application answers: run this request (its ASGI scope) in the reader task?
Predicate = Callable[[dict[str, Any]], bool]
_METHODS = frozenset({"GET", "HEAD"})


@functools.lru_cache(maxsize=8)
def predicate(app: Any) -> Predicate | None:
    """The application's ``serves_inline`` (looked for through the wrappers around it), or None: looked
    up once per application object (a worker serves one), not per request."""
    for _ in range(4):
        found = getattr(app, "serves_inline", None)
        if found is not None or not hasattr(app, "app"):
            return found
        app = app.app
    return None


def bodiless(method: str, headers: Any) -> bool:
    """A GET or HEAD that announces no body (h11 then hands over its end together with the request)."""
    if method not in _METHODS:
        return False
    for name, value in headers:
        name = name.lower()
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return False
    return True


class InlineGroup:
    """Hypercorn's task group as one request's stream sees it: its application runs in the reader task
    when ``wanted`` says so, otherwise in a task of ``group``."""

    def __init__(self, group: Any, wanted: Predicate, handle: Any, connection: Any) -> None:
        self.group, self.wanted, self.handle, self.connection = group, wanted, handle, connection

    async def spawn_app(self, app: Any, config: Any, scope: Any, send: Any) -> Any:
        if not self.wanted(scope):
            return await self.group.spawn_app(app, config, scope, send)
        return InlineRun(app, config, scope, send, self.handle, self.connection).put

    def spawn(self, func: Any, *args: Any) -> None:
        self.group.spawn(func, *args)


class InlineRun:
    """One request's application, run by the ``put`` of the request's last message, in the task that puts
    it (the reader). Messages put while it runs (``http.disconnect``) wait in a queue for ``receive``."""

    def __init__(self, app: Any, config: Any, scope: Any, send: Any, handle: Any,
                 connection: Any) -> None:
        self.app, self.config, self.scope, self.send = app, config, scope, send
        self.handle, self.connection = handle, connection
        self.messages: collections.deque[Any] = collections.deque()
        self.arrived: asyncio.Future[None] | None = None
        self.started = False

    async def put(self, message: Any) -> None:
        self.messages.append(message)
        if self.arrived is not None and not self.arrived.done():
            self.arrived.set_result(None)
        if self.started or message["type"] != "http.request" or message.get("more_body", False):
            return
        self.started = True
        loop = asyncio.get_running_loop()
        # Hypercorn's own wrapper of an application run (error logging, the stream's end)
        await self.handle(self.app, self.config, self.scope, self.receive, self.send,
                          functools.partial(loop.run_in_executor, None), _call_soon(loop))

    async def receive(self) -> Any:
        while not self.messages:
            self.arrived = asyncio.get_running_loop().create_future()
            with _InputWatch(self.connection, self):
                await self.arrived
        return self.messages.popleft()

    def disconnected(self) -> None:
        """The client's input has ended (or the connection): what Hypercorn tells as ``http.disconnect``."""
        self.messages.append({"type": "http.disconnect"})
        if self.arrived is not None and not self.arrived.done():
            self.arrived.set_result(None)


class _InputWatch(asyncio.Protocol):
    """While installed on the connection's transport: every event goes on to the connection's own
    protocol, and the end of the client's input (or of the connection) disconnects the request."""

    def __init__(self, connection: Any, run: InlineRun) -> None:
        self.run = run
        self.transport, self.reader = connection.writer.transport, connection.reader
        self.inner: Any = None

    def __enter__(self) -> _InputWatch:
        if self.transport.is_closing() or self.reader.at_eof():
            self.run.disconnected()  # ended already
        else:
            self.inner = self.transport.get_protocol()
            self.transport.set_protocol(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.inner is not None and self.transport.get_protocol() is self:
            self.transport.set_protocol(self.inner)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        self.run.disconnected()
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.disconnected()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def _call_soon(loop: asyncio.AbstractEventLoop) -> Any:
    def call_soon(func: Any, *args: Any) -> Any:  # as Hypercorn's: for a synchronous app's threads
        return asyncio.run_coroutine_threadsafe(func(*args), loop).result()
    return call_soon
