"""``GET /v2/_zot/ext/mgmt`` (``?resource=config``): the stripped config zot's UI reads.

``{"distSpecVersion", "commit", "releaseTag", "binaryType", "http": {"auth": {...}}}`` where
``auth`` says which login methods exist — ``htpasswd: {}`` (basic auth works; LDAP folds in
here, as in zot), ``bearer: {realm, service}``, ``openid: {providers: {name: {name}}}``,
``apikey: true`` — and nothing secret. Readable without credentials: the UI needs it to log in.

``?resource=sync``: the ``extensions.sync`` registries' state summed over the shards
(:mod:`gateway.sync_status`); it needs what ``/metrics`` needs.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from quart import Response, request

from common.config import Config, ExtensionsConfig
from common.errors import ErrorCode, RegistryError
from gateway.context import current_state
from gateway.extensions.common import extensions, json_response
from gateway.sync_status import sync_listing

RESOURCES = ("config", "sync")


def _version() -> str:
    try:
        return metadata.version("shardreg")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def binary_type(ext: ExtensionsConfig) -> str:
    names = []
    if ext.trust_enabled:
        names.append("imagetrust")
    if ext.mgmt_enabled:
        names.append("mgmt")
    if ext.search_enabled:
        names.append("search")
    if ext.ui:
        names.append("ui")
    if ext.userprefs_enabled:
        names.append("userprefs")
    if ext.debug:
        names.append("debug")
    return "".join(f"-{n}" for n in names)


def stripped_auth(config: Config) -> dict[str, Any]:
    settings = config.http.auth
    auth: dict[str, Any] = {}
    if settings.htpasswd is not None or settings.ldap:
        auth["htpasswd"] = {}
    if settings.bearer is not None:
        auth["bearer"] = {k: v for k, v in (("realm", settings.bearer.realm), ("service", settings.bearer.service)) if v}
    if settings.openid_providers:
        auth["openid"] = {"providers": {key: {"name": name} for key, name in settings.openid_providers.items()}}
    if settings.apikey:
        auth["apikey"] = True
    return auth


def stripped_config(config: Config, ext: ExtensionsConfig) -> dict[str, Any]:
    auth = stripped_auth(config)
    return {
        "distSpecVersion": config.dist_spec_version, "commit": "", "releaseTag": f"v{_version()}",
        "binaryType": binary_type(ext), "http": {"auth": auth} if auth else {},
    }


async def mgmt() -> Response:
    resource = request.args.get("resource", "config")
    if resource not in RESOURCES:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"unsupported resource {resource[:50]!r}", status=400)
    if resource == "sync":  # extensions.sync: each upstream's state, for who may read /metrics
        return json_response(await sync_listing())
    return json_response(stripped_config(current_state().config, extensions()))
