"""The server half of zero-copy blob bodies (see :mod:`gateway.zerocopy`): Hypercorn's HTTP/1.1 path.

:func:`install` runs in every gateway worker; :func:`create_app` is what the workers serve (the gateway
application behind :class:`~gateway.zerocopy.ZeroCopyApp`). Kept apart from :mod:`gateway.zerocopy`,
which the request handlers import, so that the handlers never depend on the application that routes to them.
"""

from __future__ import annotations

import asyncio
import functools
import os
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from gateway import body_tap, inline_requests
from gateway.sendfile import send_region
from gateway.zerocopy import EXTENSION, MESSAGE, FileRegion, ZeroCopyApp

#: In multiprocess mode (a gateway with metrics on) these reach /metrics like the gateway's own series.
SENT_BYTES = Counter("shardreg_http_zerocopy_sent_bytes", "Response body bytes sent with sendfile (zero-copy)",
                     registry=None)
SENDS = Counter("shardreg_http_zerocopy_sends", "Response body regions sent with sendfile (zero-copy)",
                registry=None)
TAPPED_BYTES = Counter("shardreg_http_body_tap_bytes", "Request body bytes moved from the socket to a file with "
                       "splice (the body tap: never read by Python)", registry=None)


def create_app() -> ZeroCopyApp:
    """What the Hypercorn workers serve: the gateway application behind :class:`ZeroCopyApp`.
    Built once per worker process, which then freezes its start-up heap (common/heap.py)."""
    from common import heap
    from gateway.app import create_app as create_gateway

    app = ZeroCopyApp(create_gateway())
    heap.settle()
    return app


def install() -> None:
    """Teach this worker's Hypercorn (0.17/0.18 asyncio) the zero-copy send extension on plain HTTP/1.1,
    and to run the bodiless reads the app asks for in their connection's task (:mod:`gateway.inline_requests`)."""
    import h11
    import hypercorn.asyncio.run as hypercorn_run
    import hypercorn.protocol as hypercorn_protocol
    import hypercorn.protocol.h11 as hypercorn_h11
    from hypercorn.asyncio.task_group import _handle as handle_app
    from hypercorn.events import Closed, RawData
    from hypercorn.events import Event as ConnectionEvent
    from hypercorn.protocol.events import Body, Request
    from hypercorn.protocol.events import Event as StreamEvent
    from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream
    from hypercorn.utils import suppress_body

    if getattr(hypercorn_run.TCPServer, "_shardreg_zero_copy", False):
        return
    for owner, name in ((hypercorn_run, "TCPServer"), (hypercorn_protocol, "H11Protocol"),
                        (hypercorn_h11, "HTTPStream")):
        if not hasattr(owner, name):
            raise RuntimeError(f"{owner.__name__}.{name} not as expected: cannot install zero-copy sends")

    @dataclass(frozen=True)
    class SendFile(StreamEvent):
        """HTTP stream → HTTP/1.1 protocol: send this region of the file as (part of) the body."""

        region: FileRegion

    @dataclass(frozen=True)
    class RawFile(ConnectionEvent):
        """HTTP/1.1 protocol → connection: write this region to the socket with sendfile."""

        region: FileRegion

    class ZeroCopyHTTPStream(HTTPStream):
        """An HTTP/1.1 stream that offers the extensions on plain-text connections and serves them:
        zero-copy sends, and the body tap (:mod:`gateway.body_tap`) for large bodies."""

        def __init__(self, app: Any, config: Any, context: Any, task_group: Any, ssl: bool, *args: Any) -> None:
            self.tap: body_tap.BodyTap | None = None
            self.tap_used = False
            offering: Any = app if ssl else _Offering(app, self)
            self.inline = inline_requests.predicate(app)  # Hypercorn's wrapper: the same for every request
            super().__init__(offering, config, context, task_group, ssl, *args)

        async def handle(self, event: Any) -> None:
            if isinstance(event, Request) and inline_requests.bodiless(event.method, event.headers):
                server = getattr(getattr(self.send, "__self__", None), "_server", None)  # the H11Protocol's
                if self.inline is not None and server is not None:  # the app may run it in the reader task
                    group: Any = inline_requests.InlineGroup(self.task_group, self.inline, handle_app, server)
                    self.task_group = group
            elif isinstance(event, Request) and self.scheme == "http" and event.method in _BODY_METHODS:
                self.tap = _tap_for(event)
            elif isinstance(event, Body) and self.tap is not None and not self.tap_used:
                tap, self.tap_used = self.tap, True  # for the body's first bytes (the app may not have started)
                sink = await tap.decision()
                protocol = getattr(self.send, "__self__", None)  # the H11Protocol, and its TCPServer:
                server = getattr(getattr(protocol, "send", None), "__self__", None)
                if sink is not None and server is not None:
                    spliced = await body_tap.splice_body(tap, sink, bytes(event.data),
                                                         protocol.connection,  # type: ignore[union-attr]
                                                         server.reader, server.writer.transport)
                    TAPPED_BYTES.inc(spliced)
                    return
                if sink is not None:
                    tap.end(RuntimeError("the body tap cannot reach the connection"))
            await super().handle(event)

        async def app_send(self, message: Any) -> None:
            if self.tap is not None:
                self.tap.decline()
            if message is None or message["type"] != MESSAGE or self.scheme != "http":
                await super().app_send(message)
                return
            if self.state != ASGIHTTPState.RESPONSE:
                await super().app_send(message)  # raises UnexpectedMessageError, as for a misplaced body
                return
            count = message.get("count")
            offset = message.get("offset") or 0
            if count is None:
                count = os.fstat(message["file"].fileno()).st_size - offset
            if count and not suppress_body(self.scope["method"], int(self.response["status"])):
                await self.send(SendFile(stream_id=self.stream_id, region=FileRegion(message["file"], offset, count)))
            if not message.get("more_body", False):
                await self._send_closed()

    class ZeroCopyH11Protocol(hypercorn_protocol.H11Protocol):
        """Frames a region with h11 (which sees a placeholder of its length) and hands it to the socket;
        writes a response's head together with its first body bytes (or its end)."""

        #: The final response's head, serialized and not yet written: it goes out in one write with what
        #: follows it in the same step (a manifest's bytes, the end of an empty body), not in a segment of
        #: its own — one system call and one wake-up of the client fewer per response. A body that waits
        #: (a shard's stream, an upstream) does not hold it: it is written alone at the next loop iteration.
        _head = b""

        async def _send_h11_event(self, event: Any) -> None:
            try:
                data = self.connection.send(event)
            except h11.LocalProtocolError:
                if self.connection.their_state != h11.ERROR:
                    raise
                return
            if isinstance(event, h11.Response) and self._server is not None:
                self._head += data
                asyncio.get_running_loop().call_soon(self._write_held_head)
                return
            if self._head:
                data, self._head = self._head + data, b""
            if data:  # (the end of a body with a Content-Length is no bytes: nothing to write)
                await self.send(RawData(data=data))

        @functools.cached_property
        def _server(self) -> Any:
            """The connection's TCPServer (what ``send`` is bound to), or None if it is not one:
            looked up once per connection."""
            server = getattr(self.send, "__self__", None)
            return server if hasattr(server, "writer") and hasattr(server, "send_lock") else None

        def _write_held_head(self) -> None:
            """A loop iteration after the head: nothing followed it in its step, so it goes alone. Every
            later step of the response runs after this callback (it was scheduled first), so the head
            is on the socket before any of its body. No one else writes to an HTTP/1.1 connection while
            its response starts; should someone hold the send lock, the next send takes the head along."""
            server = self._server
            if not self._head or server is None or server.send_lock.locked():
                return
            head, self._head = self._head, b""
            try:
                server.writer.write(head)
            except (ConnectionError, RuntimeError):
                pass  # the connection is gone: Hypercorn ends the stream

        async def stream_send(self, event: Any) -> None:
            if not isinstance(event, SendFile):
                await super().stream_send(event)
                return
            connection: Any = self.connection  # an h11.Connection: a WebSocket stream never sends files
            placeholder: Any = event.region  # h11 only takes its len(); the bytes never pass through Python
            try:
                parts = connection.send_with_data_passthrough(h11.Data(data=placeholder))
            except h11.LocalProtocolError:
                if self.connection.their_state != h11.ERROR:
                    raise
                return
            head, self._head = self._head, b""
            for part in parts or []:
                if part is event.region:
                    if head:
                        await self.send(RawData(data=head))
                        head = b""
                    await self.send(RawFile(event.region))
                else:
                    await self.send(RawData(data=head + part))
                    head = b""
            if head:
                await self.send(RawData(data=head))

    base_server = hypercorn_run.TCPServer

    class ZeroCopyTCPServer(base_server):  # type: ignore[misc, valid-type]
        """Writes :class:`RawFile` events with ``os.sendfile`` on the plain socket (:mod:`gateway.sendfile`)."""

        _shardreg_zero_copy = True

        async def protocol_send(self, event: Any) -> None:
            if not isinstance(event, RawFile):
                await super().protocol_send(event)
                return
            region = event.region
            async with self.send_lock:
                try:
                    await self.writer.drain()
                    sent = await send_region(self.loop, self.writer.transport, region.file, region.offset,
                                             region.count)
                except (ConnectionError, RuntimeError, OSError):
                    sent = -1
                if sent != region.count:  # the framing promised these bytes: the connection cannot go on
                    self.writer.transport.abort()
                    await self.protocol.handle(Closed())
                    return
            SENDS.inc()
            SENT_BYTES.inc(sent)

    setattr(hypercorn_h11, "HTTPStream", ZeroCopyHTTPStream)  # noqa: B010 - replacing a module global
    setattr(hypercorn_protocol, "H11Protocol", ZeroCopyH11Protocol)  # noqa: B010
    setattr(hypercorn_run, "TCPServer", ZeroCopyTCPServer)  # noqa: B010


#: Requests whose body may be tapped (uploads are PATCH, PUT and POST): the rest skip the header scan.
_BODY_METHODS = frozenset({"PATCH", "PUT", "POST"})


def _tap_for(request: Any) -> body_tap.BodyTap | None:
    """A tap for a request whose body is announced with a Content-Length of TAP_MIN or more."""
    length = None
    for name, value in request.headers:
        name = name.lower()
        if name == b"transfer-encoding":
            return None
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
    if length is None or length < body_tap.TAP_MIN or not body_tap.supported(asyncio.get_running_loop()):
        return None
    return body_tap.BodyTap(length)


class _Offering:
    """Hypercorn's app wrapper, adding the extensions to the scope of every request it starts."""

    def __init__(self, app: Any, stream: Any) -> None:
        self.app, self.stream = app, stream

    async def __call__(self, scope: Any, receive: Any, *args: Any) -> Any:
        scope["extensions"] = {**(scope.get("extensions") or {}), EXTENSION: {}}
        tap = self.stream.tap
        if tap is not None:
            scope["extensions"][body_tap.EXTENSION] = {"tap": tap}
            receive = _declining(receive, tap)
        return await self.app(scope, receive, *args)


def _declining(receive: Any, tap: body_tap.BodyTap) -> Any:
    """``receive``, which first declines the tap: an application reading messages wants them."""

    async def receive_declining() -> Any:
        tap.decline()
        return await receive()

    return receive_declining
