"""Admin routes of the storage lifecycle (docs/lifecycle.md).

* ``POST /v2/_shardreg/retention?dryRun=true&gc=true``: one retention pass on every shard now
  (``dryRun``: plan only), answered with the plan per repository, the blobs gc would unlink
  (``gc``) and each shard's report — what ``shardreg retention|gc --dry-run`` print;
* ``PUT /v2/_shardreg/debug/clock`` ``{"offset": seconds}``: move the shards' lifecycle clock
  (tests build a history of pushes and pulls days apart); only with ``extensions.debug``.
"""

from __future__ import annotations

import math
from typing import Any

from quart import Response, request

from common import boundedjson
from common import messages_lifecycle as messages
from common.errors import ErrorCode, RegistryError
from gateway.context import authorize, current_state
from gateway.extensions.common import json_response

_TRUE = {"1", "true", "yes"}
#: Longest a pass on every shard may take before the route answers 503.
PASS_TIMEOUT = 600.0
#: The furthest the debug clock moves the shards' lifecycle time (seconds, ~100 years either way).
MAX_CLOCK_OFFSET = 100 * 365.25 * 86400


async def retention() -> Response:
    await authorize(None, "admin")
    dry_run = request.args.get("dryRun", "false").lower() in _TRUE
    gc = request.args.get("gc", "false").lower() in _TRUE
    # a pass is bounded (shard/retention.py) but may outlast cluster.requestTimeout on a large shard
    replies = await current_state().client.call_all(messages.RETENTION_RUN({"dry_run": dry_run, "gc": gc}),
                                                    timeout=PASS_TIMEOUT)
    repos: dict[str, Any] = {}
    blobs: dict[str, Any] = {}
    shards = []
    for index, reply in enumerate(replies):
        report = reply.result["report"]
        repos.update(report.get("repos") or {})
        blobs.update(report.get("blobs") or {})
        shards.append({"shard": index, "dryRun": report.get("dryRun"), "deleted": report.get("deleted", 0),
                       "skipped": report.get("skipped", 0), "incomplete": bool(report.get("incomplete"))})
    body: dict[str, Any] = {"dryRun": all(s["dryRun"] for s in shards), "repositories": dict(sorted(repos.items())),
                            "shards": shards}
    if gc:
        body["blobs"] = dict(sorted(blobs.items()))
    return json_response(body)


async def clock() -> Response:
    await authorize(None, "admin")
    try:
        offset = float(boundedjson.loads(await request.get_data())["offset"])
    except (ValueError, KeyError, TypeError, OverflowError):
        offset = math.nan
    if not abs(offset) <= MAX_CLOCK_OFFSET:  # NaN too
        raise RegistryError(ErrorCode.BAD_REQUEST,
                            f'expected {{"offset": seconds}}, at most {MAX_CLOCK_OFFSET:.0f} either way')
    await current_state().client.call_all(messages.CLOCK_SET({"offset": offset}))
    return json_response({"offset": offset})
