"""The server half of zero-copy blob bodies (see :mod:`gateway.zerocopy`): Hypercorn's HTTP/1.1 path.

:func:`install` runs in every gateway worker; :func:`create_app` is what the workers serve (the gateway
application behind :class:`~gateway.zerocopy.ZeroCopyApp`). Kept apart from :mod:`gateway.zerocopy`,
which the request handlers import, so that the handlers never depend on the application that routes to them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from gateway.zerocopy import EXTENSION, MESSAGE, FileRegion, ZeroCopyApp

#: In multiprocess mode (a gateway with metrics on) these reach /metrics like the gateway's own series.
SENT_BYTES = Counter("shardreg_http_zerocopy_sent_bytes", "Response body bytes sent with sendfile (zero-copy)",
                     registry=None)
SENDS = Counter("shardreg_http_zerocopy_sends", "Response body regions sent with sendfile (zero-copy)",
                registry=None)


def create_app() -> ZeroCopyApp:
    """What the Hypercorn workers serve: the gateway application behind :class:`ZeroCopyApp`."""
    from gateway.app import create_app as create_gateway

    return ZeroCopyApp(create_gateway())


def install() -> None:
    """Teach this worker's Hypercorn (0.17/0.18 asyncio) the zero-copy send extension on plain HTTP/1.1."""
    import hypercorn.asyncio.run as hypercorn_run
    import hypercorn.protocol as hypercorn_protocol
    import hypercorn.protocol.h11 as hypercorn_h11
    from hypercorn.events import Closed, RawData
    from hypercorn.events import Event as ConnectionEvent
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
        """An HTTP/1.1 stream that offers the extension on plain-text connections and serves it."""

        def __init__(self, app: Any, config: Any, context: Any, task_group: Any, ssl: bool, *args: Any) -> None:
            offering: Any = app if ssl else _Offering(app)
            super().__init__(offering, config, context, task_group, ssl, *args)

        async def app_send(self, message: Any) -> None:
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
        """Frames a region with h11 (which sees a placeholder of its length) and hands it to the socket."""

        async def stream_send(self, event: Any) -> None:
            if not isinstance(event, SendFile):
                await super().stream_send(event)
                return
            import h11

            connection: Any = self.connection  # an h11.Connection: a WebSocket stream never sends files
            placeholder: Any = event.region  # h11 only takes its len(); the bytes never pass through Python
            try:
                parts = connection.send_with_data_passthrough(h11.Data(data=placeholder))
            except h11.LocalProtocolError:
                if self.connection.their_state != h11.ERROR:
                    raise
                return
            for part in parts or []:
                if part is event.region:
                    await self.send(RawFile(event.region))
                else:
                    await self.send(RawData(data=part))

    base_server = hypercorn_run.TCPServer

    class ZeroCopyTCPServer(base_server):  # type: ignore[misc, valid-type]
        """Writes :class:`RawFile` events with ``loop.sendfile`` (``os.sendfile`` on a plain socket)."""

        _shardreg_zero_copy = True

        async def protocol_send(self, event: Any) -> None:
            if not isinstance(event, RawFile):
                await super().protocol_send(event)
                return
            region = event.region
            async with self.send_lock:
                try:
                    await self.writer.drain()
                    sent = await self.loop.sendfile(self.writer.transport, region.file, region.offset, region.count)
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


class _Offering:
    """Hypercorn's app wrapper, adding the extension to the scope of every request it starts."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, *args: Any) -> Any:
        scope["extensions"] = {**(scope.get("extensions") or {}), EXTENSION: {}}
        return await self.app(scope, *args)
