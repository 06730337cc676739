"""What the extension blueprints share: the parsed extensions config, the caller, JSON replies."""

from __future__ import annotations

from typing import Any

from quart import Response, current_app, request

from common.config import ExtensionsConfig
from common.errors import ErrorCode, RegistryError
from gateway.auth import Identity
from gateway.http import to_json
from gateway.state import GatewayState

EXTENSIONS_KEY = "SHARDREG_EXTENSIONS"


def state() -> GatewayState:
    return current_app.config["SHARDREG_STATE"]


def extensions() -> ExtensionsConfig:
    ext = current_app.config.get(EXTENSIONS_KEY)
    if ext is None:
        ext = state().config.extensions
        current_app.config[EXTENSIONS_KEY] = ext
    return ext


async def caller(repo: str | None = None, action: str = "login") -> Identity:
    """Authenticate (and, with ``repo``, authorize) the current request."""
    return await state().access.authorize(request.headers, repo, action, request.remote_addr)


def auth_configured() -> bool:
    return bool(getattr(state().access, "enabled", False) or state().config.http.auth.present)


def is_admin(identity: Identity) -> bool:
    """Admins are named by ``http.accessControl.adminPolicy`` (users or groups), as in zot."""
    policy = state().config.http.access_control.admin
    if identity.anonymous:
        return False
    return identity.name in policy.users or bool(policy.groups & set(getattr(identity, "groups", ()) or ()))


async def require_admin() -> Identity:
    """When auth is configured, only admins pass (401 for anonymous callers, 403 for others)."""
    identity = await caller()
    if not auth_configured():
        return identity
    if identity.anonymous:
        raise RegistryError(ErrorCode.UNAUTHORIZED)
    if not is_admin(identity):
        raise RegistryError(ErrorCode.DENIED, "admin privileges are required")
    return identity


def json_response(obj: Any, status: int = 200) -> Response:
    response = Response(to_json(obj), status=status, content_type="application/json")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


