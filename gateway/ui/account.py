"""Log in, log out, and the user page (API keys): what ``/zot/auth/login``, ``/zot/auth/logout``
and ``/zot/auth/apikey`` run, for a browser form."""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from quart import Response, request

from common.errors import ErrorCode, RegistryError
from gateway.auth.apikeys import provenance
from gateway.auth.identity import ANONYMOUS
from gateway.auth.sessions import COOKIE as SESSION_COOKIE
from gateway.context import current_state
from gateway.ui.render import local_path, page, redirect
from gateway.ui.security import csrf_ok, csrf_token
from gateway.ui.viewer import Viewer, login_methods, ui_handler, viewer

MAX_FIELD = 256
MAX_SCOPES = 64
_SCOPE_RE = re.compile(r"[a-z0-9*?._/-]{1,256}")


def refused() -> Response:
    return page("error.html", status=403, me=None, title="Refused",
                message="This form has expired or came from another site: reload the page and try again.")


def _login_viewer(csrf: str) -> Viewer:
    password, providers = login_methods()
    return Viewer(identity=ANONYMOUS, csrf=csrf, password_login=password, providers=providers,
                  auth_enabled=current_state().access.enabled)


def _login_page(next_path: str, error: str = "", status: int = 200, csrf: str = "") -> Response:
    me = _login_viewer(csrf)
    origin = f"{request.scheme}://{request.headers.get('host', '')}"
    external = current_state().config.http.external_url
    callback = (external.rstrip("/") if external else origin) + next_path
    return page("login.html", status=status, me=me, title="Log in", next=next_path, error=error,
                callback=callback)


@ui_handler
async def login() -> Response:
    access = current_state().access
    if request.method == "GET":
        next_path = local_path(request.args.get("next"))
        response = _login_page(next_path, csrf=await csrf_token(session=""))
        if SESSION_COOKIE in request.cookies:  # a stale or another user's session ends here
            response.headers.add("Set-Cookie", access.sessions.cookie_header("", max_age=0))
        return response
    form = await request.form
    next_path = local_path(form.get("next"))
    if not await csrf_ok(form.get("csrf"), session=""):
        return refused()
    if not access.enabled:
        return redirect(next_path)
    user, password = (form.get("username") or "")[:MAX_FIELD], (form.get("password") or "")[:MAX_FIELD]
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        identity = await access.login({"authorization": f"Basic {basic}"}, request.remote_addr,
                                      allow_keys=False, how="login")
    except RegistryError as exc:
        message = ("Too many failed attempts: try again later." if exc.code == ErrorCode.TOOMANYREQUESTS
                   else "Invalid username or password.")
        return _login_page(next_path, message, status=429 if exc.code == ErrorCode.TOOMANYREQUESTS else 401,
                           csrf=await csrf_token(session=""))
    assert identity.name is not None
    if identity.via == "workload":  # a CI job's ID token never becomes a session (as /zot/auth/login)
        return _login_page(next_path, "Invalid username or password.", status=401, csrf=await csrf_token(session=""))
    # the origin (htpasswd, ldap) is part of the session: an LDAP user's is re-checked with LDAP
    cookie = await access.sessions.open(identity.name, identity.origin or "htpasswd")
    response = redirect(next_path)
    response.headers.add("Set-Cookie", access.sessions.cookie_header(cookie))
    return response


@ui_handler
async def logout() -> Response:
    form = await request.form
    if not await csrf_ok(form.get("csrf")):
        return refused()
    access = current_state().access
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and access.enabled:
        await access.sessions.close(cookie)
    response = redirect("/ui/login")
    response.headers.add("Set-Cookie", access.sessions.cookie_header("", max_age=0))
    return response


# -- the user page: API keys --------------------------------------------------------------------
def _keys_allowed(me: Viewer) -> bool:
    """Keys are managed with a password or a session, never with a key or token (as the API)."""
    return me.apikeys and me.identity.via in ("session", "htpasswd", "ldap")


async def _user_page(me: Viewer, *, created: dict[str, Any] | None = None, error: str = "",
                     status: int = 200) -> Response:
    keys: list[dict[str, Any]] = []
    store = current_state().access.apikeys
    if _keys_allowed(me) and store is not None:
        assert me.name is not None
        keys = await store.list(me.name)
    return page("user.html", status=status, me=me, title=me.name or "User", keys=keys, created=created,
                error=error, keys_allowed=_keys_allowed(me), revoked=request.args.get("revoked") == "1")


@ui_handler
async def user() -> Response:
    me = await viewer(required=True)
    return await _user_page(me)


def _expiry(value: str) -> float | None:
    """``YYYY-MM-DD`` (a date input) → the end of that day, UTC; empty → never."""
    if not value:
        return None
    day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    return (day + timedelta(days=1)).timestamp()


async def _key_form() -> tuple[Any, Viewer] | Response:
    """The form and the viewer of an API-key action, or the refusal (bad CSRF token)."""
    form = await request.form
    if not await csrf_ok(form.get("csrf")):
        return refused()
    me = await viewer(required=True)
    if not _keys_allowed(me):
        raise RegistryError(ErrorCode.DENIED, "log in with a password to manage API keys")
    return form, me


@ui_handler
async def create_apikey() -> Response:
    checked = await _key_form()
    if isinstance(checked, Response):
        return checked
    form, me = checked
    label = (form.get("label") or "").strip()
    scopes = [s for s in re.split(r"[\s,]+", form.get("scopes") or "") if s]
    try:
        expires_at = _expiry((form.get("expires") or "").strip())
    except ValueError:
        return await _user_page(me, error="The expiry date must be a date (YYYY-MM-DD).", status=400)
    if len(label) > MAX_FIELD:
        return await _user_page(me, error=f"The label may have at most {MAX_FIELD} characters.", status=400)
    if len(scopes) > MAX_SCOPES or not all(_SCOPE_RE.fullmatch(s) for s in scopes):
        return await _user_page(me, error="Scopes are repository names or globs, separated by commas.", status=400)
    if expires_at is not None and expires_at <= time.time():
        return await _user_page(me, error="The expiry date is in the past.", status=400)
    keys = current_state().access.apikeys
    assert me.name is not None and keys is not None
    origin, groups = provenance(me.identity, current_state().access.policy.groups_of)
    created = await keys.create(me.name, label, scopes or None, expires_at, request.headers.get("user-agent", ""),
                                origin, groups)
    return await _user_page(me, created=created, status=201)


@ui_handler
async def revoke_apikey() -> Response:
    checked = await _key_form()
    if isinstance(checked, Response):
        return checked
    form, me = checked
    key_id = form.get("id") or ""
    keys = current_state().access.apikeys
    assert me.name is not None and keys is not None
    if not key_id or len(key_id) > 64 or not await keys.delete(me.name, key_id):
        raise RegistryError(ErrorCode.NOT_FOUND, "no such API key", status=404)
    return redirect("/ui/user?revoked=1")
