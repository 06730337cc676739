"""An OpenID issuer's discovery document and signing keys (JWKS), fetched and cached.

Shared by workload identity (:mod:`gateway.auth.workload`) and OpenID login
(:mod:`gateway.auth.oidc_login`). Bounded in time and size: every fetch has a timeout and a
size limit; keys are kept :data:`MAX_AGE` seconds; an unknown ``kid`` refetches the key set,
but at most once per :data:`MIN_REFRESH` seconds (a flood of tokens with made-up key ids costs
one fetch, not one per token). A fetch that fails raises :class:`IssuerUnavailable` (503),
unless the key asked for is cached: then the cached keys keep working while the issuer is down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from typing import Any

import httpx
import jwt

from gateway.auth.external import IssuerUnavailable

log = logging.getLogger("shardreg.auth")

MAX_AGE = 600.0
MIN_REFRESH = 10.0
TIMEOUT = 5.0
MAX_DOCUMENT = 1 << 20
#: Signature algorithms accepted on ID tokens: asymmetric only (never ``none`` or HMAC).
ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                        "EdDSA"})


def tls_context(ca_pem: str | None = None, ca_file: str | None = None) -> ssl.SSLContext:
    """System roots plus the configured CA (``certificateAuthority`` PEM or file)."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem)
    return context


async def fetch_json(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    """GET a JSON object, bounded in size; raises :class:`IssuerUnavailable`."""
    try:
        async with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise IssuerUnavailable(f"{url}: HTTP {response.status_code}")
            body = b""
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT:
                    raise IssuerUnavailable(f"{url}: document too large")
    except httpx.HTTPError as exc:
        raise IssuerUnavailable(f"{url}: {type(exc).__name__}: {exc}") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise IssuerUnavailable(f"{url}: not JSON") from None
    if not isinstance(data, dict):
        raise IssuerUnavailable(f"{url}: not a JSON object")
    return data


class Issuer:
    """One issuer: its discovery document and key set."""

    def __init__(self, issuer: str, *, ca_pem: str | None = None, ca_file: str | None = None,
                 timeout: float = TIMEOUT) -> None:
        self.issuer = issuer.rstrip("/")
        self.client = httpx.AsyncClient(verify=tls_context(ca_pem, ca_file), timeout=timeout,
                                        follow_redirects=False, trust_env=False)
        self._discovery: dict[str, Any] | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched = 0.0
        self._lock = asyncio.Lock()

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            doc = await fetch_json(self.client, f"{self.issuer}/.well-known/openid-configuration")
            if not isinstance(doc.get("jwks_uri"), str):
                raise IssuerUnavailable(f"{self.issuer}: discovery document without jwks_uri")
            self._discovery = doc
        return self._discovery

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        """The signing key ``kid`` (the only key when the token names none), or None if unknown."""
        now = time.monotonic()
        known = self._lookup(kid)
        if now - self._fetched > MAX_AGE or known is None and now - self._fetched > MIN_REFRESH:
            try:
                await self._refresh(now)
            except IssuerUnavailable as exc:
                if known is None:
                    raise
                # keep verifying with the keys we have; try again after MIN_REFRESH
                log.warning("cannot refresh the keys of %s (%s): using the cached ones", self.issuer, exc)
                self._fetched = now - MAX_AGE + MIN_REFRESH
        return self._lookup(kid)

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self, started: float) -> None:
        async with self._lock:
            if self._fetched > started:  # another request refreshed meanwhile
                return
            doc = await self.discovery()
            data = await fetch_json(self.client, doc["jwks_uri"])
            keys: dict[str, jwt.PyJWK] = {}
            for i, item in enumerate(data.get("keys") or []):
                if not isinstance(item, dict) or item.get("use", "sig") != "sig":
                    continue
                try:
                    key = jwt.PyJWK(item)
                except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                    continue
                keys[str(item.get("kid") or f"#{i}")] = key
            self._keys, self._fetched = keys, time.monotonic()
            log.debug("fetched %d signing keys of %s", len(keys), self.issuer)

    async def close(self) -> None:
        await self.client.aclose()
