"""What the extension routes share: the parsed extensions config and JSON replies."""

from __future__ import annotations

from typing import Any

from quart import Response, current_app

from common.config import ExtensionsConfig
from gateway.context import current_state
from gateway.httputil import to_json

EXTENSIONS_KEY = "SHARDREG_EXTENSIONS"


def extensions() -> ExtensionsConfig:
    ext = current_app.config.get(EXTENSIONS_KEY)
    if ext is None:
        ext = current_state().config.extensions
        current_app.config[EXTENSIONS_KEY] = ext
    return ext


def json_response(obj: Any, status: int = 200) -> Response:
    response = Response(to_json(obj), status=status, content_type="application/json")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
