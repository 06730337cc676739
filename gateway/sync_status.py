"""The sync registries' state, summed over the shards (``sync.status``): metrics and the mgmt listing.

Series (all summed over the shards, which each fetch for the repositories they own):

====================================================  ===============================================
``shardreg_sync_upstream_requests_total``             upstream requests by ``registry``, ``kind``
                                                      (manifest, blob, tags, …) and ``outcome``
                                                      (the HTTP status, or ``error``: unreachable)
``shardreg_sync_upstream_bytes_total{registry}``      bytes fetched from the upstream
``shardreg_sync_cache_hits_total{kind}``,             pull-through requests served from the cache /
``shardreg_sync_cache_misses_total{kind}``            that went to the upstream
``shardreg_sync_waiters_total{kind}``                 requests that joined a fetch already in flight
``shardreg_sync_downloads_in_progress``               blob downloads now
``shardreg_sync_upstream_up{registry}``               0 when the last request failed to connect
====================================================  ===============================================
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from common import messages
from common.errors import RegistryError
from gateway.shard_client import ShardClient

STATUS_TIMEOUT = 2.0


async def shard_sync_statuses(client: ShardClient) -> list[dict[str, Any] | None]:
    async def one(index: int) -> dict[str, Any] | None:
        try:
            return dict((await client.call(index, messages.SYNC_STATUS({}), timeout=STATUS_TIMEOUT)).result)
        except RegistryError:
            return None

    return list(await asyncio.gather(*(one(i) for i in range(client.count))))


def summary(statuses: list[dict[str, Any] | None]) -> dict[str, Any]:
    """One entry per registry (merged over the shards) and the cluster's counters."""
    registries: dict[str, dict[str, Any]] = {}
    counters: dict[str, int] = defaultdict(int)
    for status in statuses:
        if status is None:
            continue
        for key, value in status.get("counters", {}).items():
            counters[key] += value
        for entry in status["registries"]:
            merged = registries.setdefault(entry["name"], {
                "name": entry["name"], "urls": entry["urls"], "onDemand": entry["onDemand"],
                "periodic": entry["periodic"], "pollInterval": entry["pollInterval"], "requests": {},
                "bytes": 0, "tokenRequests": 0, "lastError": "", "lastErrorAt": 0.0, "lastOkAt": 0.0,
                "mirroredRepos": 0, "lastMirrorAt": 0.0})
            for key, n in entry["requests"].items():
                merged["requests"][key] = merged["requests"].get(key, 0) + n
            merged["bytes"] += entry["bytes"]
            merged["tokenRequests"] += entry.get("tokenRequests", 0)
            merged["mirroredRepos"] += entry.get("mirroredRepos", 0)
            merged["lastMirrorAt"] = max(merged["lastMirrorAt"], entry.get("lastMirrorAt", 0.0))
            merged["lastOkAt"] = max(merged["lastOkAt"], entry["lastOkAt"])
            if entry["lastErrorAt"] > merged["lastErrorAt"]:
                merged["lastError"], merged["lastErrorAt"] = entry["lastError"], entry["lastErrorAt"]
    for merged in registries.values():
        merged["state"] = ("failing" if merged["lastErrorAt"] > merged["lastOkAt"]
                           else "ok" if merged["lastOkAt"] else "idle")
    answered = sum(1 for s in statuses if s is not None)
    return {"registries": list(registries.values()), "counters": dict(counters),
            "shards": {"answered": answered, "total": len(statuses)}}


class SyncCollector:
    def __init__(self, statuses: list[dict[str, Any] | None]) -> None:
        self.summary = summary(statuses)

    def collect(self) -> Iterable[Metric]:
        requests = Metric("shardreg_sync_upstream_requests", "Upstream requests by registry, kind and outcome",
                          "counter")
        fetched = Metric("shardreg_sync_upstream_bytes", "Bytes fetched from the upstream", "counter")
        up = Metric("shardreg_sync_upstream_up", "0 when the registry's last request failed", "gauge")
        hits = Metric("shardreg_sync_cache_hits", "Pull-through requests served from the cache", "counter")
        misses = Metric("shardreg_sync_cache_misses", "Pull-through requests that went to the upstream", "counter")
        waiters = Metric("shardreg_sync_waiters", "Requests that joined an upstream fetch in flight", "counter")
        downloading = Metric("shardreg_sync_downloads_in_progress", "Blob downloads in progress", "gauge")
        for registry in self.summary["registries"]:
            name = registry["name"]
            for key, n in registry["requests"].items():
                kind, outcome = key.split("/", 1)
                requests.add_sample("shardreg_sync_upstream_requests_total",
                                    {"registry": name, "kind": kind, "outcome": outcome}, n)
            fetched.add_sample("shardreg_sync_upstream_bytes_total", {"registry": name}, registry["bytes"])
            up.add_sample("shardreg_sync_upstream_up", {"registry": name}, 0 if registry["state"] == "failing" else 1)
        counters = self.summary["counters"]
        for kind in ("manifest", "blob"):
            hits.add_sample("shardreg_sync_cache_hits_total", {"kind": kind}, counters.get(f"{kind}_hits", 0))
            misses.add_sample("shardreg_sync_cache_misses_total", {"kind": kind}, counters.get(f"{kind}_misses", 0))
            waiters.add_sample("shardreg_sync_waiters_total", {"kind": kind}, counters.get(f"{kind}_waiters", 0))
        downloading.add_sample("shardreg_sync_downloads_in_progress", {}, counters.get("downloading", 0))
        return [requests, fetched, up, hits, misses, waiters, downloading]


async def sync_metrics_text(client: ShardClient) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SyncCollector(await shard_sync_statuses(client)))
    return generate_latest(registry)


async def sync_listing() -> dict[str, Any]:
    """``mgmt?resource=sync``: authorized as ``/metrics`` is (the one decision point), then the summary."""
    from quart import request

    from gateway.context import current_state

    state = current_state()
    await state.access.authorize(request.headers, None, "metrics", request.remote_addr)
    if not state.config.extensions.sync.active:
        return {"enabled": False, "registries": [], "counters": {}}
    return {"enabled": True, **summary(await shard_sync_statuses(state.client))}
