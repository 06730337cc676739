"""Profiling: ``/v2/_zot/pprof/`` lists the profiles; ``/v2/_zot/pprof/<name>`` takes one.

Profiles (:mod:`common.profiling`): ``profile?seconds=N`` (CPU), ``heap?top=N`` (tracemalloc),
``tasks`` (asyncio task stacks), ``threads``. Without ``?shard=I`` the profile is of the
gateway worker that answers; with it, of shard I. Admin-only when auth is configured.
"""

from __future__ import annotations

import html

from quart import Response, request

from common import messages
from common.errors import ErrorCode, RegistryError
from common.profiling import MAX_SECONDS, PROFILES, run_profile
from gateway.context import authorize, current_state
from gateway.httputil import int_param

PREFIX = "/v2/_zot/pprof"


async def index() -> Response:
    await authorize(None, "admin")
    shards = current_state().client.count
    rows = []
    for name, what in PROFILES.items():
        links = [f'<a href="{PREFIX}/{name}">gateway</a>']
        links += [f'<a href="{PREFIX}/{name}?shard={i}">shard {i}</a>' for i in range(shards)]
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(what)}</td><td>{' '.join(links)}</td></tr>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>shardreg profiles</title></head><body>"
            "<h1>Profiles</h1><table border='1' cellpadding='4'><tr><th>profile</th><th>what</th><th>of</th></tr>"
            + "".join(rows) + "</table></body></html>")
    return Response(page.encode(), status=200, content_type="text/html; charset=utf-8")


async def profile(name: str) -> Response:
    await authorize(None, "admin")
    if name not in PROFILES:
        raise RegistryError(ErrorCode.NOT_FOUND, "unknown profile", detail={"profiles": list(PROFILES)})
    seconds = int_param(request.args.get("seconds"), "seconds", 1) or 5
    if seconds > MAX_SECONDS:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"seconds must be at most {MAX_SECONDS:g}", status=400)
    top = int_param(request.args.get("top"), "top", 1) or 25
    shard = int_param(request.args.get("shard"), "shard")
    if shard is None:
        text = await run_profile(name, seconds, top)
    else:
        client = current_state().client
        if shard >= client.count:
            raise RegistryError(ErrorCode.BAD_REQUEST, f"shard must be below {client.count}", status=400)
        reply = await client.call(shard, messages.DEBUG_PROFILE({"kind": name, "seconds": seconds, "top": top}),
                                  timeout=seconds + client.timeout)
        text = reply.result["text"]
    return Response(text.encode(), status=200, content_type="text/plain; charset=utf-8")
