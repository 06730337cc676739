"""``GET /v2/``: the API version check clients start with."""

from __future__ import annotations

from quart import Response

from common.grammar import Header
from gateway.context import authorize


async def version_check() -> Response:
    await authorize(None, "login")
    response = Response(b"{}", status=200, content_type="application/json")
    response.headers[Header.API_VERSION] = "registry/2.0"
    return response
