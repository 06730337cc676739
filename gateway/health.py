"""Health endpoints as zot serves them: ``/livez`` (process up), ``/readyz`` and ``/startupz``
(every shard answers a ping)."""

from __future__ import annotations

import asyncio

from quart import Blueprint, Response

from common import messages
from common.errors import RegistryError
from gateway.distribution.common import state

blueprint = Blueprint("health", __name__)
PING_TIMEOUT = 2.0


@blueprint.route("/livez", methods=["GET", "HEAD"])
async def livez() -> Response:
    return Response(b"ok\n", status=200, content_type="text/plain")


async def _shards_ready() -> list[int]:
    client = state().client

    async def ping(index: int) -> bool:
        try:
            await client.call(index, messages.PING({}), timeout=PING_TIMEOUT)
            return True
        except RegistryError:
            return False

    results = await asyncio.gather(*(ping(i) for i in range(client.count)))
    return [i for i, ok in enumerate(results) if not ok]


@blueprint.route("/readyz", methods=["GET", "HEAD"])
@blueprint.route("/startupz", methods=["GET", "HEAD"])
async def readyz() -> Response:
    down = await _shards_ready()
    if down:
        return Response(f"shards unavailable: {down}\n".encode(), status=503, content_type="text/plain",
                        headers={"Retry-After": "1"})
    return Response(b"ok\n", status=200, content_type="text/plain")
