"""Gateway metrics: Prometheus text at ``extensions.metrics.prometheus.path`` (zot's extension).

Switched on by ``extensions.metrics`` as in zot (``{"enable": true, "prometheus": {"path":
"/metrics"}}``; a section without ``enable`` counts as enabled, the path defaults to
``/metrics``). :class:`Metrics` wraps the whole ASGI app, so one place sees every request: the
Quart routes and the plain-ASGI upload path alike. Route labels come from :func:`classify`, a
small table of the gateway's route templates (never the raw path: label values stay bounded).

Series (``zot_`` where zot defines the metric, so zot dashboards work; ``shardreg_`` for ours):

====================================================  ===========================================
``zot_http_requests_total{method,route,code}``        requests served (zot labels ``method``,
                                                      ``code``; ``route`` added)
``zot_http_method_latency_seconds{method,route}``     histogram, request start → last body byte
``shardreg_http_received_bytes_total{method,route}``  request body bytes
``shardreg_http_sent_bytes_total{method,route}``      response body bytes
``shardreg_http_uploads_in_progress``                 upload-route requests being served (sum
                                                      over live workers)
``zot_repo_downloads_total{repo}``                    manifest GETs answered 200 (zot counts a
                                                      download when it serves a manifest)
``zot_repo_uploads_total{repo}``                      manifest PUTs answered 201
``shardreg_shard_request_seconds{op}``                histogram, ZeroMQ request → reply per op
``shardreg_shard_request_timeouts_total{op}``         ZeroMQ requests that got no reply in time
====================================================  ===========================================

A request that ends without a response (client gone) is counted with code ``499``.

Hypercorn runs several worker processes: :func:`multiprocess_dir` (called by the master in
``gateway/server.py``) gives them a fresh ``PROMETHEUS_MULTIPROC_DIR`` they inherit, so every
worker writes its figures there and a scrape answered by any worker sums them all
(prometheus-client multiprocess mode). Live gauges of workers that died are dropped at the next
scrape (``mark_process_dead``). A ``PROMETHEUS_MULTIPROC_DIR`` already in the environment (the
Helm chart sets one) is used as the parent of the fresh directory, never reused as is: stale
files of an earlier gateway would be summed in.

Access (zot's ``http.accessControl.metrics{users, anonymousPolicy}``): without authentication
configured the endpoint is open; with authentication but no ``accessControl`` any authenticated
user may read it; with ``accessControl`` only the listed ``users`` may, and anonymous callers only
when ``anonymousPolicy`` contains ``read``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import values as prometheus_values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from common.config import Config
from common.errors import ErrorCode, RegistryError
from gateway.http import error_body, error_headers

if TYPE_CHECKING:  # the shard client imports this module: no import cycle through gateway.state
    from gateway.auth import AccessControl

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_PATH = "/metrics"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Request latency buckets (seconds): small manifest reads up to multi-GiB blob transfers.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)
#: ZeroMQ round trips: sub-millisecond metadata ops up to fsync'd commits of large blobs.
SHARD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CLIENT_GONE = 499


# -- config ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricsSettings:
    enable: bool = False
    path: str = DEFAULT_PATH
    #: ``http.accessControl.metrics.users``.
    users: frozenset[str] = frozenset()
    #: ``http.accessControl.metrics.anonymousPolicy`` contains ``read``.
    anonymous_read: bool = False


def metrics_settings(config: Config) -> MetricsSettings:
    """``extensions.metrics`` with ``http.accessControl.metrics`` (both parsed by :mod:`common.config`)."""
    ext, access = config.extensions.metrics, config.http.access_control.metrics
    return MetricsSettings(enable=ext.enable, path=ext.path, users=access.users, anonymous_read=access.anonymous_read)


# -- the master process: a fresh multiprocess directory -----------------------------------------
@contextmanager
def multiprocess_dir(config: Config) -> Iterator[Path | None]:
    """Around ``hypercorn.run``: a fresh ``PROMETHEUS_MULTIPROC_DIR`` for the workers, removed at exit."""
    if not metrics_settings(config).enable:
        yield None
        return
    previous = os.environ.get(MULTIPROC_ENV)
    parent = None
    if previous:
        try:
            os.makedirs(previous, exist_ok=True)
            parent = previous
        except OSError:
            parent = None
    path = tempfile.mkdtemp(prefix="shardreg-metrics-", dir=parent)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous


def _multiprocess_mode() -> bool:
    """Whether this process's metric values live in files (decided when prometheus_client loaded)."""
    return prometheus_values.ValueClass is not prometheus_values.MutexValue and bool(os.environ.get(MULTIPROC_ENV))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_PID_FILE = re.compile(r"_(\d+)\.db$")


def sweep_dead_workers(path: str) -> list[int]:
    """``mark_process_dead`` for every worker whose files are here but which is gone."""
    pids = set()
    for name in os.listdir(path):
        match = _PID_FILE.search(name)
        if match:
            pids.add(int(match.group(1)))
    dead = [pid for pid in pids if pid != os.getpid() and not _pid_alive(pid)]
    for pid in dead:
        try:
            mark_process_dead(pid, path)
        except FileNotFoundError:
            pass  # another worker swept it at the same moment
    return dead


# -- route templates ------------------------------------------------------------------------------
_REPO_ROUTES = (
    (re.compile(r"^/v2/(?P<name>.+)/manifests/[^/]+$"), "/v2/{name}/manifests/{reference}"),
    (re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?$"), "/v2/{name}/blobs/uploads/"),
    (re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/[^/]+$"), "/v2/{name}/blobs/uploads/{uuid}"),
    (re.compile(r"^/v2/(?P<name>.+)/blobs/[^/]+$"), "/v2/{name}/blobs/{digest}"),
    (re.compile(r"^/v2/(?P<name>.+)/tags/list/?$"), "/v2/{name}/tags/list"),
    (re.compile(r"^/v2/(?P<name>.+)/referrers/[^/]+$"), "/v2/{name}/referrers/{digest}"),
    (re.compile(r"^/oras/artifacts/v1/(?P<name>.+)/manifests/[^/]+/referrers$"),
     "/oras/artifacts/v1/{name}/manifests/{digest}/referrers"),
)
_STATIC_ROUTES = frozenset({
    "/v2/", "/v2/_catalog", "/v2/_oci/ext/discover", "/v2/_zot/ext/search", "/v2/_zot/ext/mgmt",
    "/v2/_zot/ext/userprefs", "/v2/_zot/ext/cosign", "/v2/_zot/ext/notation", "/v2/_zot/pprof/",
    "/v2/_zot/debug/graphql-playground", "/v2/zot/auth/apikey", "/zot/auth/apikey", "/zot/auth/login",
    "/zot/auth/logout", "/auth/token", "/livez", "/readyz", "/startupz", "/swagger/v2/", "/swagger/v2/doc.json",
})
_PREFIX_ROUTES = (("/v2/_zot/pprof/", "/v2/_zot/pprof/{name}"), ("/swagger/v2/", "/swagger/v2/{asset}"),
                  ("/static/", "/static/{filename}"))
OTHER_ROUTE = "other"


def classify(path: str) -> tuple[str, str | None]:
    """The route template of ``path`` and the repository it names (if any)."""
    if path in _STATIC_ROUTES:
        return path, None
    trimmed = path.rstrip("/")
    if trimmed in _STATIC_ROUTES:
        return trimmed, None
    if trimmed + "/" in _STATIC_ROUTES:
        return trimmed + "/", None
    for prefix, template in _PREFIX_ROUTES:
        if path.startswith(prefix):
            return template, None
    if path.startswith(("/v2/", "/oras/")):
        for pattern, template in _REPO_ROUTES:
            match = pattern.match(path)
            if match:
                return template, match.group("name")
    return OTHER_ROUTE, None


async def _respond(send: Send, status: int, headers: dict[str, str], body: bytes, head: bool = False) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if head else body, "more_body": False})


# -- the worker side --------------------------------------------------------------------------------
class Metrics:
    """One per gateway worker: records every request and answers scrapes at ``settings.path``."""

    def __init__(self, settings: MetricsSettings, access: AccessControl) -> None:
        self.settings, self.access = settings, access
        self.auth_enabled = access.enabled
        self.access_control = access.config.http.access_control.present
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("zot_http_requests", "HTTP requests served", ["method", "route", "code"], registry=r)
        self.latency = Histogram("zot_http_method_latency_seconds", "Time to serve an HTTP request",
                                 ["method", "route"], buckets=HTTP_BUCKETS, registry=r)
        self.received = Counter("shardreg_http_received_bytes", "Request body bytes received",
                                ["method", "route"], registry=r)
        self.sent = Counter("shardreg_http_sent_bytes", "Response body bytes sent", ["method", "route"], registry=r)
        self.uploads = Gauge("shardreg_http_uploads_in_progress", "Blob upload requests being served",
                             multiprocess_mode="livesum", registry=r)
        self.repo_downloads = Counter("zot_repo_downloads", "Total number of times an image was downloaded",
                                      ["repo"], registry=r)
        self.repo_uploads = Counter("zot_repo_uploads", "Total number of times an image was uploaded",
                                    ["repo"], registry=r)
        self.shard_latency = Histogram("shardreg_shard_request_seconds", "ZeroMQ request to reply, per wire op",
                                       ["op"], buckets=SHARD_BUCKETS, registry=r)
        self.shard_timeouts = Counter("shardreg_shard_request_timeouts", "ZeroMQ requests not answered in time",
                                      ["op"], registry=r)

    # -- recording ----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Serve one HTTP request through ``app`` (or the metrics page itself), recording it."""
        path = scope["path"]
        method = scope["method"] if scope["method"] in METHODS else "other"
        if path == self.settings.path:
            route, repo = self.settings.path, None
            app = self.serve  # type: ignore[assignment]
        else:
            route, repo = classify(path)
        upload = route.startswith("/v2/{name}/blobs/uploads")
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
            self.uploads.inc()
        try:
            await app(scope, counting_receive, counting_send)
        except Exception:
            status = status or 500  # Hypercorn answers 500 for an app that raised before responding
            raise
        finally:
            if upload:
                self.uploads.dec()
            self._record(method, route, repo, status or CLIENT_GONE, received, sent, time.perf_counter() - start)

    def _record(self, method: str, route: str, repo: str | None, status: int, received: int, sent: int,
                seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if received:
            self.received.labels(method, route).inc(received)
        if sent:
            self.sent.labels(method, route).inc(sent)
        if repo is not None and route == "/v2/{name}/manifests/{reference}":
            if method == "GET" and status == 200:
                self.repo_downloads.labels(repo).inc()
            elif method == "PUT" and status == 201:
                self.repo_uploads.labels(repo).inc()

    def observe_shard_call(self, op: str, seconds: float) -> None:
        self.shard_latency.labels(op).observe(seconds)

    def shard_timeout(self, op: str) -> None:
        self.shard_timeouts.labels(op).inc()

    # -- the scrape ---------------------------------------------------------------------------------
    def render(self) -> bytes:
        if not _multiprocess_mode():
            return generate_latest(self.registry)
        path = os.environ[MULTIPROC_ENV]
        sweep_dead_workers(path)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=path)
        return generate_latest(registry)

    async def authorize(self, headers: dict[str, str], client: str | None) -> None:
        """zot's metrics authorization (see the module docstring); raises 401/403."""
        if not self.auth_enabled:
            return
        identity = await self.access.authenticate(headers, client)
        if not self.access_control:
            if identity.anonymous:
                raise self.access.unauthorized(headers, None, None)
            return
        if identity.anonymous:
            if not self.settings.anonymous_read:
                raise self.access.unauthorized(headers, None, None)
            return
        if identity.name not in self.settings.users:
            raise RegistryError(ErrorCode.DENIED, detail={"resource": "metrics"})

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        try:
            if scope["method"] not in ("GET", "HEAD"):
                raise RegistryError(ErrorCode.METHOD_NOT_ALLOWED, status=405)
            await self.authorize(headers, client[0] if client else None)
            body = await asyncio.to_thread(self.render)
        except RegistryError as exc:
            await _respond(send, exc.status, error_headers(exc), error_body(exc))
            return
        await _respond(send, 200, {"Content-Type": CONTENT_TYPE_LATEST}, body, head=scope["method"] == "HEAD")


#: This worker's metrics (None while disabled): the shard client reports to it.
active: Metrics | None = None


def setup(config: Config, access: AccessControl) -> Metrics | None:
    """Called once per gateway app: a :class:`Metrics` when ``extensions.metrics`` is enabled."""
    global active
    settings = metrics_settings(config)
    active = Metrics(settings, access) if settings.enable else None
    return active


def observe_shard_call(op: str, started: float) -> None:
    """Shard client: a reply to ``op`` arrived (``started`` = ``time.perf_counter()`` at send)."""
    if active is not None:
        active.observe_shard_call(op, time.perf_counter() - started)


def shard_timeout(op: str) -> None:
    if active is not None:
        active.shard_timeout(op)
