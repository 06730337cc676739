"""External identities in ``http.auth``: ``ldap``, ``openid`` (login) and ``bearer.oidc`` (workload).

zot's keys, accepted unchanged::

    ldap     address, port, insecure, startTLS, skipVerify, caCert, baseDN, userAttribute,
             userFilter, userGroupAttribute, subtreeSearch, credentialsFile ({bindDN, bindPassword})
             shardreg also reads: cacheTime (successful logins and user checks are trusted this
             long, default 60s), timeout (per LDAP operation, default 5s), poolSize (default 4)
    openid   callbackAllowOrigins, providers: {oidc|github|gitlab|google|<name>: {name, issuer,
             clientid, clientsecret, credentialsFile, scopes, keypath, authurl, tokenurl,
             claimMapping: {username, groups}}}
    bearer.oidc[]  issuer, audiences, claimMapping {username, groups, validations, variables},
                   certificateAuthority (PEM), certificateAuthorityFile, skipIssuerVerification

As in zot, LDAP without ``insecure`` is LDAPS; with ``insecure`` it is plain LDAP, upgraded by
StartTLS when ``startTLS`` is true. Bind and client credentials come inline or from ``credentialsFile``,
and the gateway reads the credential files at start (:func:`read_credentials`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.config.reader import ConfigError, Reader

#: Providers zot knows; any other key needs an ``issuer`` and is treated as ``oidc``.
KNOWN_PROVIDERS = ("oidc", "github", "gitlab", "google")
DEFAULT_ISSUERS = {"google": "https://accounts.google.com", "gitlab": "https://gitlab.com"}
DEFAULT_WORKLOAD_USERNAME = "claims.iss + '/' + claims.sub"


@dataclass(frozen=True)
class LdapSettings:
    address: str
    port: int
    base_dn: str
    insecure: bool = False
    start_tls: bool = False
    skip_verify: bool = False
    ca_cert: str | None = None
    user_attribute: str = "uid"
    user_filter: str = ""
    user_group_attribute: str = ""
    subtree_search: bool = False
    credentials_file: str | None = None
    bind_dn: str = field(default="", repr=False)
    bind_password: str = field(default="", repr=False)
    cache_time: float = 60.0
    timeout: float = 5.0
    pool_size: int = 4

    @property
    def use_ssl(self) -> bool:
        """LDAPS (zot: everything but ``insecure``)."""
        return not self.insecure

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "address": self.address, "port": self.port, "insecure": self.insecure, "startTLS": self.start_tls,
            "skipVerify": self.skip_verify, "baseDN": self.base_dn, "userAttribute": self.user_attribute,
            "userFilter": self.user_filter, "userGroupAttribute": self.user_group_attribute,
            "subtreeSearch": self.subtree_search, "cacheTime": self.cache_time, "timeout": self.timeout,
            "poolSize": self.pool_size}
        if self.ca_cert:
            out["caCert"] = self.ca_cert
        if self.credentials_file:
            out["credentialsFile"] = self.credentials_file
        if self.bind_dn or self.bind_password:
            out.update(bindDN=self.bind_dn, bindPassword=self.bind_password)
        return out


@dataclass(frozen=True)
class OpenIDProvider:
    key: str
    #: oidc, github, gitlab or google (how the user's name and groups are found).
    kind: str
    name: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    issuer: str | None = None
    auth_url: str | None = None
    token_url: str | None = None
    scopes: tuple[str, ...] = ()
    keypath: str = ""
    #: ID-token claim holding the user name (zot's default: ``email``) and the groups.
    username_claim: str = "email"
    groups_claim: str = "groups"
    credentials_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "scopes": list(self.scopes),
                               "claimMapping": {"username": self.username_claim, "groups": self.groups_claim}}
        for key, value in (("issuer", self.issuer), ("authurl", self.auth_url), ("tokenurl", self.token_url),
                           ("credentialsFile", self.credentials_file), ("keypath", self.keypath or None)):
            if value:
                out[key] = value
        if self.client_id:
            out["clientid"] = self.client_id
        if self.client_secret:
            out["clientsecret"] = self.client_secret
        return out


@dataclass(frozen=True)
class OpenIDSettings:
    providers: dict[str, OpenIDProvider] = field(default_factory=dict)
    callback_allow_origins: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"callbackAllowOrigins": list(self.callback_allow_origins),
                "providers": {k: p.to_json() for k, p in self.providers.items()}}


@dataclass(frozen=True)
class WorkloadIssuer:
    issuer: str
    audiences: tuple[str, ...]
    username: str = DEFAULT_WORKLOAD_USERNAME
    groups: str = ""
    #: (expression, message) pairs that must all be true.
    validations: tuple[tuple[str, str], ...] = ()
    #: (name, expression) pairs evaluated first, usable as ``vars.<name>``.
    variables: tuple[tuple[str, str], ...] = ()
    certificate_authority: str | None = field(default=None, repr=False)
    certificate_authority_file: str | None = None
    skip_issuer_verification: bool = False

    def to_json(self) -> dict[str, Any]:
        mapping: dict[str, Any] = {"username": self.username}
        if self.groups:
            mapping["groups"] = self.groups
        if self.validations:
            mapping["validations"] = [{"expression": e, "message": m} for e, m in self.validations]
        if self.variables:
            mapping["variables"] = [{"name": n, "expression": e} for n, e in self.variables]
        out: dict[str, Any] = {"issuer": self.issuer, "audiences": list(self.audiences), "claimMapping": mapping}
        if self.certificate_authority_file:
            out["certificateAuthorityFile"] = self.certificate_authority_file
        if self.certificate_authority:
            out["certificateAuthority"] = self.certificate_authority
        if self.skip_issuer_verification:
            out["skipIssuerVerification"] = True
        return out


def read_credentials(path: str, keys: tuple[str, ...], where: str) -> dict[str, str]:
    """A JSON credentials file (read by the gateway at start); keys matched case-insensitively,
    as zot reads them. Raises :class:`ConfigError` naming ``where``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{where}.credentialsFile: cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}.credentialsFile: expected a JSON object")
    lowered = {str(k).lower(): v for k, v in data.items()}
    out = {}
    for key in keys:
        value = lowered.get(key.lower())
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}.credentialsFile: {key} must be a string")
        out[key] = value or ""
    return out


def parse_ldap(r: Reader) -> LdapSettings | None:
    """``http.auth.ldap`` (None when absent)."""
    if not r.present:
        r.finish()
        return None
    address = r.string("address")
    if not address:
        raise r.error("address", "required")
    base_dn = r.string("baseDN")
    if not base_dn:
        raise r.error("baseDN", "required")
    insecure = r.flag("insecure", False)
    port = r.integer("port", 389 if insecure else 636)
    if not 0 < port < 65536:
        raise r.error("port", "expected a TCP port")
    creds_file = r.string("credentialsFile")
    creds = {"bindDN": r.string("bindDN") or "", "bindPassword": r.string("bindPassword") or ""}
    ca_cert = r.string("caCert")
    pool = r.integer("poolSize", 4)
    if not 0 < pool <= 64:
        raise r.error("poolSize", "expected 1..64")
    settings = LdapSettings(
        address=address, port=port, base_dn=base_dn, insecure=insecure, start_tls=r.flag("startTLS", False),
        skip_verify=r.flag("skipVerify", False), ca_cert=ca_cert, user_attribute=r.text("userAttribute", "uid"),
        user_filter=r.text("userFilter", ""), user_group_attribute=r.text("userGroupAttribute", ""),
        subtree_search=r.flag("subtreeSearch", False), credentials_file=creds_file, bind_dn=creds["bindDN"],
        bind_password=creds["bindPassword"], cache_time=r.duration("cacheTime", 60.0),
        timeout=r.duration("timeout", 5.0) or 5.0, pool_size=pool)
    if settings.user_filter and not settings.user_filter.startswith("("):
        raise r.error("userFilter", "expected an LDAP filter in parentheses")
    r.finish()
    return settings


def _ci(r: Reader, *names: str) -> str | None:
    """A string under any of ``names`` (zot's viper matches these keys case-insensitively)."""
    value = None
    for name in names:
        if r.has(name):
            value = r.string(name)
        else:
            r.skip(name)
    return value


def parse_openid(r: Reader) -> OpenIDSettings | None:
    """``http.auth.openid`` (None when absent or without providers)."""
    origins = r.strings("callbackAllowOrigins")
    providers: dict[str, OpenIDProvider] = {}
    for key, p in r.members("providers"):
        providers[key] = _provider(key, p)
    r.finish()
    if not providers:
        return None
    for origin in origins:
        if not origin.startswith(("http://", "https://")) or origin.count("/") != 2:
            raise r.error("callbackAllowOrigins", f"{origin!r} is not an origin (scheme://host[:port])")
    return OpenIDSettings(providers=providers, callback_allow_origins=tuple(o.rstrip("/") for o in origins))


def _provider(key: str, p: Reader) -> OpenIDProvider:
    kind = key if key in KNOWN_PROVIDERS else "oidc"
    creds_file = p.string("credentialsFile")
    client_id = _ci(p, "clientid", "clientId", "clientID", "ClientID") or ""
    client_secret = _ci(p, "clientsecret", "clientSecret", "ClientSecret") or ""
    if not client_id and not creds_file:
        raise p.error("clientid", "required (or credentialsFile)")
    issuer = p.string("issuer") or DEFAULT_ISSUERS.get(kind)
    if kind == "oidc" and not issuer:
        raise p.error("issuer", "required for an OpenID Connect provider")
    mapping = p.section("claimMapping")
    default_user = "email"
    provider = OpenIDProvider(
        key=key, kind=kind, name=p.string("name") or key, client_id=client_id, client_secret=client_secret,
        issuer=issuer.rstrip("/") if issuer and kind != "github" else None,
        auth_url=_ci(p, "authurl", "authUrl", "authURL", "AuthURL"),
        token_url=_ci(p, "tokenurl", "tokenUrl", "tokenURL", "TokenURL"),
        scopes=p.strings("scopes") or (("read:org", "user") if kind == "github" else ("openid", "email")),
        keypath=p.text("keypath", ""), username_claim=mapping.text("username", default_user),
        groups_claim=mapping.text("groups", "groups"), credentials_file=creds_file)
    mapping.finish()
    p.finish()
    if kind != "github" and "openid" not in provider.scopes:
        raise p.error("scopes", "must include \"openid\" (the ID token is what is verified)")
    return provider


def parse_workload(items: list[Reader]) -> tuple[WorkloadIssuer, ...]:
    """``http.auth.bearer.oidc[]``."""
    issuers = []
    for w in items:
        issuer = w.string("issuer")
        if not issuer:
            raise w.error("issuer", "required")
        audiences = w.strings("audiences")
        if not audiences:
            raise w.error("audiences", "at least one audience is required")
        m = w.section("claimMapping")
        validations = tuple((v.text("expression", ""), v.text("message", "claim validation failed"))
                            for v in m.objects("validations"))
        variables = tuple((v.text("name", ""), v.text("expression", "")) for v in m.objects("variables"))
        item = WorkloadIssuer(
            issuer=issuer, audiences=audiences, username=m.text("username", DEFAULT_WORKLOAD_USERNAME),
            groups=m.text("groups", ""), validations=validations, variables=variables,
            certificate_authority=w.string("certificateAuthority"),
            certificate_authority_file=w.string("certificateAuthorityFile"),
            skip_issuer_verification=w.flag("skipIssuerVerification", False))
        m.finish()
        w.finish()
        issuers.append(item)
    return tuple(issuers)


def compile_cel(expr: str, key: str) -> Any:
    """A claimMapping CEL expression, compiled (cel-python); :class:`ConfigError` naming ``key``."""
    import celpy  # here: only configs with bearer.oidc need it

    env = celpy.Environment()
    try:
        return env.program(env.compile(expr))
    except Exception as exc:  # celpy's parse errors have no common public base
        raise ConfigError(f"{key}: invalid CEL expression {expr!r}: {str(exc).splitlines()[0]}") from None


def check_identity_files(ldap: LdapSettings | None, openid: OpenIDSettings | None,
                         workload: tuple[WorkloadIssuer, ...]) -> None:
    """At start: the credentials and CA files exist and parse, the CEL expressions compile."""
    if ldap is not None:
        if ldap.credentials_file:
            read_credentials(ldap.credentials_file, ("bindDN", "bindPassword"), "http.auth.ldap")
        if ldap.ca_cert and not Path(ldap.ca_cert).is_file():
            raise ConfigError(f"http.auth.ldap.caCert: cannot read {ldap.ca_cert}")
    for key, provider in (openid.providers.items() if openid else ()):
        where = f"http.auth.openid.providers.{key}"
        if provider.credentials_file:
            creds = read_credentials(provider.credentials_file, ("clientid", "clientsecret"), where)
            if not creds["clientid"] and not provider.client_id:
                raise ConfigError(f"{where}.credentialsFile: clientid is required")
    for i, item in enumerate(workload):
        where = f"http.auth.bearer.oidc[{i}]"
        if item.certificate_authority_file and not Path(item.certificate_authority_file).is_file():
            raise ConfigError(f"{where}.certificateAuthorityFile: cannot read {item.certificate_authority_file}")
        exprs = [("username", item.username), ("groups", item.groups)]
        exprs += [("validations", e) for e, _ in item.validations] + [("variables", e) for _, e in item.variables]
        for name, expr in exprs:
            if expr:
                compile_cel(expr, f"{where}.claimMapping.{name}")
