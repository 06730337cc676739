"""The OpenAPI document of the whole HTTP API (served at ``/swagger/v2/doc.json``).

Its paths are the templates of :data:`gateway.routes.ROUTES`; this module adds what a route
does, its parameters and its answers (:data:`OPERATIONS_BY_ROUTE`, by route name). The
document lists the routes this gateway serves (the Quart routes registered for its config, and
the upload routes); ``tests/extensions/test_openapi.py`` checks that every route of the app is
documented.
"""

from __future__ import annotations

import re
from typing import Any

from quart import Quart

from gateway.routes import ROUTES, UPLOADS
from gateway.ui import routes as ui_routes

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

#: Route name (:data:`gateway.routes.ROUTES`) → method → operation.
OPERATIONS_BY_ROUTE: dict[str, dict[str, dict]] = {
    "version": {"get": _op("API version check", "distribution", {200: "ok", 401: ""}),
             "head": _op("API version check", "distribution", {200: "ok", 401: ""})},
    "catalog": {"get": _op("List repositories", "distribution", {200: "repositories", 400: ""}, [N, LAST])},
    "tags_list": {"get": _op("List tags", "distribution", {200: "tags", 400: "", 404: ""},
                                        [NAME, N, LAST])},
    "manifest_get": {
        "get": _op("Get a manifest", "distribution", {200: "the manifest", 404: ""}, [NAME, REFERENCE]),
        "head": _op("Check a manifest", "distribution", {200: "exists", 404: ""}, [NAME, REFERENCE]),
    },
    "manifest_put": {
        "put": _op("Push a manifest", "distribution", {201: "created", 400: "", 404: "", 413: "", 415: ""},
                   [NAME, REFERENCE, _param("tag", "query")], body="application/vnd.oci.image.manifest.v1+json"),
    },
    "manifest_delete": {
        "delete": _op("Delete a manifest or tag", "distribution", {202: "deleted", 404: "", 405: ""},
                      [NAME, REFERENCE]),
    },
    "blob_get": {
        "get": _op("Get a blob", "distribution", {200: "the blob", 206: "a range", 404: "", 416: ""},
                   [NAME, DIGEST, _param("Range", "header")]),
        "head": _op("Check a blob", "distribution", {200: "exists", 404: ""}, [NAME, DIGEST]),
    },
    "blob_delete": {
        "delete": _op("Delete a blob", "distribution", {202: "deleted", 404: "", 405: ""}, [NAME, DIGEST]),
    },
    "upload_start": {
        "post": _op("Start an upload (or monolithic upload with ?digest=, or mount)", "distribution",
                    {201: "created", 202: "started", 400: "", 404: ""},
                    [NAME, _param("digest", "query"), _param("mount", "query"), _param("from", "query")],
                    body="application/octet-stream"),
    },
    "upload_session": {
        "get": _op("Upload status", "distribution", {204: "status", 404: ""}, [NAME, UUID]),
        "patch": _op("Upload a chunk", "distribution", {202: "accepted", 404: "", 416: ""},
                     [NAME, UUID, _param("Content-Range", "header")], body="application/octet-stream"),
        "put": _op("Finish an upload", "distribution", {201: "created", 400: "", 404: ""},
                   [NAME, UUID, _param("digest", "query", True)], body="application/octet-stream"),
        "delete": _op("Cancel an upload", "distribution", {204: "cancelled", 404: ""}, [NAME, UUID]),
    },
    "referrers": {
        "get": _op("List referrers", "distribution", {200: "an image index", 400: "", 404: ""},
                   [NAME, DIGEST, _param("artifactType", "query")]),
    },
    "discover": {"get": _op("Enabled extensions", "extensions", {200: "extension list"})},
    "search": {
        "get": _op("GraphQL search", "extensions", {200: "GraphQL result", 400: "", 422: ""},
                   [_param("query", "query", True)]),
        "post": _op("GraphQL search", "extensions", {200: "GraphQL result", 400: "", 422: ""},
                    requestBody=_GRAPHQL_BODY),
    },
    "mgmt": {"get": _op("Stripped configuration", "extensions", {200: "config", 400: ""},
                                     [_param("resource", "query", schema={"type": "string", "enum": ["config"]})])},
    "userprefs": {"put": _op("Toggle a star or bookmark", "extensions",
                                          {200: "toggled", 400: "", 403: "", 404: ""},
                                          [_param("action", "query", True, {"type": "string",
                                                   "enum": ["toggleStar", "toggleBookmark"]}),
                                           _param("repo", "query", True)])},
    "cosign": {"post": _op("Upload a cosign public key", "extensions",
                                        {200: "stored", 400: "", 413: ""}, body="application/octet-stream")},
    "notation": {"post": _op("Upload a notation certificate", "extensions",
                                          {200: "stored", 400: "", 413: ""},
                                          [_param("truststoreType", "query", False,
                                                  {"type": "string", "enum": ["ca", "signingAuthority"]})],
                                          body="application/octet-stream")},
    "oras_referrers": {
        "get": _op("Referrers (legacy ORAS artifacts API)", "extensions", {200: "references", 400: "", 404: ""},
                   [NAME, DIGEST, _param("artifactType", "query")]),
    },
    "pprof_index": {"get": _op("Profiles index", "debug", {200: "HTML index", 401: "", 403: ""})},
    "cluster_status": {"get": _op("Cluster map and resize status (admin)", "cluster", {200: "status", 401: "", 403: ""})},
    "cluster_resize": {"post": _op("Resize the cluster (admin)", "cluster",
                                   {200: "nothing to do", 202: "began", 400: "", 401: "", 403: "", 409: "running"})},
    "cluster_abort": {"post": _op("Abort the running resize (admin)", "cluster", {202: "aborting", 401: "", 403: "",
                                                                                   409: "none running"})},
    "pprof_profile": {"get": _op("Take a profile", "debug", {200: "the profile", 400: "", 404: ""},
                                         [_param("name", schema={"type": "string",
                                                                 "enum": ["heap", "tasks", "threads"]}),
                                          _param("seconds", "query", schema={"type": "integer", "minimum": 1,
                                                                             "maximum": 2}),
                                          _param("top", "query", schema={"type": "integer", "minimum": 1,
                                                                         "maximum": 50}),
                                          _param("shard", "query", schema={"type": "integer", "minimum": 0})])},
    "playground": {"get": _op("GraphQL playground", "debug", {200: "HTML page"})},
    "swagger_index": {"get": _op("This API, in a browser", "debug", {200: "HTML page"})},
    "swagger_document": {"get": _op("This API's OpenAPI document", "debug", {200: "OpenAPI JSON"})},
    "swagger_asset": {"get": _op("Swagger UI files", "debug", {200: "file", 404: ""}, [_param("asset")])},
    "livez": {"get": _op("Liveness", "health", {200: "alive"}), "head": _op("Liveness", "health", {200: "alive"})},
    "readyz": {"get": _op("Readiness", "health", {200: "ready", 503: ""}),
                "head": _op("Readiness", "health", {200: "ready", 503: ""})},
    "startupz": {"get": _op("Startup", "health", {200: "started", 503: ""}),
                  "head": _op("Startup", "health", {200: "started", 503: ""})},
    "metrics": {"get": _op("Prometheus metrics", "metrics", {200: "metrics text"})},
    "login": {"post": _op("Open a session", "auth", {200: "logged in", 401: ""})},
    "logout": {"post": _op("End a session", "auth", {200: "logged out"})},
    "openid_login": {"get": _op("Start an OpenID login", "auth", {302: "to the provider", 400: "", 404: ""},
                                [_param("provider", "query", True), _param("callback_ui", "query")])},
    "openid_callback": {"get": _op("Finish an OpenID login", "auth",
                                   {302: "logged in, to callback_ui", 400: "", 401: "", 404: ""},
                                   [_param("provider"), _param("code", "query"), _param("state", "query")])},
    "apikey_list": {"get": _op("List API keys", "auth", {200: "keys", 401: ""})},
    "apikey_create": {
        "post": _op("Create an API key", "auth", {201: "created", 400: "", 401: ""}, body="application/json"),
    },
    "apikey_delete": {
        "delete": _op("Revoke an API key", "auth", {200: "revoked", 400: "", 401: ""},
                      [_param("id", "query", True)]),
    },
    "token": {"get": _op("Issue a bearer token", "auth", {200: "token", 401: ""},
                               [_param("service", "query"), _param("scope", "query")]),
                    "post": _op("Issue a bearer token", "auth", {200: "token", 401: ""}, body="application/x-www-form-urlencoded")},
    "retention": {"post": _op("Run a retention pass (admin)", "lifecycle", {200: "plan per repository", 401: "", 403: ""},
                              [_param("dryRun", "query", schema={"type": "boolean"}),
                               _param("gc", "query", schema={"type": "boolean"})])},
    "debug_clock": {"put": _op("Move the shards' lifecycle clock (tests)", "debug", {200: "offset", 400: "", 403: ""},
                               body="application/json")},
}
OPERATIONS_BY_ROUTE.update(ui_routes.OPERATIONS)  # the web UI's pages and forms
#: Path (OpenAPI form) → method → operation, for every route of the table.
OPERATIONS: dict[str, dict[str, dict]] = {}
for _route in ROUTES:
    OPERATIONS.setdefault(_route.template, {}).update(OPERATIONS_BY_ROUTE[_route.name])
#: Same operations under a second spelling of the path.
ALIASES = {alias: route.template for route in ROUTES for alias in route.aliases}
#: Served outside Quart (raw ASGI upload handler): always present.
RAW_PATHS = tuple(dict.fromkeys(route.template for route in ROUTES if route.served_by == UPLOADS))

_RULE_PARAM = re.compile(r"<(?:[a-z]+:)?(\w+)>")


def rule_path(rule: str) -> str:
    """A werkzeug rule (``/v2/<path:name>/tags/list``) in OpenAPI form (``/v2/{name}/tags/list``)."""
    path = _RULE_PARAM.sub(r"{\1}", rule)
    return ALIASES.get(path, path)


def app_routes(app: Quart) -> set[tuple[str, str]]:
    """(OpenAPI path, lower-case method) of every route the app serves."""
    routes = set()
    for rule in app.url_map.iter_rules():
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
