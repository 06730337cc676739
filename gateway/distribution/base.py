"""``GET /v2/``: the API version check clients start with."""

from __future__ import annotations

from quart import Blueprint, Response

from common.rules import Header
from gateway.distribution.common import authorize

blueprint = Blueprint("base", __name__)


@blueprint.route("/v2/", methods=["GET", "HEAD"])
@blueprint.route("/v2", methods=["GET", "HEAD"])
async def version_check() -> Response:
    await authorize(None, "login")
    response = Response(b"{}", status=200, content_type="application/json")
    response.headers[Header.API_VERSION] = "registry/2.0"
    return response
