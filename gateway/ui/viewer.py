"""Who is looking at a page: the caller's identity, found as for any API request.

``authorize(action="catalog")`` is the browse check: an anonymous caller passes only when the
policy gives anonymous users something (zot's anonymous browsing); otherwise the UI sends them
to the login page. A stale session cookie is dropped and the user asked to log in again.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from quart import Response, request

from common.errors import ErrorCode, RegistryError
from gateway.auth.identity import Identity
from gateway.auth.sessions import COOKIE as SESSION_COOKIE
from gateway.context import current_state
from gateway.extensions.common import extensions
from gateway.extensions.mgmt import stripped_auth
from gateway.ui.render import page, redirect
from gateway.ui.security import csrf_token


class Redirect(Exception):
    """Leave the page for ``location`` (optionally dropping the session cookie)."""

    def __init__(self, location: str, drop_session: bool = False) -> None:
        super().__init__(location)
        self.location = location
        self.drop_session = drop_session


@dataclass
class Viewer:
    identity: Identity
    csrf: str
    #: Password login offered (htpasswd or LDAP), OpenID providers (key → display name).
    password_login: bool = False
    providers: dict[str, str] = field(default_factory=dict)
    auth_enabled: bool = False
    userprefs: bool = False
    apikeys: bool = False

    @property
    def name(self) -> str | None:
        return self.identity.name

    @property
    def anonymous(self) -> bool:
        return self.identity.anonymous


def login_location() -> str:
    target = request.full_path.rstrip("?") if request.method == "GET" else "/"
    return "/ui/login?next=" + quote(target, safe="/")


async def viewer(*, required: bool = False, browse: bool = True) -> Viewer:
    """The current caller; raises :class:`Redirect` to the login page when they must log in."""
    access = current_state().access
    try:
        if browse:
            identity = await access.authorize(request.headers, None, "catalog", request.remote_addr)
        else:
            identity = await access.authenticate(request.headers, request.remote_addr)
    except RegistryError as exc:
        if exc.code != ErrorCode.UNAUTHORIZED:
            raise
        raise Redirect(login_location(), drop_session=SESSION_COOKIE in request.cookies) from None
    if required and identity.anonymous:
        raise Redirect(login_location())
    password, providers = login_methods()
    return Viewer(identity=identity, csrf=await csrf_token(), password_login=password, providers=providers,
                  auth_enabled=access.enabled, userprefs=extensions().userprefs_enabled,
                  apikeys=access.apikeys is not None)


def login_methods() -> tuple[bool, dict[str, str]]:
    """Password login (htpasswd or LDAP) and the OpenID providers (key → name), as
    ``GET /v2/_zot/ext/mgmt`` lists them to zot's UI (one function computes both)."""
    auth = stripped_auth(current_state().config)
    providers = (auth.get("openid") or {}).get("providers") or {}
    return "htpasswd" in auth, {key: str(p.get("name") or key) for key, p in providers.items()}


def error_page(exc: RegistryError) -> Response:
    messages = {ErrorCode.DENIED: "You may not do this.", ErrorCode.NAME_UNKNOWN: "No such repository.",
                ErrorCode.MANIFEST_UNKNOWN: "No such tag or image."}
    return page("error.html", status=exc.status, me=None, title="Error",
                message=messages.get(exc.code, exc.message or exc.code.message))


def ui_handler(view: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Turn redirects and registry errors of a UI view into HTML answers (never a JSON error body)."""
    @functools.wraps(view)
    async def wrapper(**kwargs: Any) -> Response:
        try:
            return await view(**kwargs)
        except Redirect as move:
            response = redirect(move.location)
            if move.drop_session:
                response.headers.add("Set-Cookie", current_state().access.sessions.cookie_header("", max_age=0))
            return response
        except RegistryError as exc:
            if exc.code == ErrorCode.TOOMANYREQUESTS:
                raise
            return error_page(exc)

    return wrapper
