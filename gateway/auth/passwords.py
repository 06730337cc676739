"""The one check every presented password goes through.

Basic auth on any route, ``/zot/auth/login``, ``GET``/``POST /auth/token`` and an API key given
as the password all call :meth:`PasswordCheck.verify`, so each of them:

* is refused with 429 once the client has failed ``failLimit`` times in the last minute, or the
  user name :data:`USER_FACTOR` × ``failLimit`` times from all clients together (per gateway
  worker): guessing many users' passwords from one address and one user's from many addresses
  are both bounded, while an attacker failing on purpose from one address does not lock the
  user out of their other clients;
* spends the same bcrypt time whether the user exists or not (:mod:`gateway.auth.htpasswd`
  checks unknown users against a dummy hash);
* on failure is counted (per client and per user), logged (client and user name, never the
  secret) and answered only after ``failDelay``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from common.config import AuthSettings
from common.errors import ErrorCode, RegistryError
from gateway.auth.apikeys import PREFIX as APIKEY_PREFIX
from gateway.auth.apikeys import ApiKeys
from gateway.auth.external import LdapUnavailable
from gateway.auth.htpasswd import HtpasswdFile
from gateway.auth.identity import Identity
from gateway.auth.ratelimit import FailedLogins

if TYPE_CHECKING:
    from gateway.auth.ldap import LdapDirectory

log = logging.getLogger("shardreg.auth")

#: A user name is blocked after this many times ``failLimit`` failures a minute (all clients).
USER_FACTOR = 10
#: Longest user name looked at (longer ones fail without a lookup, still counted and delayed).
MAX_USER = 256


class PasswordCheck:
    def __init__(self, settings: AuthSettings, htpasswd: HtpasswdFile | None, apikeys: ApiKeys | None,
                 groups_of: Callable[[str], frozenset[str]], ldap: LdapDirectory | None = None,
                 workload: Callable[[str], Awaitable[Identity | None]] | None = None,
                 workload_owns: Callable[[str], bool] | None = None) -> None:
        self.settings = settings
        self.ldap = ldap
        #: An OIDC ID token given as the password (docker/podman ``--password <id token>``).
        self.workload = workload
        self.workload_owns = workload_owns
        self.htpasswd = htpasswd
        self.apikeys = apikeys
        self.groups_of = groups_of
        self.clients = FailedLogins(settings.fail_limit)
        self.users = FailedLogins(settings.fail_limit * USER_FACTOR)

    def blocked(self, client: str | None, user: str) -> bool:
        return self.clients.blocked(client) or bool(user) and self.users.blocked(user[:MAX_USER])

    async def verify(self, user: str, password: str, client: str | None, *, allow_keys: bool = True,
                     how: str = "basic") -> Identity | None:
        """The identity ``user``/``password`` prove, or None after the failure is counted and delayed.

        Raises 429 ``TOOMANYREQUESTS`` when the client or the user is blocked. ``how`` names the
        way the password came (for the log).
        """
        if self.blocked(client, user):
            log.info("login refused: too many failures (%s from %s, user %r)", how, client or "-", user[:64])
            raise RegistryError(ErrorCode.TOOMANYREQUESTS, "too many failed logins, retry later",
                                headers={"Retry-After": "60"})
        identity = await self._check(user, password, allow_keys) if user and len(user) <= MAX_USER else None
        if identity is None:
            await self.failed(user, client, how)
        return identity

    async def failed(self, user: str, client: str | None, how: str) -> None:
        """Count, log and delay a failed login."""
        self.clients.failed(client)
        if user:
            self.users.failed(user[:MAX_USER])
        log.info("failed login (%s) from %s (user %r)", how, client or "-", user[:64])
        if self.settings.fail_delay:
            await asyncio.sleep(self.settings.fail_delay)

    async def _check(self, user: str, password: str, allow_keys: bool) -> Identity | None:
        if allow_keys and self.apikeys is not None and password.startswith(APIKEY_PREFIX):
            record = await self.apikeys.verify(user, password)
            if record is None:
                return None
            scopes = record.get("scopes")
            kept = frozenset(str(g) for g in record.get("groups") or ())
            return Identity(name=user, groups=self.groups_of(user) | kept, via="apikey",
                            scopes=tuple(scopes) if scopes else None, key_id=record["uuid"],
                            origin=record.get("origin") or "htpasswd")
        if self.workload is not None and self.workload_owns is not None and self.workload_owns(password):
            return await self.workload(password)
        if self.htpasswd is not None:
            if await self.htpasswd.verify(user, password):
                return Identity(name=user, groups=self.groups_of(user), via="htpasswd", origin="htpasswd")
            if self.htpasswd.has_user(user):  # htpasswd users never depend on the LDAP server
                return None
        if self.ldap is not None:
            try:
                ldap_groups = await self.ldap.authenticate(user, password)
            except LdapUnavailable:
                raise RegistryError(ErrorCode.UNAVAILABLE, "the LDAP server is unavailable, retry later",
                                    headers={"Retry-After": "5"}) from None
            if ldap_groups is not None:
                return Identity(name=user, groups=self.groups_of(user) | ldap_groups, via="ldap", origin="ldap")
        return None
