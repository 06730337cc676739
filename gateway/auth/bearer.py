"""Docker token authentication: verify bearer JWTs, and issue them (the built-in token endpoint).

Tokens carry the Docker ``access`` claim::

    {"iss": ..., "sub": "alice", "aud": "<service>", "exp": ..., "nbf": ..., "iat": ..., "jti": ...,
     "access": [{"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]},
                {"type": "registry", "name": "catalog", "actions": ["*"]}]}

Verification enforces the signature (RS*/PS*, ES*, EdDSA chosen by the key type, never
``none`` or HMAC), ``aud`` = the configured service, ``exp`` (required), ``nbf`` and, when
configured, ``iss``. The key comes from ``bearer.cert`` (a PEM certificate or public key) or
from the public half of ``bearer.key`` (the built-in issuer's private key).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from common.config import BearerSettings

#: Issuer of built-in tokens when ``bearer.issuer`` is not set.
DEFAULT_ISSUER = "shardreg"
#: Clock skew tolerated on exp/nbf/iat.
LEEWAY = 5
#: How a subject logs in when a removal from htpasswd must end their tokens too (the ``origin``
#: private claim; a token without it is treated as password-backed).
PASSWORD_ORIGINS = frozenset({"htpasswd", "apikey", "session", None})
#: Docker scope actions → registry actions.
DOCKER_TO_ACTIONS = {"pull": {"read"}, "push": {"create", "update"}, "delete": {"delete"},
                     "*": {"read", "create", "update", "delete"}}


def token_error(exc: jwt.PyJWTError) -> TokenError:
    """The client-facing reason a JWT was refused (the same words for every kind of token)."""
    for kind, reason in ((jwt.ExpiredSignatureError, "token expired"),
                         (jwt.ImmatureSignatureError, "token not yet valid"),
                         (jwt.InvalidAudienceError, "token audience is not this registry"),
                         (jwt.InvalidIssuerError, "token issuer not trusted")):
        if isinstance(exc, kind):
            return TokenError(reason)
    return TokenError("invalid token")


class TokenError(Exception):
    """The token is not acceptable; the message is safe to show (it never contains the token)."""


def _algorithms(key: Any) -> list[str]:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return {256: ["ES256"], 384: ["ES384"], 521: ["ES512"]}.get(key.curve.key_size, ["ES256"])
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey | ed448.Ed448PublicKey
                  | ed448.Ed448PrivateKey):
        return ["EdDSA"]
    raise ValueError(f"unsupported key type {type(key).__name__}")


def load_public_key(path: str) -> Any:
    data = Path(path).read_bytes()
    if b"BEGIN CERTIFICATE" in data:
        return x509.load_pem_x509_certificate(data).public_key()
    return serialization.load_pem_public_key(data)


def load_private_key(path: str) -> Any:
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


@dataclass(frozen=True)
class Grants:
    """What a verified token allows."""

    subject: str | None
    repositories: dict[str, frozenset[str]]  # repo -> registry actions
    catalog: bool
    issued_here: bool
    key_scopes: tuple[str, ...] | None  # built-in tokens obtained with a scoped API key
    origin: str | None = None  # built-in tokens: how the subject logged in


class TokenVerifier:
    """Checks tokens against ``bearer.cert`` (external token server) and/or the built-in key."""

    def __init__(self, settings: BearerSettings) -> None:
        self.settings = settings
        self.keys: list[tuple[Any, list[str], bool]] = []  # (public key, algorithms, issued here)
        if settings.cert:
            key = load_public_key(settings.cert)
            self.keys.append((key, _algorithms(key), False))
        if settings.key:
            key = load_private_key(settings.key).public_key()
            self.keys.append((key, _algorithms(key), True))
        self.issuer = settings.issuer or (DEFAULT_ISSUER if settings.builtin else None)

    def _decode(self, token: str) -> tuple[dict[str, Any], bool]:
        options = {"require": ["exp", "aud"], "verify_iss": self.issuer is not None}
        for index, (key, algorithms, here) in enumerate(self.keys):
            try:
                claims = jwt.decode(token, key, algorithms=algorithms, audience=self.settings.service,
                                    issuer=self.issuer, leeway=LEEWAY, options=options)  # type: ignore[arg-type]
                return claims, here
            except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
                if index == len(self.keys) - 1:
                    raise
        raise jwt.InvalidTokenError("no key")

    def verify(self, token: str) -> Grants:
        if self.issuer is not None:  # a clear answer for a token of another issuer (a CI system's, say)
            try:
                unverified = jwt.decode(token, options={"verify_signature": False})
            except jwt.PyJWTError:
                raise TokenError("invalid token") from None
            if unverified.get("iss") != self.issuer:
                raise TokenError("token issuer not trusted")
        try:
            claims, issued_here = self._decode(token)
        except jwt.PyJWTError as exc:
            raise token_error(exc) from None
        repos: dict[str, frozenset[str]] = {}
        catalog = False
        access = claims.get("access") or []
        if not isinstance(access, list):
            raise TokenError("invalid token access claim")
        for entry in access:
            if not isinstance(entry, dict) or not isinstance(entry.get("actions"), list):
                continue
            actions: set[str] = set()
            for a in entry["actions"]:
                actions |= DOCKER_TO_ACTIONS.get(a, set())
            if entry.get("type") == "repository" and isinstance(entry.get("name"), str):
                repos[entry["name"]] = repos.get(entry["name"], frozenset()) | actions
            elif entry.get("type") == "registry" and entry.get("name") == "catalog" and "*" in entry["actions"]:
                catalog = True
        private: dict[str, Any] = claims["shardreg"] if isinstance(claims.get("shardreg"), dict) else {}
        scopes = private.get("scopes")
        origin = private.get("origin") if isinstance(private.get("origin"), str) else None
        sub = claims.get("sub") if isinstance(claims.get("sub"), str) and claims.get("sub") else None
        return Grants(subject=sub, repositories=repos, catalog=catalog,
                      issued_here=issued_here,
                      key_scopes=tuple(scopes) if isinstance(scopes, list) else None, origin=origin)


class TokenIssuer:
    """Signs short-lived tokens for the built-in token endpoint."""

    def __init__(self, settings: BearerSettings) -> None:
        assert settings.key
        self.settings = settings
        self.key = load_private_key(settings.key)
        self.algorithm = _algorithms(self.key)[0]
        self.issuer = settings.issuer or DEFAULT_ISSUER

    def issue(self, subject: str | None, access: list[dict[str, Any]], key_scopes: tuple[str, ...] | None,
              origin: str | None = None) -> tuple[str, int, int]:
        """(token, expires_in, issued_at); ``origin``: how ``subject`` logged in."""
        now = int(time.time())
        expires_in = max(60, int(self.settings.token_expiry))
        claims: dict[str, Any] = {"iss": self.issuer, "sub": subject or "", "aud": self.settings.service,
                                  "exp": now + expires_in, "nbf": now - 1, "iat": now, "jti": uuid.uuid4().hex,
                                  "access": access}
        private: dict[str, Any] = {}
        if key_scopes is not None:
            private["scopes"] = list(key_scopes)
        if subject and origin:
            private["origin"] = origin
        if private:
            claims["shardreg"] = private
        return jwt.encode(claims, self.key, algorithm=self.algorithm), expires_in, now


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """``repository:team/app:pull,push`` → ("repository", "team/app", ["pull", "push"])."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name:
        return None
    kind = kind.split("(", 1)[0]  # "repository(plugin)"
    return kind, name, [a for a in actions.split(",") if a]
