"""Zero-copy blob bodies: the bytes of a blob file go to the socket with ``sendfile(2)``, not through Python.

Two halves, one standard between them (ASGI's zero-copy send extension):

* **Server** (:func:`gateway.zerocopy_server.install`, in every Hypercorn worker): on a plain-HTTP/1.1 connection the request
  scope offers ``extensions["http.response.zerocopysend"]``, and a ``http.response.zerocopysend``
  message (``file``, ``offset``, ``count``, ``more_body``) is written with ``os.sendfile`` on the
  connection's socket. h11 still frames the response: the region is handed to it as a placeholder of
  the right length (``send_with_data_passthrough``), so Content-Length and keep-alive stay checked
  exactly as for bytes. TLS connections (the kernel cannot encrypt) and HTTP/2 (frames) never offer
  the extension and keep the copying path.
* **Application**: a handler that sees the extension offered yields :class:`FileRegion` objects in its
  body instead of bytes (:func:`file_regions`). They travel through the gateway's middlewares as
  ``http.response.body`` messages whose ``len()`` is the region's size (byte counters and access logs
  stay right), and :class:`ZeroCopyApp`, the outermost layer, turns each into a
  ``http.response.zerocopysend`` message (or into bytes, should a server not offer the extension).

Only blob files are ever sent this way: content-addressed files whose digest was verified before they
were renamed into place, never modified afterwards (:mod:`gateway.distribution.blobs`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

EXTENSION = "http.response.zerocopysend"
MESSAGE = "http.response.zerocopysend"

@dataclass(frozen=True)
class FileRegion:
    """``count`` bytes of an open file from ``offset``: a response body part the server sends itself."""

    file: BinaryIO
    offset: int
    count: int

    def __len__(self) -> int:
        return self.count

    def read(self) -> bytes:
        """The bytes, for a server without the extension (never on the zero-copy path)."""
        data = os.pread(self.file.fileno(), self.count, self.offset)
        if len(data) != self.count:
            raise OSError(f"short read: {len(data)} of {self.count} bytes at {self.offset}")
        return data


def offered(scope: Mapping[str, Any]) -> bool:
    """Whether the server serving this request sends file regions itself."""
    return EXTENSION in (scope.get("extensions") or {})


async def file_regions(path: Path, start: int, end: int) -> AsyncIterator[FileRegion]:
    """The body of bytes ``start..end`` of a blob file, as one region; the file stays open until sent.

    Opened on the event loop: the caller has just looked the file up (``stat``) there too, and a
    thread-pool hand-off per blob GET cost more than the ``open`` (6-12 % of a worker serving small
    pulls, py-spy; docs/performance.md)."""
    file = open(path, "rb", 0)  # noqa: SIM115 - closed below, once the region is sent
    try:
        if end > start:
            yield FileRegion(file, start, end - start)
    finally:
        file.close()


class ZeroCopyApp:
    """The outermost ASGI layer: :class:`FileRegion` bodies → ``http.response.zerocopysend`` messages."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:  # the gateway's attributes (state, quart ...) stay reachable
        return getattr(self.app, name)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        zero_copy = offered(scope)

        async def regions_send(message: dict[str, Any]) -> None:
            body = message.get("body")
            if message["type"] == "http.response.body" and isinstance(body, FileRegion):
                more = message.get("more_body", False)
                if zero_copy:
                    message = {"type": MESSAGE, "file": body.file, "offset": body.offset, "count": body.count,
                               "more_body": more}
                else:
                    message = {"type": "http.response.body", "body": await asyncio.to_thread(body.read),
                               "more_body": more}
            await send(message)

        await self.app(scope, receive, regions_send)
