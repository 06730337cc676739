"""The OpenAPI document of the whole HTTP API, and its browser view at ``/swagger/v2/``.

``/swagger/v2/doc.json`` is the document (as zot's swagger handler names it), ``/swagger/v2/``
the Swagger UI, served from the ``swagger-ui-bundle`` package's files (no CDN). Both exist
only when ``extensions.debug.enable`` is on. The document lists the operations of
:data:`OPERATIONS` whose route is registered in this gateway (plus the upload routes, served
by the raw ASGI upload handler); ``tests/extensions/test_openapi.py`` checks that every route
of the app is documented, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from quart import Blueprint, Quart, Response, current_app

from common.errors import ErrorCode, RegistryError
from gateway.extensions.common import json_response

blueprint = Blueprint("ext_openapi", __name__)
PREFIX = "/swagger/v2"

try:  # the Swagger UI distribution files, shipped by the swagger-ui-bundle package
    import swagger_ui_bundle

    ASSETS: Path | None = Path(swagger_ui_bundle.swagger_ui_path)
except ImportError:  # pragma: no cover - the page then explains how to read the JSON directly
    ASSETS = None
_ASSET_TYPES = {".js": "application/javascript", ".css": "text/css", ".png": "image/png", ".html": "text/html"}
_ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css", "index.css",
                "favicon-32x32.png", "favicon-16x16.png")

# -- the document -----------------------------------------------------------------------------------
_ERROR = {"description": "OCI error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Errors"}}}}


def _param(name: str, where: str = "path", required: bool | None = None, schema: dict | None = None,
           description: str = "") -> dict:
    return {"name": name, "in": where, "required": where == "path" if required is None else required,
            "schema": schema or {"type": "string"}, "description": description}


NAME = _param("name", description="repository name, e.g. library/alpine")
DIGEST = _param("digest", description="e.g. sha256:<64 hex>")
REFERENCE = _param("reference", description="tag or digest")
UUID = _param("uuid", description="upload session id")
N = _param("n", "query", schema={"type": "integer", "minimum": 0})
LAST = _param("last", "query")


def _op(summary: str, tag: str, responses: dict[int, str], params: list[dict] | None = None,
        body: str | None = None, **extra: Any) -> dict:
    out: dict[str, Any] = {"summary": summary, "tags": [tag], "parameters": params or [],
                           "responses": {str(code): (_ERROR if code >= 400 else {"description": text})
                                         for code, text in responses.items()}}
    if body:
        out["requestBody"] = {"required": False, "content": {body: {"schema": {"type": "string", "format": "binary"}}}}
    out.update(extra)
    return out


_GRAPHQL_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["query"],
    "properties": {"query": {"type": "string", "example": "{ RepoListWithNewestImage { Results { Name } } }"},
                   "variables": {"type": "object"}, "operationName": {"type": "string"}}}}}}

#: (path, method) → operation; paths in OpenAPI form.
OPERATIONS: dict[str, dict[str, dict]] = {
    "/v2/": {"get": _op("API version check", "distribution", {200: "ok", 401: ""}),
             "head": _op("API version check", "distribution", {200: "ok", 401: ""})},
    "/v2/_catalog": {"get": _op("List repositories", "distribution", {200: "repositories", 400: ""}, [N, LAST])},
    "/v2/{name}/tags/list": {"get": _op("List tags", "distribution", {200: "tags", 400: "", 404: ""},
                                        [NAME, N, LAST])},
    "/v2/{name}/manifests/{reference}": {
        "get": _op("Get a manifest", "distribution", {200: "the manifest", 404: ""}, [NAME, REFERENCE]),
        "head": _op("Check a manifest", "distribution", {200: "exists", 404: ""}, [NAME, REFERENCE]),
        "put": _op("Push a manifest", "distribution", {201: "created", 400: "", 404: "", 413: "", 415: ""},
                   [NAME, REFERENCE, _param("tag", "query")], body="application/vnd.oci.image.manifest.v1+json"),
        "delete": _op("Delete a manifest or tag", "distribution", {202: "deleted", 404: "", 405: ""},
                      [NAME, REFERENCE]),
    },
    "/v2/{name}/blobs/{digest}": {
        "get": _op("Get a blob", "distribution", {200: "the blob", 206: "a range", 404: "", 416: ""},
                   [NAME, DIGEST, _param("Range", "header")]),
        "head": _op("Check a blob", "distribution", {200: "exists", 404: ""}, [NAME, DIGEST]),
        "delete": _op("Delete a blob", "distribution", {202: "deleted", 404: "", 405: ""}, [NAME, DIGEST]),
    },
    "/v2/{name}/blobs/uploads/": {
        "post": _op("Start an upload (or monolithic upload with ?digest=, or mount)", "distribution",
                    {201: "created", 202: "started", 400: "", 404: ""},
                    [NAME, _param("digest", "query"), _param("mount", "query"), _param("from", "query")],
                    body="application/octet-stream"),
    },
    "/v2/{name}/blobs/uploads/{uuid}": {
        "get": _op("Upload status", "distribution", {204: "status", 404: ""}, [NAME, UUID]),
        "patch": _op("Upload a chunk", "distribution", {202: "accepted", 404: "", 416: ""},
                     [NAME, UUID, _param("Content-Range", "header")], body="application/octet-stream"),
        "put": _op("Finish an upload", "distribution", {201: "created", 400: "", 404: ""},
                   [NAME, UUID, _param("digest", "query", True)], body="application/octet-stream"),
        "delete": _op("Cancel an upload", "distribution", {204: "cancelled", 404: ""}, [NAME, UUID]),
    },
    "/v2/{name}/referrers/{digest}": {
        "get": _op("List referrers", "distribution", {200: "an image index", 400: "", 404: ""},
                   [NAME, DIGEST, _param("artifactType", "query")]),
    },
    "/v2/_oci/ext/discover": {"get": _op("Enabled extensions", "extensions", {200: "extension list"})},
    "/v2/_zot/ext/search": {
        "get": _op("GraphQL search", "extensions", {200: "GraphQL result", 400: "", 422: ""},
                   [_param("query", "query", True)]),
        "post": _op("GraphQL search", "extensions", {200: "GraphQL result", 400: "", 422: ""},
                    requestBody=_GRAPHQL_BODY),
    },
    "/v2/_zot/ext/mgmt": {"get": _op("Stripped configuration", "extensions", {200: "config", 400: ""},
                                     [_param("resource", "query", schema={"type": "string", "enum": ["config"]})])},
    "/v2/_zot/ext/userprefs": {"put": _op("Toggle a star or bookmark", "extensions",
                                          {200: "toggled", 400: "", 403: "", 404: ""},
                                          [_param("action", "query", True, {"type": "string",
                                                   "enum": ["toggleStar", "toggleBookmark"]}),
                                           _param("repo", "query", True)])},
    "/v2/_zot/ext/cosign": {"post": _op("Upload a cosign public key", "extensions",
                                        {200: "stored", 400: "", 413: ""}, body="application/octet-stream")},
    "/v2/_zot/ext/notation": {"post": _op("Upload a notation certificate", "extensions",
                                          {200: "stored", 400: "", 413: ""},
                                          [_param("truststoreType", "query", False,
                                                  {"type": "string", "enum": ["ca", "signingAuthority"]})],
                                          body="application/octet-stream")},
    "/oras/artifacts/v1/{name}/manifests/{digest}/referrers": {
        "get": _op("Referrers (legacy ORAS artifacts API)", "extensions", {200: "references", 400: "", 404: ""},
                   [NAME, DIGEST, _param("artifactType", "query")]),
    },
    "/v2/_zot/pprof/": {"get": _op("Profiles index", "debug", {200: "HTML index", 401: "", 403: ""})},
    "/v2/_zot/pprof/{name}": {"get": _op("Take a profile", "debug", {200: "the profile", 400: "", 404: ""},
                                         [_param("name", schema={"type": "string",
                                                                 "enum": ["heap", "tasks", "threads"]}),
                                          _param("seconds", "query", schema={"type": "integer", "minimum": 1,
                                                                             "maximum": 2}),
                                          _param("top", "query", schema={"type": "integer", "minimum": 1,
                                                                         "maximum": 50}),
                                          _param("shard", "query", schema={"type": "integer", "minimum": 0})])},
    "/v2/_zot/debug/graphql-playground": {"get": _op("GraphQL playground", "debug", {200: "HTML page"})},
    "/swagger/v2/": {"get": _op("This API, in a browser", "debug", {200: "HTML page"})},
    "/swagger/v2/doc.json": {"get": _op("This API's OpenAPI document", "debug", {200: "OpenAPI JSON"})},
    "/swagger/v2/{asset}": {"get": _op("Swagger UI files", "debug", {200: "file", 404: ""}, [_param("asset")])},
    "/livez": {"get": _op("Liveness", "health", {200: "alive"}), "head": _op("Liveness", "health", {200: "alive"})},
    "/readyz": {"get": _op("Readiness", "health", {200: "ready", 503: ""}),
                "head": _op("Readiness", "health", {200: "ready", 503: ""})},
    "/startupz": {"get": _op("Startup", "health", {200: "started", 503: ""}),
                  "head": _op("Startup", "health", {200: "started", 503: ""})},
    "/metrics": {"get": _op("Prometheus metrics", "metrics", {200: "metrics text"})},
    "/zot/auth/login": {"post": _op("Open a session", "auth", {200: "logged in", 401: ""})},
    "/zot/auth/logout": {"post": _op("End a session", "auth", {200: "logged out"})},
    "/zot/auth/apikey": {
        "get": _op("List API keys", "auth", {200: "keys", 401: ""}),
        "post": _op("Create an API key", "auth", {201: "created", 400: "", 401: ""}, body="application/json"),
        "delete": _op("Revoke an API key", "auth", {200: "revoked", 400: "", 401: ""},
                      [_param("id", "query", True)]),
    },
    "/auth/token": {"get": _op("Issue a bearer token", "auth", {200: "token", 401: ""},
                               [_param("service", "query"), _param("scope", "query")]),
                    "post": _op("Issue a bearer token", "auth", {200: "token", 401: ""}, body="application/x-www-form-urlencoded")},
}
#: Same operations under a second spelling of the path.
ALIASES = {"/v2": "/v2/", "/v2/zot/auth/apikey": "/zot/auth/apikey"}
#: Served outside Quart (raw ASGI upload handler): always present.
RAW_PATHS = ("/v2/{name}/blobs/uploads/", "/v2/{name}/blobs/uploads/{uuid}")

_RULE_PARAM = re.compile(r"<(?:[a-z]+:)?(\w+)>")


def rule_path(rule: str) -> str:
    """A werkzeug rule (``/v2/<path:name>/tags/list``) in OpenAPI form (``/v2/{name}/tags/list``)."""
    path = _RULE_PARAM.sub(r"{\1}", rule)
    return ALIASES.get(path, path)


def app_routes(app: Quart) -> set[tuple[str, str]]:
    """(OpenAPI path, lower-case method) of every route the app serves."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = set(rule.methods or ())
        for method in methods:
            if method == "OPTIONS" or (method == "HEAD" and "GET" in methods):
                continue  # implicit; documented HEADs are those the API defines
            routes.add((rule_path(rule.rule), method.lower()))
    return routes


def document(app: Quart) -> dict[str, Any]:
    served = {path for path, _ in app_routes(app)} | set(RAW_PATHS)
    paths = {path: ops for path, ops in OPERATIONS.items() if path in served}
    return {
        "openapi": "3.0.3",
        "info": {"title": "shardreg", "version": "1",
                 "description": "OCI Distribution v1.1 registry with zot's extensions (clustered)."},
        "paths": paths,
        "components": {"schemas": {"Errors": {"type": "object", "properties": {"errors": {
            "type": "array", "items": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "detail": {}}}}}}}},
    }


# -- routes ---------------------------------------------------------------------------------------------
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


@blueprint.route(f"{PREFIX}/", methods=["GET"])
async def swagger_index() -> Response:
    return Response(_INDEX.encode(), status=200, content_type="text/html; charset=utf-8")


@blueprint.route(f"{PREFIX}/doc.json", methods=["GET"])
async def swagger_document() -> Response:
    return json_response(document(current_app))


@blueprint.route(f"{PREFIX}/<asset>", methods=["GET"])
async def swagger_asset(asset: str) -> Response:
    if asset == "index.html":
        return await swagger_index()
    if ASSETS is None or asset not in _ASSET_FILES:
        raise RegistryError(ErrorCode.NOT_FOUND, "no such file")
    data = (ASSETS / asset).read_bytes()
    response = Response(data, status=200, content_type=_ASSET_TYPES.get(Path(asset).suffix, "application/octet-stream"))
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
