"""The admin routes of resizing (contract: RESIZE-API in docs/architecture.md, "Resharding").

``POST /v2/_shardreg/cluster/resize`` ``{"shards": M, "maxMbps": X}``, ``POST .../resize/abort`` and
``GET /v2/_shardreg/cluster/status``; all admin-only (``AccessControl.authorize(..., "admin")``).
The decision is the home's (shard 0): these routes ask it and wake this worker's driver.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

from quart import Response

from common import boundedjson, messages
from common.clustermap import ClusterMap
from common.errors import ErrorCode, RegistryError
from gateway.context import authorize, current_state
from gateway.httputil import read_body

MAX_SHARDS = 256


def _json(doc: Any, status: int) -> Response:
    return Response(json.dumps(doc), status=status, content_type="application/json")


def _bad(message: str) -> RegistryError:
    return RegistryError(ErrorCode.BAD_REQUEST, message, status=400)


async def status_document() -> dict[str, Any]:
    """The status document (epoch, phase, the resize, the driver, progress, each shard's state)."""
    client = current_state().client
    home = (await client.call(0, messages.CLUSTER_PLAN_GET({}), timeout=5)).result
    view = ClusterMap.from_wire(home["view"] or {})
    client.set_map(view)
    plan, lease = home["plan"], home["lease"]
    width = view.width
    if plan is not None and plan["state"] in ("running", "aborting"):
        width = max(width, int(plan["to"]), int(plan["from"]))

    async def shard(index: int) -> dict[str, Any]:
        try:
            reply = (await client.call(index, messages.CLUSTER_MAP_GET({}), timeout=3)).result
        except RegistryError:
            return {"index": index, "up": False, "epoch": None, "role": view.role(index), "owned": 0, "moving": 0,
                    "switched": 0, "bytesLeft": 0}
        own = ClusterMap.from_wire(reply["view"]) if reply["view"] else None
        counts = reply.get("counts") or {}
        role = own.role(index) if own else "empty"
        if own and own.phase == "stable" and index < own.shards and own.epoch > 1 and counts.get("held", 0) == 0:
            role = "stable"
        return {"index": index, "up": True, "epoch": own.epoch if own else 0, "role": role,
                "owned": counts.get("owned", 0), "moving": counts.get("moving", 0),
                "switched": counts.get("switched", 0), "bytesLeft": counts.get("bytesLeft", 0),
                "uploadsRefused": counts.get("uploadsRefused", 0)}

    shards = list(await asyncio.gather(*(shard(i) for i in range(width))))
    progress = dict((plan or {}).get("progress") or {})
    if view.phase == "transition":  # durable figures: the sources' move records (a new driver starts at 0)
        progress["names"] = {"done": sum(s["switched"] for s in shards), "left": sum(s["moving"] for s in shards)}
        done = int((progress.get("bytes") or {}).get("done", 0))
        progress["bytes"] = {"done": done, "left": sum(s["bytesLeft"] for s in shards)}
        rate = float(progress.get("bytesPerSecond") or 0.0)
        progress["etaSeconds"] = progress["bytes"]["left"] / rate if rate > 0 else progress.get("etaSeconds")
    resize = None
    if plan is not None:
        resize = {"id": plan["id"], "state": plan["state"], "started": plan["started"], "finished": plan["finished"],
                  "maxMbps": plan.get("maxMbps"), "error": plan.get("error"), "from": plan["from"], "to": plan["to"]}
    driver = None
    if lease and plan and plan["state"] in ("running", "aborting") and lease["until"] > time.time():
        driver = {"holder": lease["holder"], "leaseAge": max(0.0, 10.0 - (lease["until"] - time.time()))}
    return {
        "epoch": view.epoch, "phase": view.phase, "shards": view.shards, "from": view.source_count, "to": view.shards,
        "resize": resize, "driver": driver,
        "progress": {"names": progress.get("names", {"done": 0, "left": 0}),
                     "bytes": progress.get("bytes", {"done": 0, "left": 0}),
                     "bytesPerSecond": progress.get("bytesPerSecond", 0.0), "etaSeconds": progress.get("etaSeconds"),
                     "fence": progress.get("fence", {"p50": 0.0, "p99": 0.0}),
                     "busyRetries": progress.get("busyRetries", 0),
                     "uploadsRefused": sum(s.get("uploadsRefused", 0) for s in shards)
                     if view.phase == "transition" else progress.get("uploadsRefused", 0)},
        "shardStates": shards,
        "errors": list(progress.get("errors", [])) + ([plan["error"]] if plan and plan.get("error") else []),
    }


async def cluster_status() -> Response:
    await authorize(None, "admin")
    return _json(await status_document(), 200)


async def cluster_resize() -> Response:
    await authorize(None, "admin")
    try:
        body = boundedjson.loads(await read_body(64 * 1024) or b"{}", max_depth=4)
    except ValueError:
        raise _bad("the body is not JSON") from None
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    shards, rate = body.get("shards"), body.get("maxMbps")
    if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= MAX_SHARDS:
        raise _bad(f"shards must be an integer in 1..{MAX_SHARDS}")
    if rate is not None and (not isinstance(rate, int | float) or isinstance(rate, bool) or rate <= 0):
        raise _bad("maxMbps must be a number > 0")
    state = current_state()
    client = state.client
    config = state.config
    home = (await client.call(0, messages.CLUSTER_PLAN_GET({}), timeout=5)).result
    view = ClusterMap.from_wire(home["view"] or {})
    if config.cluster.endpoints and shards > len(config.cluster.endpoints):
        raise _bad(f"this gateway knows {len(config.cluster.endpoints)} shard endpoints (cluster.endpoints): "
                   f"add the new shards' endpoints first")
    plan = home["plan"]
    running = plan is not None and plan["state"] in ("running", "aborting")
    if not running and view.phase == "stable" and shards == view.shards:
        return _json(await status_document(), 200)
    await client.call(0, messages.CLUSTER_PLAN_BEGIN(
        {"shards": shards, "max_mbps": float(rate) if rate else None, "id": "r" + secrets.token_hex(3)}), timeout=5)
    driver = getattr(state, "driver", None)
    if driver is not None:
        driver.kick.set()
    return _json(await status_document(), 202)


async def cluster_abort() -> Response:
    await authorize(None, "admin")
    client = current_state().client
    home = (await client.call(0, messages.CLUSTER_PLAN_GET({}), timeout=5)).result
    plan = home["plan"]
    if plan is None or plan["state"] != "running":
        raise RegistryError(ErrorCode.NO_RESIZE, "no resize is running")
    await client.call(0, messages.CLUSTER_PLAN_UPDATE({"token": -1, "changes": {"state": "aborting"}}), timeout=5)
    return _json(await status_document(), 202)
