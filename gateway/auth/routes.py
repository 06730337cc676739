"""The auth endpoints: zot's ``/zot/auth/{login,logout,apikey}`` and the built-in ``/auth/token``.

``/zot/auth/apikey`` (also ``/v2/zot/auth/apikey``, the path in the zot document's example)::

    POST    {"label", "scopes": [...], "expirationDate": RFC3339}  → 201 key details + "apiKey" (shown once)
    GET     → 200 {"apiKeys": [key details...]}
    DELETE  ?id=<uuid>                                             → 200

Managing keys needs a password (htpasswd Basic auth) or a session, never an API key or token,
so that a narrow key cannot mint a broader one.

``GET /zot/auth/login?provider=&callback_ui=`` and ``/zot/auth/callback/<provider>``: OpenID
login (:mod:`gateway.auth.oidc_login`); the callback opens a session and redirects.

``/auth/token`` (when ``http.auth.bearer.key`` is set) implements the Docker token flow: Basic
credentials (password or API key) or none, ``service`` and ``scope`` parameters (GET query or
POST form with ``grant_type=password``), and answers ``{"token", "access_token", "expires_in",
"issued_at"}`` granting only what the access policy allows.
"""

from __future__ import annotations

import html
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from quart import Response, request

from common import boundedjson, messages
from common.errors import ErrorCode, RegistryError
from gateway.auth.access import AccessControl
from gateway.auth.apikeys import parse_time, provenance
from gateway.auth.external import IssuerUnavailable
from gateway.auth.identity import Identity

if TYPE_CHECKING:
    from gateway.auth.oidc_login import LoginError, OpenIDLogin
from gateway.auth.sessions import cookie_value
from gateway.context import current_state
from gateway.httputil import JSON_TYPE, read_body, to_json

log = logging.getLogger("shardreg.auth")

MAX_APIKEY_BODY = 8 * 1024
MAX_TOKEN_FORM = 64 * 1024
MAX_LABEL = 256
MAX_SCOPES = 256


def _access() -> AccessControl:
    return current_state().access


def _json(obj: Any, status: int = 200) -> Response:
    response = Response(to_json(obj), status=status, content_type=JSON_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


def _bad(message: str) -> RegistryError:
    return RegistryError(ErrorCode.BAD_REQUEST, message, status=400)


async def _password_user(access: AccessControl) -> Identity:
    """The caller of a key-management request: htpasswd Basic auth or a session."""
    if not access.enabled:
        raise RegistryError(ErrorCode.NOT_FOUND, "authentication is not configured", status=404)
    authorization = request.headers.get("authorization", "")
    if authorization[:6].lower() == "basic ":
        return _not_workload(await access.login(request.headers, request.remote_addr, allow_keys=False))
    identity = await access.authenticate(request.headers, request.remote_addr)
    if identity.anonymous:
        raise access.unauthorized(request.headers, None, "login")
    if identity.via != "session":
        raise RegistryError(ErrorCode.DENIED, "log in with a password or a session to manage API keys")
    return identity


def _not_workload(identity: Identity) -> Identity:
    """A CI job's short-lived ID token must not turn into a long-lived session or API key."""
    if identity.via == "workload":
        raise RegistryError(ErrorCode.DENIED, "an ID token cannot open a session or create API keys")
    return identity


# -- sessions ---------------------------------------------------------------------------------
async def login() -> Response:
    access = _access()
    if access.htpasswd is None and access.ldap is None:
        raise RegistryError(ErrorCode.NOT_FOUND, "password login is not configured", status=404)
    identity = _not_workload(await access.login(request.headers, request.remote_addr, allow_keys=False,
                                                how="login"))
    assert identity.name is not None
    cookie = await access.sessions.open(identity.name, identity.origin or "htpasswd")
    response = _json({"username": identity.name})
    response.headers["Set-Cookie"] = access.sessions.cookie_header(cookie)
    return response


async def logout() -> Response:
    access = _access()
    if not access.enabled:
        raise RegistryError(ErrorCode.NOT_FOUND, "authentication is not configured", status=404)
    cookie = cookie_value(request.headers.get("cookie"))
    if cookie is not None:
        access.check_csrf(request.headers, request.method)
    if cookie is None or not await access.sessions.close(cookie):
        raise access.unauthorized(request.headers, None, "login", "no session")
    response = _json({})
    response.headers["Set-Cookie"] = access.sessions.cookie_header("", max_age=0)
    return response


# -- API keys ---------------------------------------------------------------------------------
def _apikeys(access: AccessControl) -> Any:
    if access.apikeys is None:
        raise RegistryError(ErrorCode.NOT_FOUND, "API keys are not enabled (http.auth.apikey)", status=404)
    return access.apikeys


async def create_apikey() -> Response:
    access = _access()
    keys = _apikeys(access)
    identity = await _password_user(access)
    raw = await read_body(MAX_APIKEY_BODY)
    try:
        data = boundedjson.loads(raw or b"{}", max_depth=8)
    except ValueError:
        raise _bad("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise _bad("body must be a JSON object")
    label = data.get("label") or ""
    if not isinstance(label, str) or len(label) > MAX_LABEL:
        raise _bad(f"label must be a string of at most {MAX_LABEL} characters")
    scopes = data.get("scopes")
    if scopes is not None and (not isinstance(scopes, list) or len(scopes) > MAX_SCOPES
                               or not all(isinstance(s, str) and 0 < len(s) <= 256 for s in scopes)):
        raise _bad("scopes must be a list of repository names")
    expiration = data.get("expirationDate") or ""
    if not isinstance(expiration, str):
        raise _bad("expirationDate must be an RFC 3339 time")
    try:
        expires_at = parse_time(expiration)
    except ValueError:
        raise _bad("expirationDate must be an RFC 3339 time") from None
    if expires_at is not None and expires_at <= time.time():
        raise _bad("expirationDate is in the past")
    assert identity.name is not None
    origin, groups = provenance(identity, access.policy.groups_of)
    created = await keys.create(identity.name, label, scopes or None, expires_at,
                                request.headers.get("user-agent", ""), origin, groups)
    return _json(created, status=201)


async def list_apikeys() -> Response:
    access = _access()
    keys = _apikeys(access)
    identity = await _password_user(access)
    assert identity.name is not None
    return _json({"apiKeys": await keys.list(identity.name)})


async def delete_apikey() -> Response:
    access = _access()
    keys = _apikeys(access)
    identity = await _password_user(access)
    ids = request.args.getlist("id")
    if len(ids) != 1 or not ids[0] or len(ids[0]) > 64:
        raise _bad("exactly one id parameter is required")
    assert identity.name is not None
    if not await keys.delete(identity.name, ids[0]):
        raise RegistryError(ErrorCode.NOT_FOUND, "no such API key", status=404)
    return _json({})


# -- the built-in token service -----------------------------------------------------------------
async def token() -> Response:
    access = _access()
    if access.issuer is None or access.settings.bearer is None:
        raise RegistryError(ErrorCode.NOT_FOUND, "the built-in token service is not enabled", status=404)
    bearer = access.settings.bearer
    if request.method == "POST":
        raw = await read_body(MAX_TOKEN_FORM)
        try:
            form = parse_qs(raw.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            raise _bad("form is not UTF-8") from None
        if (form.get("grant_type") or [""])[0] != "password":
            raise _bad("only grant_type=password is supported")
        service = (form.get("service") or [""])[0]
        scopes = [s for v in form.get("scope", []) for s in v.split(" ") if s]
        user, password = (form.get("username") or [""])[0], (form.get("password") or [""])[0]
        identity = await access.passwords.verify(user, password, request.remote_addr, how="token")
        if identity is None:
            raise RegistryError(ErrorCode.UNAUTHORIZED, "invalid username or password")
        identity = await access.still_known(request.headers, identity)
    else:
        service = request.args.get("service", "")
        scopes = [s for v in request.args.getlist("scope") for s in v.split(" ") if s]
        if request.headers.get("authorization"):
            identity = await access.login(request.headers, request.remote_addr, how="token")
        else:  # no credentials: the session or the TLS client certificate, else anonymous
            identity = await access.authenticate(request.headers, request.remote_addr)
    if service and service != bearer.service:
        raise _bad("unknown service")
    granted = access.token_access(identity, scopes[:MAX_SCOPES])
    origin = identity.origin if identity.via == "bearer" else identity.origin or identity.via
    signed, expires_in, issued_at = access.issuer.issue(identity.name, granted, identity.scopes, origin)
    issued = datetime.fromtimestamp(issued_at, UTC).isoformat().replace("+00:00", "Z")
    return _json({"token": signed, "access_token": signed, "expires_in": expires_in, "issued_at": issued})


# -- OpenID login -------------------------------------------------------------------------------
#: The shard that records OpenID login states (single use) is the one of this pseudo-user.
STATE_USER = "~openid-login"


def _openid(access: AccessControl) -> OpenIDLogin:
    if access.openid is None:
        raise RegistryError(ErrorCode.NOT_FOUND, "OpenID login is not configured (http.auth.openid)", status=404)
    return access.openid


def _login_error(exc: LoginError) -> RegistryError:
    code = {401: ErrorCode.UNAUTHORIZED, 404: ErrorCode.NOT_FOUND}.get(exc.status, ErrorCode.BAD_REQUEST)
    return RegistryError(code, str(exc), status=exc.status)


def _unavailable(exc: IssuerUnavailable) -> RegistryError:
    log.error("OpenID provider unavailable: %s", exc)
    return RegistryError(ErrorCode.UNAVAILABLE, "the OpenID provider is unavailable, retry later",
                         headers={"Retry-After": "5"})


def _cookie(name: str) -> str | None:
    for part in (request.headers.get("cookie") or "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name and value:
            return value.strip('"')
    return None


def _redirect(location: str) -> Response:
    response = Response("", status=302)
    response.headers["Location"] = location
    response.headers["Cache-Control"] = "no-store"
    return response


def _continue(location: str) -> Response:
    """Where a login ends. A browser coming from the provider's site (another site) would not send
    the new SameSite=Strict session cookie along a redirect (the navigation started there): it is
    given a page that moves on by itself, a navigation of this site, which sends the cookie."""
    if request.headers.get("sec-fetch-site") != "cross-site" or request.headers.get("sec-fetch-mode") != "navigate":
        return _redirect(location)
    target = html.escape(location, quote=True)
    response = Response(f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Logged in</title>'
                        f'<meta http-equiv="refresh" content="0;url={target}"></head><body>'
                        f'<p>Logged in. <a href="{target}">Continue</a></p></body></html>',
                        status=200, content_type="text/html; charset=utf-8")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
    response.headers["Referrer-Policy"] = "no-referrer"  # the URL carried the code and state
    return response


async def openid_login() -> Response:
    from gateway.auth.oidc_login import STATE_COOKIE, STATE_TTL, LoginError, state_sid  # only with openid

    access = _access()
    openid = _openid(access)
    if not openid.starts.take(request.remote_addr or "-"):
        raise RegistryError(ErrorCode.TOOMANYREQUESTS, "too many logins started, retry later",
                            headers={"Retry-After": "10"})
    base = openid.base_url(request.scheme, request.host)
    try:
        location, cookie, state = await openid.begin(request.args.get("provider", ""),
                                                     request.args.get("callback_ui", ""), base,
                                                     await access.sessions.key())
    except LoginError as exc:
        raise _login_error(exc) from None
    except IssuerUnavailable as exc:
        raise _unavailable(exc) from None
    client = access._shard_client()
    await client.call_user(STATE_USER, messages.SESSION_CREATE(
        {"user": STATE_USER, "sid": state_sid(state), "expires": time.time() + STATE_TTL}))
    response = _redirect(location)
    secure = "; Secure" if access.settings.secure_session else ""
    response.headers["Set-Cookie"] = (f"{STATE_COOKIE}={cookie}; Path=/zot/auth/callback; Max-Age={STATE_TTL}; "
                                      f"HttpOnly; SameSite=Lax{secure}")
    return response


async def openid_callback(provider: str) -> Response:
    from gateway.auth.oidc_login import STATE_COOKIE, LoginError, state_sid  # only with openid

    access = _access()
    openid = _openid(access)
    base = openid.base_url(request.scheme, request.host)
    error = request.args.get("error")
    if error:
        raise RegistryError(ErrorCode.UNAUTHORIZED, f"the provider refused the login: {error[:64]}")
    code, state = request.args.get("code", ""), request.args.get("state", "")
    if not code or not state or len(code) > 4096 or len(state) > 256:
        raise _bad("code and state are required")
    try:
        data = openid.read_state(_cookie(STATE_COOKIE), provider, state, await access.sessions.key())
        client = access._shard_client()
        reply = await client.call_user(STATE_USER, messages.SESSION_DELETE(
            {"sid": state_sid(state), "user": STATE_USER}))
        if not reply.result["deleted"]:
            raise LoginError("this login was already completed (replayed callback)")
        result = await openid.complete(provider, data, code, base)
    except LoginError as exc:
        raise _login_error(exc) from None
    except IssuerUnavailable as exc:
        raise _unavailable(exc) from None
    cookie = await access.sessions.open(result.username, "openid", result.groups)
    response = _continue(result.callback_ui)
    response.headers.add("Set-Cookie", access.sessions.cookie_header(cookie))
    response.headers.add("Set-Cookie", f"{STATE_COOKIE}=; Path=/zot/auth/callback; Max-Age=0; HttpOnly; SameSite=Lax")
    return response
