"""``GET /v2/_oci/ext/discover``: the ``_zot`` extension and exactly the endpoints that are on.

The list is computed from the running config by :func:`enabled_endpoints`, with the same
predicates that switch the extensions' routes on (:data:`gateway.routes.SWITCHES`).
"""

from __future__ import annotations

from quart import Response

from common.config import ExtensionsConfig
from gateway.context import authorize
from gateway.extensions.common import extensions, json_response

NOTATION = "/v2/_zot/ext/notation"
COSIGN = "/v2/_zot/ext/cosign"
SEARCH = "/v2/_zot/ext/search"
USERPREFS = "/v2/_zot/ext/userprefs"
MGMT = "/v2/_zot/ext/mgmt"
ZOT_EXTENSION_URL = "https://github.com/project-zot/zot/blob/main/pkg/extensions/_zot.md"


def enabled_endpoints(ext: ExtensionsConfig) -> list[str]:
    """zot's order: notation, cosign, search, userprefs, mgmt."""
    endpoints = []
    if ext.notation_enabled:
        endpoints.append(NOTATION)
    if ext.cosign_enabled:
        endpoints.append(COSIGN)
    if ext.search_enabled:
        endpoints.append(SEARCH)
    if ext.userprefs_enabled:
        endpoints.append(USERPREFS)
    if ext.mgmt_enabled:
        endpoints.append(MGMT)
    return endpoints


def extension_list(ext: ExtensionsConfig) -> dict:
    endpoints = enabled_endpoints(ext)
    found = []
    if endpoints:
        found.append({"name": "_zot", "url": ZOT_EXTENSION_URL, "description": "zot registry extensions",
                      "endpoints": endpoints})
    return {"extensions": found}


async def discover() -> Response:
    await authorize()
    return json_response(extension_list(extensions()))
