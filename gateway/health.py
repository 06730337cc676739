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


async def _shards_ready() -> list[int]:
    client = current_state().client

    async def ping(index: int) -> bool:
        try:
            await client.call(index, messages.PING({}), timeout=PING_TIMEOUT)
            return True
        except RegistryError:
            return False

    results = await asyncio.gather(*(ping(i) for i in range(client.count)))
    return [i for i, ok in enumerate(results) if not ok]


async def readyz() -> Response:
    down = await _shards_ready()
    if down:
        return Response(f"shards unavailable: {down}\n".encode(), status=503, content_type="text/plain",
                        headers={"Retry-After": "1"})
    return Response(b"ok\n", status=200, content_type="text/plain")
