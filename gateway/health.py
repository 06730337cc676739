"""Health endpoints as zot serves them: ``/livez`` (process up), ``/startupz`` (every shard answers
a ping) and ``/readyz`` (every shard answers and can write: its ping reply carries its readiness;
a shard whose last write failed for lack of space, whose disk is almost full or not writable is
named with the reason)."""

from __future__ import annotations

import asyncio

from quart import Response

from common import messages
from common.errors import RegistryError
from gateway.context import current_state

PING_TIMEOUT = 2.0


async def livez() -> Response:
    return Response(b"ok\n", status=200, content_type="text/plain")


async def _shard_problems(deep: bool) -> list[str]:
    """One line per shard that is down (or, when ``deep``, cannot write)."""
    client = current_state().client

    async def check(index: int) -> str | None:
        try:
            pong = (await client.call(index, messages.PING({}), timeout=PING_TIMEOUT)).result
        except RegistryError:
            return f"shard {index}: unavailable"
        if not deep or pong.get("ready", True):
            return None
        return f"shard {index}: {pong.get('why', 'not ready')}"

    results = await asyncio.gather(*(check(i) for i in range(client.count)))
    return [problem for problem in results if problem]


def _answer(problems: list[str]) -> Response:
    if problems:
        return Response(("\n".join(problems) + "\n").encode(), status=503, content_type="text/plain",
                        headers={"Retry-After": "1"})
    return Response(b"ok\n", status=200, content_type="text/plain")


async def startupz() -> Response:
    return _answer(await _shard_problems(deep=False))


async def readyz() -> Response:
    return _answer(await _shard_problems(deep=True))
