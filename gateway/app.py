"""The gateway application: ``create_app()`` builds the ASGI callable Hypercorn serves.

Requests for blob uploads go to :mod:`gateway.distribution.uploads` (plain ASGI, bounded
memory); everything else goes to the Quart app, one blueprint per API area. Errors of every
kind are rendered once, here, as OCI error bodies.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import hypercorn.asyncio.tcp_server as hypercorn_tcp
from quart import Quart, Response
from werkzeug.exceptions import HTTPException

from common.config import Config, load_config
from common.errors import ErrorCode, RegistryError
from common.logs import setup_logging
from gateway import auth_routes, metrics
from gateway.auth import AccessControl
from gateway.body_guard import call_with_body_guard
from gateway.distribution import base, blobs, listings, manifests
from gateway.distribution.uploads import UPLOAD_PATH_RE, UploadHandler
from gateway.extensions import register_extensions
from gateway.health import blueprint as health_blueprint
from gateway.http import error_body, error_headers
from gateway.state import GatewayState

log = logging.getLogger("shardreg.gateway")
CONFIG_ENV = "SHARDREG_CONFIG"
SOCKET_READ_SIZE = 256 * 1024


def _error_response(exc: RegistryError) -> Response:
    response = Response(error_body(exc), status=exc.status)
    for name, value in error_headers(exc).items():
        response.headers[name] = value
    return response


def build_quart(state: GatewayState) -> Quart:
    app = Quart("shardreg")
    app.config.update(
        SHARDREG_STATE=state,
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        BODY_TIMEOUT=600,
        RESPONSE_TIMEOUT=None,
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    for module in (base, manifests, blobs, listings):
        app.register_blueprint(module.blueprint)
    app.register_blueprint(health_blueprint)
    register_extensions(app, state)
    app.register_blueprint(auth_routes.blueprint)

    @app.errorhandler(RegistryError)
    async def registry_error(exc: RegistryError) -> Response:
        return _error_response(exc)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED, 413: ErrorCode.PAYLOAD_TOO_LARGE
                }.get(exc.code or 400, ErrorCode.BAD_REQUEST)
        return _error_response(RegistryError(code, exc.description or code.message, status=exc.code or 400))

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return _error_response(RegistryError(ErrorCode.INTERNAL))

    @app.before_serving
    async def connect() -> None:
        state.client  # noqa: B018 - connect to the shards before the first request

    @app.after_serving
    async def close() -> None:
        state.close()

    return app


class GatewayApp:
    """ASGI entry: uploads → UploadHandler, the rest → Quart."""

    def __init__(self, config: Config) -> None:
        self.state = GatewayState(config=config, access=AccessControl(config))
        self.state.access.bind(lambda: self.state.client)
        self.quart = build_quart(self.state)
        self.uploads = UploadHandler(self.state)
        self.metrics = metrics.setup(config, self.state.access)  # None unless extensions.metrics is enabled

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.metrics is not None and scope["type"] == "http":
            await self.metrics(scope, receive, send, self.dispatch)
        else:
            await self.dispatch(scope, receive, send)

    async def dispatch(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            match = UPLOAD_PATH_RE.match(scope["path"])
            if match:
                await self.uploads(scope, receive, send, match)
                return
        await call_with_body_guard(self.quart, scope, receive, send)


def create_app(config: Config | None = None) -> GatewayApp:
    """Build the gateway; without ``config``, read the file named by ``$SHARDREG_CONFIG``."""
    # Hypercorn reads sockets 64 KiB at a time; every read becomes an h11 event, an ASGI message
    # and a ZeroMQ frame. Larger reads cut that per-chunk overhead on big pushes (measured: see
    # docs/performance.md).
    hypercorn_tcp.MAX_RECV = SOCKET_READ_SIZE
    if config is None:
        config = load_config(os.environ.get(CONFIG_ENV))
        setup_logging(config, "gateway-worker")  # a Hypercorn worker process: nothing set logging up
    return GatewayApp(config)
