"""``http.auth``: who callers are (htpasswd, bearer tokens, API keys, sessions, client certificates).

Keys::

    htpasswd.path          bcrypt htpasswd file (re-read when it changes)
    bearer.realm/service   Docker token auth; cert = PEM certificate or public key verifying tokens
    bearer.issuer          expected ``iss`` of tokens (optional for external token servers)
    bearer.key             PEM private key: enables the built-in token endpoint (``/auth/token``)
    bearer.tokenExpiry     lifetime of built-in tokens (default 5m)
    apikey                 true → ``/zot/auth/apikey`` and ``zak_`` keys as passwords
    failDelay              delay before answering a failed login (seconds or duration)
    failLimit              failed logins allowed per client (10× per user) per minute before 429 (default 10)
    sessionKeysFile        JSON ``{"hashKey": ..., "encryptKey": ...}`` signing session cookies
    sessionSecret          alternative: a secret string from which the session key is derived
    sessionTimeout         session lifetime (default 12h)
    secureSession          mark the session cookie ``Secure`` (default: true when TLS is on)
    mtls                   client-certificate identities (with ``http.tls.cacert``):
                           identityAttributes (default ["CommonName"]), uriSanPattern,
                           uriSanIndex, dnsSanIndex, emailSanIndex

    ldap, openid, bearer.oidc   external identities, parsed by :mod:`common.config.identity`
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from common.config.identity import (
    LdapSettings,
    OpenIDSettings,
    WorkloadIssuer,
    parse_ldap,
    parse_openid,
    parse_workload,
)
from common.config.reader import ConfigError, Reader

_ZOT_ONLY = {"sessionDriver", "sessionHashKey", "sessionEncryptKey"}
#: zot's ``mtls.identityAttributes`` names (case-insensitive) → the attribute they read.
MTLS_ATTRIBUTES = {"commonname": "cn", "cn": "cn", "subject": "dn", "dn": "dn", "email": "email",
                   "rfc822name": "email", "uri": "uri", "url": "uri", "dnsname": "dns", "dns": "dns"}
_MTLS_INDEXES = ("uriSanIndex", "dnsSanIndex", "emailSanIndex")
_MTLS_KEYS = {"identityAttributes", "uriSanPattern", *_MTLS_INDEXES}


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

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"service": self.service, "tokenExpiry": self.token_expiry}
        for name in ("realm", "cert", "issuer", "key"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


@dataclass(frozen=True)
class MtlsSettings:
    """Client-certificate identities: on when ``http.tls.cacert`` is set."""

    #: Tried in order, the first that yields a name wins: cn, dn, email, uri, dns.
    attributes: tuple[str, ...] = ("cn",)
    uri_pattern: re.Pattern[str] | None = None
    uri_index: int = 0
    dns_index: int = 0
    email_index: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"identityAttributes": list(self.attributes), "uriSanIndex": self.uri_index,
                               "dnsSanIndex": self.dns_index, "emailSanIndex": self.email_index}
        if self.uri_pattern is not None:
            out["uriSanPattern"] = self.uri_pattern.pattern
        return out


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
    mtls: MtlsSettings | None = None
    #: ``ldap``: passwords checked against an LDAP directory (:mod:`common.config.identity`).
    ldap: LdapSettings | None = None
    #: ``openid``: browser login through OpenID Connect / OAuth2 providers.
    openid: OpenIDSettings | None = None
    #: ``bearer.oidc[]``: OIDC ID tokens of workloads (CI jobs, service accounts) as credentials.
    workload: tuple[WorkloadIssuer, ...] = ()
    #: ``http.auth`` is in the config and not empty (admin-only endpoints then need an admin).
    present: bool = False

    @property
    def enabled(self) -> bool:
        """Some way to authenticate is configured (otherwise every caller is anonymous)."""
        return bool(self.htpasswd or self.bearer or self.apikey or self.mtls or self.ldap or self.openid
                    or self.workload)

    @property
    def openid_providers(self) -> dict[str, str]:
        """Provider key → display name (zot's UI shows a login button for each)."""
        return {key: p.name for key, p in self.openid.providers.items()} if self.openid else {}

    def to_json(self) -> dict[str, Any]:
        """The section in the config format (empty when it was not configured)."""
        if not self.present:
            return {}
        out: dict[str, Any] = {"apikey": self.apikey, "failDelay": self.fail_delay, "failLimit": self.fail_limit,
                               "sessionTimeout": self.session_timeout, "secureSession": self.secure_session}
        if self.htpasswd is not None:
            out["htpasswd"] = {"path": self.htpasswd}
        if self.bearer is not None:
            out["bearer"] = self.bearer.to_json()
        if self.session_keys_file is not None:
            out["sessionKeysFile"] = self.session_keys_file
        if self.session_secret is not None:
            out["sessionSecret"] = self.session_secret
        if self.mtls is not None:
            out["mtls"] = self.mtls.to_json()
        if self.ldap:
            out["ldap"] = self.ldap.to_json()
        if self.openid:
            out["openid"] = self.openid.to_json()
        if self.workload:
            out.setdefault("bearer", {})["oidc"] = [w.to_json() for w in self.workload]
        return out


def parse_auth(r: Reader, tls: bool, client_ca: bool) -> AuthSettings:
    """``http.auth``; ``tls``/``client_ca``: ``http.tls`` (and its ``cacert``) are configured."""
    htpasswd = r.section("htpasswd").string("path")
    bearer = None
    workload: tuple[WorkloadIssuer, ...] = ()
    if (b := r.section("bearer")).present:
        workload = parse_workload(b.objects("oidc"))
    if b.present and (b.has("cert") or b.has("key") or not workload):
        bearer = BearerSettings(realm=b.string("realm"), service=b.string("service") or "shardreg",
                                cert=b.string("cert"), issuer=b.string("issuer"), key=b.string("key"),
                                token_expiry=b.duration("tokenExpiry", 300.0))
        if not bearer.cert and not bearer.key:
            raise ConfigError(f"{b.path}: cert (to verify tokens) or key (built-in token issuer) is required")
        if not bearer.key and not bearer.realm:
            raise b.error("realm", "required with an external token server")
    fail_limit = r.integer("failLimit", 10)
    if fail_limit < 1:
        raise r.error("failLimit", "expected a positive integer")
    secure = r.flag("secureSession", tls)
    settings = AuthSettings(
        htpasswd=htpasswd, bearer=bearer, apikey=r.flag("apikey", False),
        fail_delay=r.duration("failDelay", 0.0), fail_limit=fail_limit,
        session_keys_file=r.string("sessionKeysFile"), session_secret=r.string("sessionSecret"),
        session_timeout=r.duration("sessionTimeout", 12 * 3600.0), secure_session=secure,
        mtls=_parse_mtls(r.section("mtls"), client_ca),
        ldap=parse_ldap(r.section("ldap")), openid=parse_openid(r.section("openid")), workload=workload,
        present=r.present)
    if workload and not b.has("cert") and not b.has("key"):
        b.skip("realm", "service")  # zot's challenge settings; only ID tokens are verified then
    b.finish(zot_only=("upstreamTokenEndpoint", "awsSecretsManager"))
    for name in ("ldap", "openid"):
        if r.peek(name) == {}:
            r.warn(name, "empty, ignored")
    r.finish(zot_only=_ZOT_ONLY)
    return settings


def _parse_mtls(m: Reader, client_ca: bool) -> MtlsSettings | None:
    """Client certificates are identities only with ``http.tls.cacert``."""
    if not client_ca:
        m.skip(*_MTLS_KEYS)
        m.finish()
        if m.present:
            m.warn("", "no effect without http.tls.cacert (client certificates)")
        return None
    names = m.strings("identityAttributes") or ("CommonName",)
    unknown = [n for n in names if n.lower() not in MTLS_ATTRIBUTES]
    if unknown:
        raise m.error("identityAttributes", f"unknown {unknown} (use CommonName, Subject, Email, URI, DNSName)")
    pattern = m.string("uriSanPattern")
    compiled = None
    if pattern:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise m.error("uriSanPattern", f"invalid regular expression ({exc})") from None
        if compiled.groups < 1:
            raise m.error("uriSanPattern", "needs a capture group (the identity)")
    indexes = {}
    for key in _MTLS_INDEXES:
        indexes[key] = m.integer(key, 0)
        if indexes[key] < 0:
            raise m.error(key, "expected a non-negative integer")
    m.finish()
    return MtlsSettings(attributes=tuple(dict.fromkeys(MTLS_ATTRIBUTES[n.lower()] for n in names)),
                        uri_pattern=compiled, uri_index=indexes["uriSanIndex"],
                        dns_index=indexes["dnsSanIndex"], email_index=indexes["emailSanIndex"])
