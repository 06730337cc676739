"""What every UI answer carries (CSP and friends) and the CSRF token of its forms.

The token is an HMAC, with the session signing key, of a random ``ui_csrf`` cookie and the
session cookie: it changes with the session, a page of another site cannot read it, and a
forged form post has neither the cookie's partner value nor a same-site ``Origin``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from quart import Response, g, request

from gateway.auth.csrf import cross_site
from gateway.auth.sessions import COOKIE as SESSION_COOKIE
from gateway.context import current_state

NONCE_COOKIE = "ui_csrf"
FIELD = "csrf"

HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def secure(response: Response, *, cache: bool = False) -> Response:
    """Add the UI's security headers (and, for pages, no caching)."""
    for name, value in HEADERS.items():
        response.headers[name] = value
    if not cache:
        response.headers["Cache-Control"] = "no-store"
    nonce = g.get("ui_new_nonce")
    if nonce:
        secure_flag = "; Secure" if current_state().config.http.auth.secure_session else ""
        response.headers.add("Set-Cookie", f"{NONCE_COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Strict{secure_flag}")
    return response


def _nonce() -> str:
    value = request.cookies.get(NONCE_COOKIE) or g.get("ui_new_nonce")
    if value and 16 <= len(value) <= 64:
        return value
    value = secrets.token_urlsafe(24)
    g.ui_new_nonce = value
    return value


async def _sign(nonce: str, session: str | None) -> str:
    key = await current_state().access.sessions.key()
    if session is None:
        session = request.cookies.get(SESSION_COOKIE) or ""
    return hmac.new(key, f"ui-csrf|{nonce}|{session}".encode(), hashlib.sha256).hexdigest()


async def csrf_token(session: str | None = None) -> str:
    """The token for the forms of the page being rendered (sets the nonce cookie if missing).

    ``session``: the session cookie the token is bound to (default: the request's; the login
    form binds none, as the session it makes does not exist yet)."""
    return await _sign(_nonce(), session)


async def csrf_ok(form_token: str | None, session: str | None = None) -> bool:
    """Whether a state-changing form post comes from one of our pages (``session`` as for the token)."""
    scheme = "https" if current_state().config.http.tls else "http"
    if cross_site(request.headers, request.method, scheme=scheme,
                  external_url=current_state().config.http.external_url):
        return False
    nonce = request.cookies.get(NONCE_COOKIE)
    if not nonce or not form_token or len(form_token) > 128:
        return False
    return hmac.compare_digest(form_token, await _sign(nonce, session))
