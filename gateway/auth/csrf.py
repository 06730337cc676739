"""Cross-site request forgery: a browser sends the session cookie with requests other sites make.

A state-changing request (POST, PUT, PATCH, DELETE) that is authenticated *only* by the session
cookie is refused (403 ``DENIED``) when the browser says it comes from another origin:

* ``Origin`` present: its ``host[:port]`` must equal the request's ``Host`` (or the host of
  ``http.externalUrl``, for a registry behind a proxy that rewrites ``Host``); ``Origin: null``
  (sandboxed frames, some redirects) is refused;
* ``Sec-Fetch-Site`` present: only ``same-origin`` and ``none`` (typed by the user) pass —
  ``same-site`` is another origin (a sibling sub-domain) and is refused like ``cross-site``.

A caller that cannot name the method (the raw-ASGI upload path) is treated as state-changing.
A request with neither header is not from a browser fetch of another site (browsers send
``Origin`` on every cross-origin state-changing request) and passes. Credentials a browser does
not attach by itself (Basic, bearer tokens, API keys, client certificates) are not affected.
``SameSite=Strict`` on the cookie stays as a second layer.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from gateway.auth.identity import HeaderMap, header

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SAME = frozenset({"same-origin", "none"})


def _netloc(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return host if port is None or port == default else f"{host}:{port}"


def _host(value: str, scheme: str) -> str:
    """A ``Host`` header normalised as :func:`_netloc` normalises an origin."""
    return _netloc(f"{scheme}://{value.strip()}") or value.strip().lower()


def cross_site(headers: HeaderMap, method: str | None, *, scheme: str = "http",
               external_url: str | None = None) -> bool:
    """Whether a cookie-authenticated request must be refused as a possible forgery."""
    if method is not None and method.upper() not in UNSAFE_METHODS:
        return False  # an unknown method (a caller outside a Quart request) counts as unsafe
    site = (header(headers, "sec-fetch-site") or "").strip().lower()
    if site and site not in _SAME:
        return True
    origin = header(headers, "origin")
    if origin is None:
        return False
    origin_host = _netloc(origin.strip())
    if origin_host is None:  # "null" or garbage
        return True
    allowed = {_host(header(headers, "host") or "", urlsplit(origin.strip()).scheme or scheme)}
    if external_url:
        ext = _netloc(external_url)
        if ext:
            allowed.add(ext)
    return origin_host not in allowed
