"""The metrics middleware (records every request) and the scrape endpoint; see :mod:`gateway.metrics`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from common.config import Config
from common.errors import ErrorCode, RegistryError
from gateway.auth.access import AccessControl
from gateway.httputil import error_body, error_headers
from gateway.metrics.cluster import cluster_text, shard_statuses
from gateway.metrics.labels import UPLOAD_ROUTES, classify
from gateway.metrics.multiprocess import render, worker_pids
from gateway.metrics.series import Series
from gateway.metrics.settings import MetricsSettings, metrics_settings
from gateway.shard_client import ShardClient
from gateway.sync_status import sync_metrics_text

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CLIENT_GONE = 499


async def _respond(send: Send, status: int, headers: dict[str, str], body: bytes, head: bool = False) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if head else body, "more_body": False})


class Metrics:
    """One per gateway worker: records every request and answers scrapes at ``settings.path``."""

    def __init__(self, settings: MetricsSettings, access: AccessControl) -> None:
        self.settings, self.access = settings, access
        self.series = Series()
        #: The shards run on this host without a metrics listener: their storage and processes are reported here.
        self.shards_here = False
        self.sync = False  # extensions.sync is active: /metrics adds the sync series
        #: The worker's shard client (set by the app): the shards' storage is asked at scrape time.
        self.shards: Callable[[], ShardClient] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Serve one HTTP request through ``app`` (or the metrics page itself), recording it."""
        path = scope["path"]
        method = scope["method"] if scope["method"] in METHODS else "other"
        if path == self.settings.path:
            route, repo = self.settings.path, None
            app = self.serve
        else:
            route, repo = classify(path)
        upload = route in UPLOAD_ROUTES
        status, received, sent = 0, 0, 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def counting_send(message: dict[str, Any]) -> None:
            nonlocal status, sent
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        start = time.perf_counter()
        if upload:
            self.series.uploads.inc()
        try:
            await app(scope, counting_receive, counting_send)
        except Exception:
            status = status or 500  # Hypercorn answers 500 for an app that raised before responding
            raise
        finally:
            if upload:
                self.series.uploads.dec()
            self.series.record_request(method, route, repo, status or CLIENT_GONE, received, sent,
                                       time.perf_counter() - start)

    def render(self) -> bytes:
        return render(self.series.registry)

    async def authorize(self, headers: dict[str, str], client: str | None) -> None:
        """zot's metrics authorization, decided by :meth:`AccessControl.authorize`; raises 401/403."""
        await self.access.authorize(headers, None, "metrics", client)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        try:
            if scope["method"] not in ("GET", "HEAD"):
                raise RegistryError(ErrorCode.METHOD_NOT_ALLOWED, status=405)
            await self.authorize(headers, client[0] if client else None)
            statuses = await shard_statuses(self.shards()) if self.shards is not None else []
            body = await asyncio.to_thread(self.render)
            body += await asyncio.to_thread(cluster_text, self.shards_here, statuses, worker_pids())
            if self.sync and self.shards is not None:  # extensions.sync: the upstreams' figures
                body += await sync_metrics_text(self.shards())
        except RegistryError as exc:
            await _respond(send, exc.status, error_headers(exc), error_body(exc))
            return
        await _respond(send, 200, {"Content-Type": CONTENT_TYPE_LATEST}, body, head=scope["method"] == "HEAD")


def setup(config: Config, access: AccessControl) -> Metrics | None:
    """Called once per gateway app: a :class:`Metrics` when ``extensions.metrics`` is enabled."""
    settings = metrics_settings(config)
    if not settings.enable:
        return None
    metrics = Metrics(settings, access)
    metrics.shards_here = not config.cluster.endpoints and not config.cluster.shard_metrics_port
    metrics.sync = config.extensions.sync.active
    return metrics
