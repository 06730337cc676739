"""The OpenAPI document of the whole HTTP API, and its browser view at ``/swagger/v2/``.

``/swagger/v2/doc.json`` is the document (as zot's swagger handler names it), ``/swagger/v2/``
the Swagger UI, served from the ``swagger-ui-bundle`` package's files (no CDN). Both exist
only when ``extensions.debug.enable`` is on. The document itself is built once, when the app
is (:mod:`gateway.extensions.openapi_document`), and kept in ``app.config[DOCUMENT_KEY]``.
"""

from __future__ import annotations

from pathlib import Path

from quart import Response, current_app

from common.errors import ErrorCode, RegistryError
from gateway.extensions.common import json_response

#: Where the app keeps its OpenAPI document (``app.config``).
DOCUMENT_KEY = "SHARDREG_OPENAPI"

try:  # the Swagger UI distribution files, shipped by the swagger-ui-bundle package
    import swagger_ui_bundle

    ASSETS: Path | None = Path(swagger_ui_bundle.swagger_ui_path)
except ImportError:  # pragma: no cover - the page then explains how to read the JSON directly
    ASSETS = None
_ASSET_TYPES = {".js": "application/javascript", ".css": "text/css", ".png": "image/png", ".html": "text/html"}
_ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css", "index.css",
                "favicon-32x32.png", "favicon-16x16.png")

_INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>shardreg API</title>
<link rel="stylesheet" href="/swagger/v2/swagger-ui.css"><link rel="stylesheet" href="/swagger/v2/index.css">
</head><body><div id="swagger-ui"></div>
<script src="/swagger/v2/swagger-ui-bundle.js"></script>
<script src="/swagger/v2/swagger-ui-standalone-preset.js"></script>
<script>
window.onload = function () {
  window.ui = SwaggerUIBundle({url: "/swagger/v2/doc.json", dom_id: "#swagger-ui", deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"});
};
</script></body></html>
"""


async def swagger_index() -> Response:
    return Response(_INDEX.encode(), status=200, content_type="text/html; charset=utf-8")


async def swagger_document() -> Response:
    return json_response(current_app.config[DOCUMENT_KEY])


async def swagger_asset(asset: str) -> Response:
    if asset == "index.html":
        return await swagger_index()
    if ASSETS is None or asset not in _ASSET_FILES:
        raise RegistryError(ErrorCode.NOT_FOUND, "no such file")
    data = (ASSETS / asset).read_bytes()
    response = Response(data, status=200, content_type=_ASSET_TYPES.get(Path(asset).suffix, "application/octet-stream"))
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
