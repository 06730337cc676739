"""The route table: every HTTP route of the gateway, declared once.

Each :class:`Route` names its URL template (OpenAPI form, ``{name}`` being a repository name
that may hold slashes), its methods, its handler and the extension switch that enables it.
The table feeds

* the Quart app (:func:`gateway.app.build_quart` registers the enabled Quart routes),
* the raw ASGI upload dispatch (:class:`gateway.app.GatewayApp`, routes served by ``uploads``),
* the metrics route labels (:mod:`gateway.metrics.labels`: a label is a route's template),
* the OpenAPI document (:mod:`gateway.extensions.openapi_document`, operations by route name).

``tests/unit/test_routes.py`` checks that the app serves exactly the table.

Extensions are opt-in, as in zot (see :mod:`gateway.extensions`): a route with ``extension``
set exists only when that switch of :data:`SWITCHES` is on.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from common.config import ExtensionsConfig
from gateway import health
from gateway.auth import routes as auth
from gateway.cluster import admin as cluster
from gateway.distribution import base, blobs, listings, manifests
from gateway.extensions import discover, mgmt, openapi, oras, playground, pprof, search, trust, userprefs
from gateway.extensions import lifecycle as lifecycle_ext
from gateway.ui import routes as ui

#: Who serves a route: the Quart app, the raw ASGI upload handler, or the metrics middleware.
QUART, UPLOADS, METRICS = "quart", "uploads", "metrics"

#: Extension switches: name → whether the config turns it on.
SWITCHES: dict[str, Callable[[ExtensionsConfig], bool]] = {
    "search": lambda ext: ext.search_enabled,
    "mgmt": lambda ext: ext.mgmt_enabled,
    "userprefs": lambda ext: ext.userprefs_enabled,
    "cosign": lambda ext: ext.cosign_enabled,
    "notation": lambda ext: ext.notation_enabled,
    "profiling": lambda ext: ext.profiling,
    "debug": lambda ext: ext.debug,
    "playground": lambda ext: ext.debug and ext.search_enabled,
    "ui": lambda ext: ext.ui and ext.search_enabled,  # the web UI reads through search
}

_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    name: str
    #: OpenAPI form; also the metrics label of the route.
    template: str
    methods: tuple[str, ...]
    #: The Quart view; None for routes served outside Quart (``served_by``).
    handler: Callable[..., Awaitable[Any]] | None = None
    #: The switch of :data:`SWITCHES` that enables the route (None: always on); ``metrics`` is
    #: ``extensions.metrics`` (:mod:`gateway.metrics.settings`).
    extension: str | None = None
    #: Other spellings served by the same handler (documented under ``template``).
    aliases: tuple[str, ...] = ()
    served_by: str = QUART

    @property
    def in_repository(self) -> bool:
        """Whether the template names a repository (``{name}`` followed by more path)."""
        return "{name}/" in self.template

    def rule(self, template: str | None = None) -> str:
        """The werkzeug rule of ``template`` (default: the route's own)."""
        def convert(match: re.Match[str]) -> str:
            param = match.group(1)
            return f"<path:{param}>" if param == "name" and self.in_repository else f"<{param}>"

        return _PARAM.sub(convert, template or self.template)

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """A regular expression of the paths this route covers, one named group per parameter.

        A repository name may hold slashes; other parameters may not. A template ending in a
        literal also covers the path with a trailing slash.
        """
        template = self.template.rstrip("/")
        out, pos = [], 0
        for match in _PARAM.finditer(template):
            out.append(re.escape(template[pos:match.start()]))
            param = match.group(1)
            out.append(f"(?P<{param}>.+)" if param == "name" and self.in_repository else f"(?P<{param}>[^/]+)")
            pos = match.end()
        out.append(re.escape(template[pos:]))
        if not template.endswith("}"):
            out.append("/?")
        return re.compile("^" + "".join(out) + "$")


def _auth_routes() -> Iterator[Route]:
    yield Route("login", "/zot/auth/login", ("POST",), auth.login)
    yield Route("logout", "/zot/auth/logout", ("POST",), auth.logout)
    apikey, alias = "/zot/auth/apikey", ("/v2/zot/auth/apikey",)  # the second: the path in zot's example
    yield Route("apikey_create", apikey, ("POST",), auth.create_apikey, aliases=alias)
    yield Route("apikey_list", apikey, ("GET",), auth.list_apikeys, aliases=alias)
    yield Route("apikey_delete", apikey, ("DELETE",), auth.delete_apikey, aliases=alias)
    yield Route("token", "/auth/token", ("GET", "POST"), auth.token)
    yield Route("openid_login", "/zot/auth/login", ("GET",), auth.openid_login)
    yield Route("openid_callback", "/zot/auth/callback/{provider}", ("GET",), auth.openid_callback)


MANIFEST = "/v2/{name}/manifests/{reference}"
BLOB = "/v2/{name}/blobs/{digest}"

#: Every route. Order matters for the metrics labels: the first repository template that
#: matches a path names it (uploads before blobs).
ROUTES: tuple[Route, ...] = (
    Route("version", "/v2/", ("GET", "HEAD"), base.version_check, aliases=("/v2",)),
    Route("catalog", "/v2/_catalog", ("GET",), listings.catalog),
    Route("manifest_get", MANIFEST, ("GET", "HEAD"), manifests.get_manifest),
    Route("manifest_put", MANIFEST, ("PUT",), manifests.put_manifest),
    Route("manifest_delete", MANIFEST, ("DELETE",), manifests.delete_manifest),
    Route("upload_start", "/v2/{name}/blobs/uploads/", ("POST",), served_by=UPLOADS),
    Route("upload_session", "/v2/{name}/blobs/uploads/{uuid}", ("GET", "PATCH", "PUT", "DELETE"),
          served_by=UPLOADS),
    Route("blob_get", BLOB, ("GET", "HEAD"), blobs.get_blob),
    Route("blob_delete", BLOB, ("DELETE",), blobs.delete_blob),
    Route("tags_list", "/v2/{name}/tags/list", ("GET",), listings.list_tags),
    Route("referrers", "/v2/{name}/referrers/{digest}", ("GET",), listings.referrers),
    Route("oras_referrers", "/oras/artifacts/v1/{name}/manifests/{digest}/referrers", ("GET",), oras.referrers),
    Route("livez", "/livez", ("GET", "HEAD"), health.livez),
    Route("readyz", "/readyz", ("GET", "HEAD"), health.readyz),
    Route("startupz", "/startupz", ("GET", "HEAD"), health.startupz),
    Route("discover", "/v2/_oci/ext/discover", ("GET",), discover.discover),
    Route("search", "/v2/_zot/ext/search", ("GET", "POST"), search.search, "search"),
    Route("mgmt", "/v2/_zot/ext/mgmt", ("GET",), mgmt.mgmt, "mgmt"),
    Route("userprefs", "/v2/_zot/ext/userprefs", ("PUT",), userprefs.userprefs, "userprefs"),
    Route("cosign", "/v2/_zot/ext/cosign", ("POST",), trust.upload_cosign_key, "cosign"),
    Route("notation", "/v2/_zot/ext/notation", ("POST",), trust.upload_notation_certificate, "notation"),
    Route("pprof_index", "/v2/_zot/pprof/", ("GET",), pprof.index, "profiling"),
    Route("pprof_profile", "/v2/_zot/pprof/{name}", ("GET",), pprof.profile, "profiling"),
    Route("playground", "/v2/_zot/debug/graphql-playground", ("GET",), playground.playground, "playground"),
    Route("swagger_index", "/swagger/v2/", ("GET",), openapi.swagger_index, "debug"),
    Route("swagger_document", "/swagger/v2/doc.json", ("GET",), openapi.swagger_document, "debug"),
    Route("swagger_asset", "/swagger/v2/{asset}", ("GET",), openapi.swagger_asset, "debug"),
    Route("retention", "/v2/_shardreg/retention", ("POST",), lifecycle_ext.retention),
    Route("debug_clock", "/v2/_shardreg/debug/clock", ("PUT",), lifecycle_ext.clock, "debug"),
    *_auth_routes(),
    Route("cluster_status", "/v2/_shardreg/cluster/status", ("GET",), cluster.cluster_status),
    Route("cluster_resize", "/v2/_shardreg/cluster/resize", ("POST",), cluster.cluster_resize),
    Route("cluster_abort", "/v2/_shardreg/cluster/resize/abort", ("POST",), cluster.cluster_abort),
    # the path is extensions.metrics.prometheus.path (this is its default)
    Route("metrics", "/metrics", ("GET",), extension="metrics", served_by=METRICS),
    *(Route(*entry, extension="ui") for entry in ui.TABLE),  # the web UI (gateway/ui/)
)


def enabled_routes(ext: ExtensionsConfig, metrics_enabled: bool) -> list[Route]:
    """The routes this config switches on."""
    def on(route: Route) -> bool:
        if route.extension is None:
            return True
        if route.extension == "metrics":
            return metrics_enabled
        return SWITCHES[route.extension](ext)

    return [route for route in ROUTES if on(route)]
