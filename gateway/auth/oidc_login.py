"""Browser login through OpenID Connect / OAuth2 providers (``http.auth.openid``), as zot does.

``GET /zot/auth/login?provider=<key>&callback_ui=<where to go after>`` sends the browser to the
provider with an authorization code request: PKCE (S256), a random ``state`` and ``nonce``.
These, the PKCE verifier and ``callback_ui`` travel in a short-lived ``oidc_state`` cookie signed
with the session key (so any gateway worker can finish the login), and the state is also
recorded on a shard so that it can be used once only. ``/zot/auth/callback/<key>`` then:

1. checks the cookie's signature and age, that ``state`` is the cookie's (a forged or swapped
   state is refused) and consumes the recorded state (a replayed callback is refused);
2. exchanges the code at the token endpoint (client secret + PKCE verifier; an expired or
   reused code is refused by the provider, and so here);
3. verifies the ID token (``oidc``, ``gitlab``, ``google``): signature with the issuer's JWKS
   (:mod:`gateway.auth.jwks`), ``iss``, ``aud`` = client id, ``exp``, and ``nonce`` = the
   cookie's; then takes the user name from ``claimMapping.username`` (default ``email``) and the
   groups from ``claimMapping.groups`` (default ``groups``). ``github`` (OAuth2, no ID token):
   the user's login and organisations from the GitHub API;
4. opens a session (origin ``openid``, the groups in the signed cookie) and redirects to
   ``callback_ui``: a path on this registry, or a URL whose origin is ``http.externalUrl``'s or
   in ``openid.callbackAllowOrigins`` (anything else is refused at the start: no open redirect).

Every refusal is a :class:`LoginError` with a message safe to show.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import jwt

from common.config.identity import OpenIDProvider, OpenIDSettings, read_credentials
from gateway.auth.jwks import ALGORITHMS, Issuer, IssuerUnavailable, fetch_json
from gateway.auth.ratelimit import Buckets

log = logging.getLogger("shardreg.auth")

STATE_COOKIE = "oidc_state"
STATE_TTL = 600
#: Logins a client may start per minute (each start writes a small state record on a shard).
STARTS_PER_MINUTE = 30
CLOCK_LEEWAY = 30
GITHUB = {"auth": "https://github.com/login/oauth/authorize", "token": "https://github.com/login/oauth/access_token",
          "api": "https://api.github.com"}


class LoginError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LoginResult:
    username: str
    groups: frozenset[str]
    callback_ui: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def state_sid(state: str) -> str:
    """The single-use record of a login's state (a session id no cookie can name)."""
    return "oidcstate~" + hashlib.sha256(state.encode()).hexdigest()


class Provider:
    """One configured provider: its endpoints, credentials and how its users are named."""

    def __init__(self, settings: OpenIDProvider) -> None:
        self.settings = settings
        self.client_id, self.client_secret = settings.client_id, settings.client_secret
        if settings.credentials_file:
            creds = read_credentials(settings.credentials_file, ("clientid", "clientsecret"),
                                     f"http.auth.openid.providers.{settings.key}")
            self.client_id = creds["clientid"] or self.client_id
            self.client_secret = creds["clientsecret"] or self.client_secret
        self.issuer = Issuer(settings.issuer) if settings.kind != "github" and settings.issuer else None
        self.http = httpx.AsyncClient(timeout=10, follow_redirects=False, trust_env=False)

    async def endpoints(self) -> tuple[str, str]:
        s = self.settings
        if s.kind == "github":
            return s.auth_url or GITHUB["auth"], s.token_url or GITHUB["token"]
        assert self.issuer is not None
        doc = await self.issuer.discovery()
        auth, token = s.auth_url or doc.get("authorization_endpoint"), s.token_url or doc.get("token_endpoint")
        if not isinstance(auth, str) or not isinstance(token, str):
            raise IssuerUnavailable(f"{s.issuer}: discovery document without endpoints")
        return auth, token

    async def exchange(self, code: str, redirect_uri: str, verifier: str) -> dict[str, Any]:
        _, token_url = await self.endpoints()
        try:
            r = await self.http.post(token_url, auth=(self.client_id, self.client_secret),
                                     headers={"Accept": "application/json"},
                                     data={"grant_type": "authorization_code", "code": code,
                                           "redirect_uri": redirect_uri, "code_verifier": verifier})
        except httpx.HTTPError as exc:
            raise IssuerUnavailable(f"{token_url}: {type(exc).__name__}") from None
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code != 200 or not isinstance(body, dict) or "error" in body:
            error = body.get("error") if isinstance(body, dict) else None
            log.info("openid %s: token endpoint refused the code: %s", self.settings.key, error or r.status_code)
            raise LoginError("the provider refused the authorization code (expired, already used or not "
                             f"issued to this registry): {str(error or r.status_code)[:64]}", 401)
        return body

    async def user(self, tokens: dict[str, Any], nonce: str) -> tuple[str, frozenset[str]]:
        if self.settings.kind == "github":
            return await self._github_user(tokens)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise LoginError("the provider sent no ID token", 401)
        claims = await self.verify_id_token(id_token, nonce)
        s = self.settings
        name = claims.get(s.username_claim)
        if not isinstance(name, str) or not name:
            raise LoginError(f"the ID token has no {s.username_claim!r} claim for the user name", 401)
        raw = claims.get(s.groups_claim) or []
        groups = frozenset(str(g) for g in ([raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []))
        return name, groups

    async def verify_id_token(self, token: str, nonce: str) -> dict[str, Any]:
        """The claims of a valid ID token for this client and login; raises :class:`LoginError`."""
        assert self.issuer is not None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise LoginError("ID token refused: malformed", 401) from None
        if header.get("alg") not in ALGORITHMS:
            raise LoginError("ID token refused: signature algorithm not accepted", 401)
        kid = header.get("kid")
        key = await self.issuer.key(kid if isinstance(kid, str) else None)
        if key is None:
            raise LoginError("ID token refused: signed with an unknown key", 401)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[header["alg"]], audience=self.client_id, issuer=self.issuer.issuer,
                leeway=CLOCK_LEEWAY, options={"require": ["exp", "iat", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise LoginError("ID token refused: expired", 401) from None
        except jwt.InvalidAudienceError:
            raise LoginError("ID token refused: issued for another client (audience)", 401) from None
        except jwt.InvalidIssuerError:
            raise LoginError("ID token refused: from another issuer", 401) from None
        except jwt.PyJWTError as exc:
            raise LoginError(f"ID token refused: {type(exc).__name__}", 401) from None
        if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(claims["nonce"], nonce):
            raise LoginError("ID token refused: nonce does not match this login", 401)
        return claims

    async def _github_user(self, tokens: dict[str, Any]) -> tuple[str, frozenset[str]]:
        access = tokens.get("access_token")
        if not isinstance(access, str):
            raise LoginError("the provider sent no access token", 401)
        api = self.settings.keypath or GITHUB["api"]
        self.http.headers["Authorization"] = f"Bearer {access}"
        try:
            user = await fetch_json(self.http, f"{api}/user")
            orgs_response = await self.http.get(f"{api}/user/orgs", headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise IssuerUnavailable(f"GitHub API: {type(exc).__name__}") from None
        finally:
            self.http.headers.pop("Authorization", None)
        login = user.get("login")
        if not isinstance(login, str) or not login:
            raise LoginError("GitHub did not name the user", 401)
        orgs = orgs_response.json() if orgs_response.status_code == 200 else []
        return login, frozenset(o["login"] for o in orgs if isinstance(o, dict) and isinstance(o.get("login"), str))


class OpenIDLogin:
    def __init__(self, settings: OpenIDSettings, external_url: str | None) -> None:
        self.settings = settings
        self.external_url = external_url.rstrip("/") if external_url else None
        self.providers = {key: Provider(p) for key, p in settings.providers.items()}
        self.starts = Buckets(rate=STARTS_PER_MINUTE / 60.0, capacity=STARTS_PER_MINUTE)

    def provider(self, key: str) -> Provider:
        found = self.providers.get(key)
        if found is None:
            raise LoginError("unknown OpenID provider", 404)
        return found

    def base_url(self, scheme: str, host: str) -> str:
        return self.external_url or f"{scheme}://{host}"

    def check_callback_ui(self, callback_ui: str, base: str) -> str:
        """``callback_ui`` if it is safe to redirect to (no open redirect), else :class:`LoginError`."""
        if not callback_ui:
            return "/"
        if len(callback_ui) > 2048 or any(c in callback_ui for c in "\\\r\n\t"):
            raise LoginError("callback_ui is not an acceptable address")
        if callback_ui.startswith("/") and not callback_ui.startswith("//"):
            return callback_ui
        parts = urlsplit(callback_ui)
        origin = f"{parts.scheme}://{parts.netloc}"
        allowed = {*self.settings.callback_allow_origins, base.rstrip("/")}
        if parts.scheme in ("http", "https") and origin in allowed:
            return callback_ui
        raise LoginError("callback_ui must be a path on this registry or an origin listed in "
                         "http.auth.openid.callbackAllowOrigins")

    async def begin(self, key: str, callback_ui: str, base: str, signing_key: bytes) -> tuple[str, str, str]:
        """(the provider's authorization URL, the state cookie value, the state)."""
        provider = self.provider(key)
        callback_ui = self.check_callback_ui(callback_ui, base)
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        challenge = _b64(hashlib.sha256(verifier.encode()).digest())
        auth_url, _ = await provider.endpoints()
        params = {"response_type": "code", "client_id": provider.client_id, "redirect_uri": f"{base}/zot/auth/callback/{key}",
                  "scope": " ".join(provider.settings.scopes), "state": state, "code_challenge": challenge,
                  "code_challenge_method": "S256"}
        if provider.settings.kind != "github":
            params["nonce"] = nonce
        payload = _b64(json.dumps({"p": key, "s": state, "n": nonce, "v": verifier, "cb": callback_ui,
                                   "e": int(time.time()) + STATE_TTL}).encode())
        mac = _b64(hmac.new(signing_key, b"oidc-state." + payload.encode(), hashlib.sha256).digest())
        separator = "&" if "?" in auth_url else "?"
        return f"{auth_url}{separator}{urlencode(params)}", f"{payload}.{mac}", state

    @staticmethod
    def read_state(cookie: str | None, key: str, state: str, signing_key: bytes) -> dict[str, Any]:
        """The login's data from its state cookie, checked against the callback's ``state``."""
        if not cookie or len(cookie) > 4096 or cookie.count(".") != 1:
            raise LoginError("no login in progress in this browser (state cookie missing)")
        payload, mac = cookie.split(".")
        expected = _b64(hmac.new(signing_key, b"oidc-state." + payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(mac, expected):
            raise LoginError("login state cookie is not valid")
        try:
            data: dict[str, Any] = json.loads(_unb64(payload))
        except ValueError:
            raise LoginError("login state cookie is not valid") from None
        if data.get("p") != key:
            raise LoginError("login was started with another provider")
        if not state or not hmac.compare_digest(str(data.get("s", "")), state):
            raise LoginError("state does not match this browser's login (forged or swapped)")
        if int(data.get("e", 0)) < time.time():
            raise LoginError("login took too long, start again")
        return data

    async def complete(self, key: str, data: dict[str, Any], code: str, base: str) -> LoginResult:
        provider = self.provider(key)
        tokens = await provider.exchange(code, f"{base}/zot/auth/callback/{key}", str(data["v"]))
        name, groups = await provider.user(tokens, str(data["n"]))
        if len(name) > 256 or any(ord(c) < 32 or c == "\x7f" for c in name):
            raise LoginError("the provider's user name is not usable here", 401)
        return LoginResult(username=name, groups=groups, callback_ui=str(data["cb"]))
