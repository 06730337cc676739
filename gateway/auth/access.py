"""Authentication and authorization of every request (both the Quart routes and the upload path).

``AccessControl.authorize(headers, repo, action, client)`` is the single decision point: it
finds out who is calling (:meth:`authenticate`), then whether they may take ``action``
(read, create, update, delete; ``login`` for ``/v2/``, ``catalog`` for ``/v2/_catalog``,
``admin`` for admin-only routes, ``metrics`` for the Prometheus endpoint) on ``repo``. Every
route calls it, and nothing else decides. It returns the caller's :class:`Identity` or raises:

* 401 ``UNAUTHORIZED`` with ``WWW-Authenticate`` (Basic, or Bearer with realm/service/scope when
  token auth is configured) when the caller is anonymous or their credentials are wrong;
* 403 ``DENIED`` when an authenticated caller is not allowed;
* 429 ``TOOMANYREQUESTS`` when a client failed to log in too often, or exceeds ``http.ratelimit``.

Credentials, in the order they are looked at: ``Authorization: Basic`` (htpasswd password, or a
``zak_`` API key as password; :mod:`gateway.auth.passwords` is the one password check),
``Authorization: Bearer`` (a JWT), the ``session`` cookie (refused on a cross-site
state-changing request, :mod:`gateway.auth.csrf`), and last — with ``http.tls.cacert`` — the
verified client certificate of the TLS connection (:mod:`gateway.auth.tls`, named by
:mod:`gateway.auth.mtls`). A credential of a user no longer in htpasswd is refused whatever its
kind (:mod:`gateway.auth.removal`). A token without a subject is anonymous. A credential limited
to some repositories (a scoped API key, any bearer token) is never admin.
``headers`` may be Quart's case-insensitive ``Headers`` or a plain dict with lower-case keys.
With no ``http.auth`` configured every caller is anonymous and allowed, as in zot.

Secrets (passwords, keys, tokens, cookies) are never logged nor put in error bodies.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from quart import has_request_context, request

from common.config import AuthSettings, Config
from common.errors import ErrorCode, RegistryError
from common.grammar import Header
from common.requestid import note_caller
from gateway.auth.apikeys import ApiKeys
from gateway.auth.bearer import PASSWORD_ORIGINS, TokenError, TokenIssuer, TokenVerifier, parse_scope
from gateway.auth.csrf import cross_site
from gateway.auth.external import LdapUnavailable
from gateway.auth.htpasswd import HtpasswdFile
from gateway.auth.identity import ANONYMOUS, HeaderMap, Identity, header
from gateway.auth.mtls import certificate_identity
from gateway.auth.passwords import PasswordCheck
from gateway.auth.policy import ALL_ACTIONS, NONE, PolicyEngine, glob_match
from gateway.auth.ratelimit import RequestRate
from gateway.auth.removal import RemovedUsers
from gateway.auth.sessions import Sessions, cookie_value
from gateway.auth.tls import client_certificate

log = logging.getLogger("shardreg.auth")

#: Registry actions → the Docker scope actions a client asks a token for.
_SCOPE_ACTIONS = {"read": "pull", "create": "pull,push", "update": "pull,push", "delete": "delete"}


def _external(config: Config, groups_of: Callable[[str], frozenset[str]]) -> tuple[Any, Any, Any]:
    """LDAP, workload identity and OpenID login, imported only when configured (their libraries
    would slow every worker's start): (LdapDirectory, WorkloadVerifier, OpenIDLogin) or Nones."""
    s = config.http.auth
    ldap = workload = openid = None
    if s.ldap:
        from gateway.auth.ldap import LdapDirectory
        ldap = LdapDirectory(s.ldap)
    if s.workload:
        from gateway.auth.workload import WorkloadVerifier
        workload = WorkloadVerifier(s.workload, groups_of)
    if s.openid:
        from gateway.auth.oidc_login import OpenIDLogin
        openid = OpenIDLogin(s.openid, config.http.external_url)
    return ldap, workload, openid


class AccessControl:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings: AuthSettings = config.http.auth
        s = self.settings
        self.htpasswd = HtpasswdFile(s.htpasswd) if s.htpasswd else None
        self.verifier = TokenVerifier(s.bearer) if s.bearer else None
        self.issuer = TokenIssuer(s.bearer) if s.bearer and s.bearer.builtin else None
        self.policy = PolicyEngine(config.http.access_control, s.enabled)
        self.rate = RequestRate(config.http.ratelimit.rate, config.http.ratelimit.methods)
        self._client: Callable[[], Any] | None = None
        self.apikeys = ApiKeys(self._shard_client) if s.apikey else None
        self.sessions = Sessions(s, self._shard_client)
        self.ldap, self.workload, self.openid = _external(config, self.policy.groups_of)
        self.passwords = PasswordCheck(s, self.htpasswd, self.apikeys, self.policy.groups_of, self.ldap,
                                       self.workload.password_identity if self.workload else None,
                                       self.workload.owns if self.workload else None)
        self.removed_users = RemovedUsers(self.htpasswd, self._shard_client) if self.htpasswd else None

    def bind(self, client: Callable[[], Any]) -> None:
        """Give access control the worker's shard client (API keys, sessions, tag lookups)."""
        self._client = client

    def _shard_client(self) -> Any:
        if self._client is None:
            raise RegistryError(ErrorCode.UNAVAILABLE, "access control is not connected to the shards")
        return self._client()

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    # -- challenges --------------------------------------------------------------------------
    def token_realm(self, headers: HeaderMap) -> str:
        bearer = self.settings.bearer
        assert bearer is not None
        if bearer.realm:
            return bearer.realm
        if self.config.http.external_url:
            return self.config.http.external_url.rstrip("/") + "/auth/token"
        scheme = "https" if self.config.http.tls else "http"
        host = header(headers, "host") or f"{self.config.http.address}:{self.config.http.port}"
        return f"{scheme}://{host}/auth/token"

    def challenge(self, headers: HeaderMap, repo: str | None = None, action: str | None = None,
                  error: str | None = None) -> dict[str, str]:
        if self.settings.bearer is None:
            return {Header.WWW_AUTHENTICATE: f'Basic realm="{self.config.http.realm}"'}
        parts = [f'realm="{self.token_realm(headers)}"', f'service="{self.settings.bearer.service}"']
        if repo is not None and action in _SCOPE_ACTIONS:
            parts.append(f'scope="repository:{repo}:{_SCOPE_ACTIONS[action]}"')
        elif action == "catalog":
            parts.append('scope="registry:catalog:*"')
        if error:
            parts.append(f'error="{error}"')
        return {Header.WWW_AUTHENTICATE: "Bearer " + ",".join(parts)}

    def unauthorized(self, headers: HeaderMap, repo: str | None, action: str | None,
                     message: str = "authentication required", error: str | None = None) -> RegistryError:
        return RegistryError(ErrorCode.UNAUTHORIZED, message, headers=self.challenge(headers, repo, action, error))

    # -- authentication ------------------------------------------------------------------
    async def authenticate(self, headers: HeaderMap, client: str | None = None, *,
                           repo: str | None = None, action: str | None = None,
                           method: str | None = None) -> Identity:
        """Who is calling; raises 401 for wrong credentials, 429 after too many failures.

        ``method`` (default: the current Quart request's) decides the cross-site cookie check.
        """
        identity = await self._authenticate(headers, client, repo=repo, action=action, method=method)
        note_caller(identity.name, identity.via)  # for the access and audit logs
        return identity

    async def _authenticate(self, headers: HeaderMap, client: str | None = None, *,
                            repo: str | None = None, action: str | None = None,
                            method: str | None = None) -> Identity:
        if not self.enabled:
            return ANONYMOUS
        authorization = header(headers, "authorization")
        if authorization:
            scheme, _, credentials = authorization.strip().partition(" ")
            scheme = scheme.lower()
            if scheme == "basic":
                identity = await self._basic(headers, credentials.strip(), client, repo, action)
            elif scheme == "bearer" and self.workload is not None and (
                    self.verifier is None or self.workload.owns(credentials.strip())):
                identity = await self._workload(headers, credentials.strip(), repo, action)
            elif scheme == "bearer" and self.verifier is not None:
                identity = self._bearer(headers, credentials.strip(), repo, action)
            else:
                raise self.unauthorized(headers, repo, action, "unsupported authorization scheme")
            return await self.still_known(headers, identity, repo, action)
        cookie = cookie_value(header(headers, "cookie"))
        if cookie:
            self.check_csrf(headers, method)
            found = await self.sessions.lookup(cookie)
            if found is None:
                raise self.unauthorized(headers, repo, action, "session expired or invalid")
            user, origin, groups = found
            identity = Identity(name=user, groups=self.policy.groups_of(user) | groups, via="session",
                                origin=origin)
            return await self.still_known(headers, identity, repo, action)
        return self._certificate_identity()

    def check_csrf(self, headers: HeaderMap, method: str | None) -> None:
        """403 for a state-changing request carrying the session cookie from another site."""
        if method is None and has_request_context():
            method = request.method
        scheme = "https" if self.config.http.tls else "http"
        if cross_site(headers, method, scheme=scheme, external_url=self.config.http.external_url):
            raise RegistryError(ErrorCode.DENIED, "cross-site request refused (Origin / Sec-Fetch-Site)")

    async def still_known(self, headers: HeaderMap, identity: Identity, repo: str | None = None,
                          action: str | None = None) -> Identity:
        """Refuse a credential of a user no longer where they came from: htpasswd (then their
        records are purged) or LDAP (re-checked once per ``cacheTime``, groups refreshed)."""
        if identity.name is None:
            return identity
        if identity.origin == "ldap" and identity.via in ("apikey", "session", "bearer"):
            groups = None
            if self.ldap is not None:
                try:
                    groups = await self.ldap.user_groups(identity.name)
                except LdapUnavailable:
                    raise RegistryError(ErrorCode.UNAVAILABLE, "the LDAP server is unavailable, retry later",
                                        headers={"Retry-After": "5"}) from None
            if groups is None:
                raise self.unauthorized(headers, repo, action, "unknown user")
            return replace(identity, groups=identity.groups | groups)
        if self.htpasswd is None:
            return identity
        backed = identity.via == "htpasswd" or identity.via in ("apikey", "session") and identity.origin in (
            None, "htpasswd") or (identity.via == "bearer" and identity.issued_here
                                  and identity.origin in PASSWORD_ORIGINS)
        if not backed or self.htpasswd.has_user(identity.name):
            return identity
        if self.removed_users is not None and self.htpasswd.loaded:
            self.removed_users.removed({identity.name})
        raise self.unauthorized(headers, repo, action, "unknown user")

    def _certificate_identity(self) -> Identity:
        """The verified client certificate's identity (mTLS), else anonymous."""
        mtls = self.settings.mtls
        cert = client_certificate() if mtls is not None else None
        if cert is None or mtls is None:
            return ANONYMOUS
        name = certificate_identity(cert, mtls)
        if not name:
            log.debug("client certificate without a usable identity: anonymous")
            return ANONYMOUS
        return Identity(name=name, groups=self.policy.groups_of(name), via="mtls")

    async def login(self, headers: HeaderMap, client: str | None, *, allow_keys: bool = True,
                    repo: str | None = None, action: str | None = None, how: str = "basic") -> Identity:
        """Basic credentials from ``headers`` → identity; failures are delayed, counted and 401."""
        authorization = header(headers, "authorization") or ""
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            raise self.unauthorized(headers, repo, action)
        identity = await self._basic(headers, credentials.strip(), client, repo, action, allow_keys=allow_keys,
                                     how=how)
        identity = await self.still_known(headers, identity, repo, action)
        note_caller(identity.name, identity.via)
        return identity

    async def _basic(self, headers: HeaderMap, credentials: str, client: str | None, repo: str | None,
                     action: str | None, *, allow_keys: bool = True, how: str = "basic") -> Identity:
        try:
            user, sep, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            user, sep, password = "", "", ""
        if not sep:
            user = ""
        identity = await self.passwords.verify(user, password, client, allow_keys=allow_keys, how=how)
        if identity is None:
            raise self.unauthorized(headers, repo, action, "invalid username or password")
        return identity

    async def _workload(self, headers: HeaderMap, token: str, repo: str | None, action: str | None) -> Identity:
        assert self.workload is not None
        try:
            return await self.workload.identity(token)
        except TokenError as exc:
            raise self.unauthorized(headers, repo, action, str(exc), error="invalid_token") from None

    def _bearer(self, headers: HeaderMap, token: str, repo: str | None, action: str | None) -> Identity:
        assert self.verifier is not None
        try:
            grants = self.verifier.verify(token)
        except TokenError as exc:
            raise self.unauthorized(headers, repo, action, str(exc), error="invalid_token") from None
        # no subject: an anonymous token, worth exactly what anonymous access is worth
        groups = self.policy.groups_of(grants.subject) if grants.subject else NONE
        return Identity(name=grants.subject, groups=groups, via="bearer", scopes=grants.key_scopes,
                        grants=grants.repositories, catalog=grants.catalog, issued_here=grants.issued_here,
                        origin=grants.origin)

    # -- authorization ---------------------------------------------------------------------
    def policy_actions(self, identity: Identity, repo: str) -> frozenset[str]:
        """What the access policy (and an API key's scopes) allow ``identity`` on ``repo``."""
        if identity.scopes is not None and not any(glob_match(s, repo) for s in identity.scopes):
            return NONE
        return self.policy.actions(identity.name or None, identity.groups, repo)

    def actions(self, identity: Identity, repo: str) -> frozenset[str]:
        """Everything ``identity`` may do on ``repo``."""
        if not self.enabled:
            return self.policy.actions(None, NONE, repo) if self.policy.configured else ALL_ACTIONS
        if identity.via == "bearer":
            granted = (identity.grants or {}).get(repo, NONE)
            if identity.issued_here:
                granted &= self.policy_actions(identity, repo)
            return granted
        return self.policy_actions(identity, repo)

    def can_read(self, identity: Identity, repo: str) -> bool:
        """May ``identity`` read ``repo``'s content (tags, manifests, search data, stars)?"""
        return "read" in self.actions(identity, repo)

    def can_list(self, identity: Identity, repo: str) -> bool:
        """Is ``repo``'s name in ``identity``'s catalog? A token's ``registry:catalog:*`` lists
        names (those the policy lets its subject read, for tokens issued here); it grants no read."""
        if identity.via == "bearer" and identity.catalog:
            if not identity.issued_here:
                return True
            return "read" in self.policy_actions(identity, repo)
        return self.can_read(identity, repo)

    def _anonymous_allowed(self) -> bool:
        return not self.enabled or self.policy.anonymous_anywhere()

    def _check_rate(self, client: str | None, method: str | None) -> None:
        if not self.rate.enabled:
            return
        if method is None and has_request_context():
            method = request.method
        if not self.rate.take(client, method):
            raise RegistryError(ErrorCode.TOOMANYREQUESTS, "rate limit exceeded", headers={"Retry-After": "1"})

    async def authorize(self, headers: HeaderMap, repo: str | None, action: str,
                        client: str | None = None, *, method: str | None = None,
                        tags: Iterable[str] | None = None) -> Identity:
        """The decision point: the caller's identity when they may take ``action``, else 401/403/429.

        ``action`` is a repository action (read, create, update, delete; ``repo`` required), or
        ``login`` (``/v2/``, any authenticated caller), ``catalog``, ``admin`` (admin-only routes)
        or ``metrics`` (the Prometheus endpoint). With ``tags`` (a manifest PUT) ``create`` is
        needed, or ``update`` for each named tag that already exists.
        """
        if action != "metrics":  # zot does not rate-limit scrapes
            self._check_rate(client, method)
        identity = await self.authenticate(headers, client, repo=repo, action=action, method=method)
        if action == "login":
            # Anonymous callers always get the challenge when auth is on, even if some repositories
            # are public: clients (docker, skopeo, containers/image) only send credentials after it.
            if identity.anonymous and self.enabled:
                raise self.unauthorized(headers, None, action)
            return identity
        if action == "catalog":
            if identity.anonymous and not self._anonymous_allowed():
                raise self.unauthorized(headers, None, action)
            return identity
        if action == "admin":
            return self._admin(headers, identity)
        if action == "metrics":
            return self._metrics_reader(headers, identity)
        if repo is None:
            raise RegistryError(ErrorCode.DENIED)
        if tags is not None:
            return await self._manifest_put(headers, identity, repo, tags)
        if action in self.actions(identity, repo):
            return identity
        raise self.denied(headers, identity, repo, action)

    def denied(self, headers: HeaderMap, identity: Identity, repo: str, action: str) -> RegistryError:
        if identity.anonymous:
            return self.unauthorized(headers, repo, action)
        if identity.via == "bearer" and not (identity.issued_here and action not in
                                             self.policy_actions(identity, repo)):
            # the token does not cover this: the client should fetch one that does
            return self.unauthorized(headers, repo, action, "token does not grant this access",
                                     error="insufficient_scope")
        return RegistryError(ErrorCode.DENIED, detail={"repository": repo, "action": action})

    @property
    def auth_configured(self) -> bool:
        """``http.auth`` is set, even with no usable method (then admin routes stay closed)."""
        return self.enabled or self.config.http.auth.present

    def _admin(self, headers: HeaderMap, identity: Identity) -> Identity:
        """Admin-only routes: open without auth; else admins (``adminPolicy``) with an
        unscoped credential only (a scoped API key or a token is limited to repositories)."""
        if identity.anonymous and self.enabled:
            raise self.unauthorized(headers, None, "login")
        if not self.auth_configured:
            return identity
        if identity.anonymous:
            raise RegistryError(ErrorCode.UNAUTHORIZED)
        if identity.limited:
            raise RegistryError(ErrorCode.DENIED, "admin routes need an unscoped credential "
                                "(password, session or unscoped API key)")
        if not self.policy.is_admin(identity.name, identity.groups):
            raise RegistryError(ErrorCode.DENIED, "admin privileges are required")
        return identity

    def _metrics_reader(self, headers: HeaderMap, identity: Identity) -> Identity:
        """zot's ``http.accessControl.metrics``: without ``accessControl`` any authenticated
        user; with it the listed ``users``, and anonymous callers given ``read``."""
        if not self.enabled:
            return identity
        control = self.config.http.access_control
        if identity.anonymous:
            if not (control.present and control.metrics.anonymous_read):
                raise self.unauthorized(headers, None, None)
            return identity
        if identity.limited:  # metrics name every repository: not for a repository-scoped credential
            if control.present and control.metrics.anonymous_read:
                return identity
            raise RegistryError(ErrorCode.DENIED, "metrics need an unscoped credential", detail={"resource": "metrics"})
        if not control.present:
            return identity
        if identity.name not in self.config.http.access_control.metrics.users:
            raise RegistryError(ErrorCode.DENIED, detail={"resource": "metrics"})
        return identity

    async def _manifest_put(self, headers: HeaderMap, identity: Identity, repo: str,
                            tags: Iterable[str]) -> Identity:
        """A manifest PUT needs ``create`` or ``update`` (a push by digest only: ``create``).

        Whether each named tag needs ``create`` (new) or ``update`` (exists) is checked by the
        shard in its write transaction (``manifest.put``'s ``may_create``/``may_update``), so no
        push can create the tag between a check here and the write."""
        allowed = self.actions(identity, repo)
        if not allowed & {"create", "update"} or not list(tags) and "create" not in allowed:
            raise self.denied(headers, identity, repo, "create")
        return identity

    def is_admin(self, identity: Identity) -> bool:
        """An admin (``adminPolicy``) with an unscoped credential: may move or delete immutable tags."""
        return (self.enabled and not identity.anonymous and not identity.limited
                and self.policy.is_admin(identity.name, identity.groups))

    # -- the built-in token service -----------------------------------------------------------
    def token_access(self, identity: Identity, scopes: Iterable[str]) -> list[dict[str, Any]]:
        """The ``access`` claim for the requested scopes, narrowed to what ``identity`` may do."""
        access: list[dict[str, Any]] = []
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, wanted = parsed
            if kind == "registry" and name == "catalog":
                if "*" in wanted and (not identity.anonymous or self._anonymous_allowed()):
                    access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
                continue
            if kind != "repository":
                continue
            allowed = self.policy_actions(identity, name)
            granted = []
            for action in wanted:
                if (action == "pull" and "read" in allowed or action == "push" and allowed & {"create", "update"}
                        or action == "delete" and "delete" in allowed or action == "*" and allowed == ALL_ACTIONS):
                    granted.append(action)
            access.append({"type": "repository", "name": name, "actions": granted})
        return access
