"""Make sure a request body is read before its answer goes out.

Quart stops reading a request's body as soon as the handler has answered (a 405, a 401, an
early 400). Hypercorn then cannot reuse the connection, and closing a socket with unread
input makes the kernel reset it, which can destroy the answer on its way to the client. So,
just before the answer starts, this layer reads and drops what is left of a small body; for
a large one it asks for the connection to be closed instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
#: Bodies up to this size are read and dropped; beyond it the connection is closed.
DRAIN_LIMIT = 8 * 1024 * 1024
POLL = 0.05


async def call_with_body_guard(app: ASGIApp, scope: dict[str, Any], receive: Any, send: Any) -> None:
    done = False

    async def tracked_receive() -> dict[str, Any]:
        nonlocal done
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            done = True
        return message

    async def guarded_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and not done:
            seen = 0
            # Quart's own reader may still be receiving concurrently: poll, never block forever.
            while not done and seen <= DRAIN_LIMIT:
                try:
                    part = await asyncio.wait_for(tracked_receive(), POLL)
                except TimeoutError:
                    continue
                seen += len(part.get("body", b""))
            if not done:
                message = dict(message, headers=[*message.get("headers", []), (b"connection", b"close")])
        await send(message)

    await app(scope, tracked_receive, guarded_send)
