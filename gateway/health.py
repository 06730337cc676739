"""Health endpoints as zot serves them: ``/livez`` (process up), ``/readyz`` and ``/startupz``
(every shard answers a ping)."""

from __future__ import annotations

import asyncio

from quart import Response

from common import messages
from common.errors import RegistryError
from gateway.context import current_state

PING_TIMEOUT = 2.0


async def livez() -> Response:
    return Response(b"ok\n", status=200, content_type="text/plain")


async def _shards_ready() -> list[str]:
    """Why each shard that is not ready is not (no answer, or the problem it reports)."""
    client = current_state().client

    async def ping(index: int) -> str | None:
        try:
            reply = await client.call(index, messages.PING({}), timeout=PING_TIMEOUT)
        except RegistryError:
            return f"shard {index}: no answer"
        problem = reply.result.get("problem")
        return f"shard {index}: {problem}" if problem else None

    results = await asyncio.gather(*(ping(i) for i in range(client.count)))
    return [why for why in results if why is not None]


async def readyz() -> Response:
    down = await _shards_ready()
    if down:
        return Response(("shards unavailable: " + "; ".join(down) + "\n").encode(), status=503,
                        content_type="text/plain", headers={"Retry-After": "1"})
    return Response(b"ok\n", status=200, content_type="text/plain")
