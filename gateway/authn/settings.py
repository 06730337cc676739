"""The typed auth sections of the config: ``http.auth``, ``http.accessControl``, ``http.ratelimit``.

``Config`` keeps these sections as raw JSON (so ``Config.to_json()`` round-trips them for the
gateway workers); :func:`auth_settings` validates them once per worker into frozen dataclasses.
Keys zot knows that shardreg does not implement (ldap, openid, ...) are reported in
``AuthSettings.warnings``.

``http.auth`` keys::

    htpasswd.path          bcrypt htpasswd file (re-read when it changes)
    bearer.realm/service   Docker token auth; cert = PEM certificate or public key verifying tokens
    bearer.issuer          expected ``iss`` of tokens (optional for external token servers)
    bearer.key             PEM private key: enables the built-in token endpoint (``/auth/token``)
    bearer.tokenExpiry     lifetime of built-in tokens (default 5m)
    apikey                 true → ``/zot/auth/apikey`` and ``zak_`` keys as passwords
    failDelay              delay before answering a failed login (seconds or duration)
    failLimit              failed logins allowed per client per minute before 429 (default 10)
    sessionKeysFile        JSON ``{"hashKey": ..., "encryptKey": ...}`` signing session cookies
    sessionSecret          alternative: a secret string from which the session key is derived
    sessionTimeout         session lifetime (default 12h)
    secureSession          mark the session cookie ``Secure`` (default: true when TLS is on)
    mtls                   client-certificate identities (with ``http.tls.cacert``; see ``authn.mtls``):
                           identityAttributes (default ["CommonName"]), uriSanPattern,
                           uriSanIndex, dnsSanIndex, emailSanIndex
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from common.config import Config, ConfigError, parse_duration

ACTIONS = ("read", "create", "update", "delete")
_ZOT_AUTH_IGNORED = {"ldap", "openid", "sessionDriver", "sessionHashKey", "sessionEncryptKey"}
_KNOWN_AUTH = {"htpasswd", "bearer", "apikey", "failDelay", "failLimit", "sessionKeysFile", "sessionSecret",
               "sessionTimeout", "secureSession", "mtls"}
#: zot's ``mtls.identityAttributes`` names (case-insensitive) → the attribute they read.
MTLS_ATTRIBUTES = {"commonname": "cn", "cn": "cn", "subject": "dn", "dn": "dn", "email": "email",
                   "rfc822name": "email", "uri": "uri", "url": "uri", "dnsname": "dns", "dns": "dns"}
_MTLS_KEYS = {"identityAttributes", "uriSanPattern", "uriSanIndex", "dnsSanIndex", "emailSanIndex"}


@dataclass(frozen=True)
class BearerSettings:
    realm: str | None = None
    service: str = "shardreg"
    cert: str | None = None
    issuer: str | None = None
    key: str | None = None
    token_expiry: float = 300.0

    @property
    def builtin(self) -> bool:
        return self.key is not None


@dataclass(frozen=True)
class MtlsSettings:
    """Client-certificate identities: on when ``http.tls.cacert`` is set."""

    #: Tried in order, the first that yields a name wins: cn, dn, email, uri, dns.
    attributes: tuple[str, ...] = ("cn",)
    uri_pattern: re.Pattern[str] | None = None
    uri_index: int = 0
    dns_index: int = 0
    email_index: int = 0


@dataclass(frozen=True)
class Policy:
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RepoRules:
    pattern: str
    policies: tuple[Policy, ...] = ()
    default_policy: frozenset[str] = frozenset()
    anonymous_policy: frozenset[str] = frozenset()


@dataclass(frozen=True)
class AccessSettings:
    repositories: tuple[RepoRules, ...] = ()
    admin: Policy = Policy()
    groups: dict[str, frozenset[str]] = field(default_factory=dict)  # group -> users

    @property
    def configured(self) -> bool:
        return bool(self.repositories or self.admin.actions)


@dataclass(frozen=True)
class RateLimit:
    rate: float | None = None
    methods: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AuthSettings:
    htpasswd: str | None = None
    bearer: BearerSettings | None = None
    apikey: bool = False
    fail_delay: float = 0.0
    fail_limit: int = 10
    session_keys_file: str | None = None
    session_secret: str | None = None
    session_timeout: float = 12 * 3600.0
    secure_session: bool = False
    access: AccessSettings = AccessSettings()
    ratelimit: RateLimit = RateLimit()
    mtls: MtlsSettings | None = None
    warnings: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        """Some way to authenticate is configured (otherwise every caller is anonymous)."""
        return bool(self.htpasswd or self.bearer or self.apikey or self.mtls)


def _strings(value: Any, key: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: expected a list of strings")
    return frozenset(value)


def _actions(value: Any, key: str) -> frozenset[str]:
    actions = _strings(value, key)
    unknown = actions - set(ACTIONS) - {"detectManifestCollision"}
    if unknown:
        raise ConfigError(f"{key}: unknown actions {sorted(unknown)} (use {', '.join(ACTIONS)})")
    return actions & set(ACTIONS)


def _policy(data: Any, key: str) -> Policy:
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: expected an object")
    return Policy(users=_strings(data.get("users"), f"{key}.users"),
                  groups=_strings(data.get("groups"), f"{key}.groups"),
                  actions=_actions(data.get("actions"), f"{key}.actions"))


def _obj(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected an object")
    return value


def parse_access(data: dict[str, Any], warnings: list[str]) -> AccessSettings:
    repos = []
    for pattern, rules in _obj(data.get("repositories"), "http.accessControl.repositories").items():
        key = f"http.accessControl.repositories.{pattern}"
        rules = _obj(rules, key)
        policies = rules.get("policies") or []
        if not isinstance(policies, list):
            raise ConfigError(f"{key}.policies: expected a list")
        for p in policies:
            if isinstance(p, dict) and p.get("conditions"):
                warnings.append(f"{key}.policies.conditions: CEL conditions are not supported, ignored")
        repos.append(RepoRules(pattern=pattern,
                               policies=tuple(_policy(p, f"{key}.policies") for p in policies),
                               default_policy=_actions(rules.get("defaultPolicy"), f"{key}.defaultPolicy"),
                               anonymous_policy=_actions(rules.get("anonymousPolicy"), f"{key}.anonymousPolicy")))
    groups = {name: _strings(_obj(g, f"http.accessControl.groups.{name}").get("users"),
                             f"http.accessControl.groups.{name}.users")
              for name, g in _obj(data.get("groups"), "http.accessControl.groups").items()}
    admin = _policy(data["adminPolicy"], "http.accessControl.adminPolicy") if data.get("adminPolicy") else Policy()
    for name in data:
        if name not in {"repositories", "groups", "adminPolicy", "metrics"}:  # metrics: gateway.metrics
            warnings.append(f"http.accessControl.{name}: not supported by shardreg, ignored")
    return AccessSettings(repositories=tuple(repos), admin=admin, groups=groups)


def parse_ratelimit(data: dict[str, Any]) -> RateLimit:
    def rate(value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{key}: expected a positive number of requests per second")
        return float(value)

    methods = {}
    for i, m in enumerate(data.get("methods") or []):
        m = _obj(m, f"http.ratelimit.methods[{i}]")
        if not isinstance(m.get("method"), str):
            raise ConfigError(f"http.ratelimit.methods[{i}].method: expected a string")
        methods[m["method"].upper()] = rate(m.get("rate"), f"http.ratelimit.methods[{i}].rate")
    return RateLimit(rate=rate(data["rate"], "http.ratelimit.rate") if data.get("rate") is not None else None,
                     methods=methods)


def parse_mtls(config: Config, data: dict[str, Any], warnings: list[str]) -> MtlsSettings | None:
    """``http.auth.mtls``; client certificates are identities only with ``http.tls.cacert``."""
    m = _obj(data.get("mtls"), "http.auth.mtls")
    for name in m:
        if name not in _MTLS_KEYS:
            warnings.append(f"http.auth.mtls.{name}: unknown option, ignored")
    if config.http.tls is None or not config.http.tls.cacert:
        if m:
            warnings.append("http.auth.mtls: no effect without http.tls.cacert (client certificates)")
        return None
    names = m.get("identityAttributes") or ["CommonName"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError("http.auth.mtls.identityAttributes: expected a list of strings")
    unknown = [n for n in names if n.lower() not in MTLS_ATTRIBUTES]
    if unknown:
        raise ConfigError(f"http.auth.mtls.identityAttributes: unknown {unknown} "
                          "(use CommonName, Subject, Email, URI, DNSName)")
    pattern = m.get("uriSanPattern")
    if pattern is not None and not isinstance(pattern, str):
        raise ConfigError("http.auth.mtls.uriSanPattern: expected a string")
    compiled = None
    if pattern:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"http.auth.mtls.uriSanPattern: invalid regular expression ({exc})") from None
        if compiled.groups < 1:
            raise ConfigError("http.auth.mtls.uriSanPattern: needs a capture group (the identity)")
    indexes = {}
    for key in ("uriSanIndex", "dnsSanIndex", "emailSanIndex"):
        value = m.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"http.auth.mtls.{key}: expected a non-negative integer")
        indexes[key] = value
    return MtlsSettings(attributes=tuple(dict.fromkeys(MTLS_ATTRIBUTES[n.lower()] for n in names)),
                        uri_pattern=compiled, uri_index=indexes["uriSanIndex"],
                        dns_index=indexes["dnsSanIndex"], email_index=indexes["emailSanIndex"])


def auth_settings(config: Config) -> AuthSettings:
    """Validate the auth sections of ``config`` (raises :class:`ConfigError`)."""
    warnings: list[str] = []
    data = _obj(config.http.auth, "http.auth")
    for name in data:
        if name in _ZOT_AUTH_IGNORED:
            warnings.append(f"http.auth.{name}: zot option not supported by shardreg, ignored")
        elif name not in _KNOWN_AUTH:
            warnings.append(f"http.auth.{name}: unknown option, ignored")
    htpasswd = _obj(data.get("htpasswd"), "http.auth.htpasswd").get("path")
    if htpasswd is not None and not isinstance(htpasswd, str):
        raise ConfigError("http.auth.htpasswd.path: expected a string")
    bearer = None
    if data.get("bearer"):
        b = _obj(data["bearer"], "http.auth.bearer")
        for name in ("realm", "service", "cert", "issuer", "key"):
            if b.get(name) is not None and not isinstance(b[name], str):
                raise ConfigError(f"http.auth.bearer.{name}: expected a string")
        bearer = BearerSettings(realm=b.get("realm"), service=b.get("service") or "shardreg", cert=b.get("cert"),
                                issuer=b.get("issuer"), key=b.get("key"),
                                token_expiry=parse_duration(b.get("tokenExpiry", 300), "http.auth.bearer.tokenExpiry"))
        if not bearer.cert and not bearer.key:
            raise ConfigError("http.auth.bearer: cert (to verify tokens) or key (built-in token issuer) is required")
        if not bearer.key and not bearer.realm:
            raise ConfigError("http.auth.bearer.realm: required with an external token server")
    apikey = data.get("apikey", False)
    if not isinstance(apikey, bool):
        raise ConfigError("http.auth.apikey: expected true or false")
    fail_limit = data.get("failLimit", 10)
    if isinstance(fail_limit, bool) or not isinstance(fail_limit, int) or fail_limit < 1:
        raise ConfigError("http.auth.failLimit: expected a positive integer")
    secure = data.get("secureSession")
    if secure is not None and not isinstance(secure, bool):
        raise ConfigError("http.auth.secureSession: expected true or false")
    return AuthSettings(
        htpasswd=htpasswd,
        bearer=bearer,
        apikey=apikey,
        fail_delay=parse_duration(data.get("failDelay", 0), "http.auth.failDelay"),
        fail_limit=fail_limit,
        session_keys_file=data.get("sessionKeysFile"),
        session_secret=data.get("sessionSecret"),
        session_timeout=parse_duration(data.get("sessionTimeout", "12h"), "http.auth.sessionTimeout"),
        secure_session=secure if secure is not None else config.http.tls is not None,
        access=parse_access(_obj(config.http.access_control, "http.accessControl"), warnings),
        ratelimit=parse_ratelimit(_obj(config.http.ratelimit, "http.ratelimit")),
        mtls=parse_mtls(config, data, warnings),
        warnings=tuple(warnings),
    )
