"""The gateway application: ``create_app()`` builds the ASGI callable Hypercorn serves.

Every route is declared once, in :mod:`gateway.routes`. Requests for blob uploads go to
:mod:`gateway.distribution.uploads` (plain ASGI, bounded memory); everything else goes to the
Quart app, which registers the routes the config switches on. Errors of every kind are rendered
once, here, as OCI error bodies.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import hypercorn.asyncio.tcp_server as hypercorn_tcp
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from common.config import Config, parse_config
from common.errors import ErrorCode, RegistryError
from common.logs import setup_logging
from gateway.accesslog import RequestLog
from gateway.auth.access import AccessControl
from gateway.body_guard import call_with_body_guard
from gateway.cluster.driver import start_driver, stop_driver
from gateway.distribution import reads
from gateway.distribution.uploads import UploadHandler
from gateway.extensions.common import EXTENSIONS_KEY
from gateway.extensions.openapi import DOCUMENT_KEY
from gateway.extensions.openapi_document import document
from gateway.httputil import error_body, error_headers
from gateway.metrics.endpoint import setup as setup_metrics
from gateway.metrics.settings import metrics_settings
from gateway.routes import QUART, ROUTES, UPLOADS, Route, enabled_routes
from gateway.state import STATE_KEY, GatewayState

log = logging.getLogger("shardreg.gateway")
#: The effective config's JSON text, as a gateway hands it to its worker processes.
CONFIG_ENV = "SHARDREG_CONFIG_JSON"
SOCKET_READ_SIZE = 256 * 1024


def _error_response(exc: RegistryError) -> Response:
    response = Response(error_body(exc), status=exc.status)
    for name, value in error_headers(exc).items():
        response.headers[name] = value
    return response


#: The longest part of a request path quoted back in an error.
_PATH_QUOTE = 200


def _http_error(exc: HTTPException, method: str, path: str) -> RegistryError:
    """Quart's routing errors as OCI error bodies that name what was asked for."""
    quoted = path[:_PATH_QUOTE]
    status = exc.code or 400
    if status == 404:
        message = f"no such endpoint: {method} {quoted}"
        if path == "/":
            message += " (the registry's API is under /v2/; the web UI needs extensions.ui and extensions.search)"
        return RegistryError(ErrorCode.NOT_FOUND, message, detail={"path": quoted})
    if status == 405:
        allowed = sorted(getattr(exc, "valid_methods", None) or ())
        return RegistryError(ErrorCode.METHOD_NOT_ALLOWED, f"{method} is not allowed on {quoted}",
                             detail={"path": quoted, "allowed": allowed}, status=405,
                             headers={"Allow": ", ".join(allowed)} if allowed else None)
    code = ErrorCode.PAYLOAD_TOO_LARGE if status == 413 else ErrorCode.BAD_REQUEST
    return RegistryError(code, exc.description or code.message, status=status)


#: Where the app keeps the routes it serves (``app.config``).
ROUTES_KEY = "SHARDREG_ROUTES"
#: Uploads are the only raw ASGI routes; a path without this cannot be one.
_UPLOAD_MARK = "/blobs/uploads"
_UPLOAD_ROUTES = tuple(route for route in ROUTES if route.served_by == UPLOADS)
assert all(_UPLOAD_MARK in route.template for route in _UPLOAD_ROUTES)


def register_routes(app: Quart, state: GatewayState) -> list[Route]:
    """Register the Quart routes of the table that the config switches on; returns every enabled route."""
    ext = state.config.extensions
    app.config[EXTENSIONS_KEY] = ext
    routes = enabled_routes(ext, metrics_settings(state.config).enable)
    for route in routes:
        if route.served_by != QUART:
            continue
        for template in (route.template, *route.aliases):
            app.add_url_rule(route.rule(template), endpoint=route.name, view_func=route.handler,
                             methods=list(route.methods))
    app.config[ROUTES_KEY] = routes
    if any(route.name == "swagger_document" for route in routes):
        app.config[DOCUMENT_KEY] = document(app)
    return routes


def build_quart(state: GatewayState) -> Quart:
    app = Quart("shardreg", static_folder=None)
    app.config.update(
        {STATE_KEY: state},
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        BODY_TIMEOUT=600,
        RESPONSE_TIMEOUT=None,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    register_routes(app, state)

    @app.errorhandler(RegistryError)
    async def registry_error(exc: RegistryError) -> Response:
        return _error_response(exc)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        return _error_response(_http_error(exc, request.method, request.path))

    @app.after_request
    async def no_type_without_body(response: Response) -> Response:
        """An empty answer (202 to a DELETE, 201 to a PUT) is not ``text/html``: Quart's default type goes."""
        if response.mimetype == "text/html" and response.content_length == 0:
            del response.headers["Content-Type"]
        return response

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return _error_response(RegistryError(ErrorCode.INTERNAL))

    @app.before_serving
    async def connect() -> None:
        state.client  # noqa: B018 - connect to the shards before the first request
        start_driver(state)  # every worker watches for a resize whose driver is gone

    @app.after_serving
    async def close() -> None:
        stop_driver(state)
        await state.drain()
        state.close()

    return app


class GatewayApp:
    """ASGI entry: uploads → UploadHandler, the rest → Quart."""

    def __init__(self, config: Config) -> None:
        self.state = GatewayState(config=config, access=AccessControl(config))
        self.state.access.bind(lambda: self.state.client)
        self.quart = build_quart(self.state)
        self.uploads = UploadHandler(self.state)
        self.metrics = setup_metrics(config, self.state.access)  # None unless extensions.metrics is enabled
        if self.metrics is not None:
            self.state.shard_observer = self.metrics.series
            self.metrics.shards = lambda: self.state.client
        self.entry = RequestLog(config, self.observed)  # request ids, access and audit logs

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.entry(scope, receive, send)

    def serves_inline(self, scope: dict[str, Any]) -> bool:
        """Whether this bodiless GET/HEAD may run in its connection's reader task (gateway/inline_requests.py):
        the read fast path's requests, answered from metadata in place or streamed."""
        return reads.match(scope) is not None

    async def observed(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.metrics is not None and scope["type"] == "http":
            await self.metrics(scope, receive, send, self.dispatch)
        else:
            await self.dispatch(scope, receive, send)

    async def dispatch(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _UPLOAD_MARK in scope["path"]:
            for route in _UPLOAD_ROUTES:
                match = route.pattern.match(scope["path"])
                if match:
                    await self.uploads(scope, receive, send, match.group("name"), match.groupdict().get("uuid"))
                    return
        if scope["type"] == "http":
            found = reads.match(scope)  # blob and manifest GET/HEAD: served without Quart
            if found is not None:
                await reads.serve(self.state, found, scope, receive, send,
                                  lambda: call_with_body_guard(self.quart, scope, receive, send))  # type: ignore[arg-type]
                return
        await call_with_body_guard(self.quart, scope, receive, send)  # type: ignore[arg-type]


def create_app(config: Config | None = None) -> GatewayApp:
    """Build the gateway; without ``config``, parse ``$SHARDREG_CONFIG_JSON`` (the embedded defaults if unset)."""
    # Hypercorn reads sockets 64 KiB at a time; every read becomes an h11 event, an ASGI message
    # and a ZeroMQ frame. Larger reads cut that per-chunk overhead on big pushes (measured: see
    # docs/performance.md).
    hypercorn_tcp.MAX_RECV = SOCKET_READ_SIZE
    if config is None:
        config = parse_config(json.loads(os.environ.get(CONFIG_ENV) or "{}"))  # unset: the embedded defaults
        setup_logging(config, "gateway-worker")  # a Hypercorn worker process: nothing set logging up
    return GatewayApp(config)
