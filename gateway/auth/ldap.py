"""Passwords checked against an LDAP directory (``http.auth.ldap``), never blocking the event loop.

A login searches the user with the service account (``bindDN``; anonymous without one) under
``baseDN`` with ``(&(<userAttribute>=<name>)<userFilter>)``, then binds as the entry found with
the presented password. The values of ``userGroupAttribute`` (``memberOf``: group DNs) become the
user's groups, each both as the full DN and as its short name (the first RDN's value), so
accessControl may name ``developers`` or ``cn=developers,ou=Groups,dc=example,dc=org``.

Bounded everywhere:

* ldap3 (synchronous) runs in a pool of ``poolSize`` threads, each LDAP operation with
  ``timeout``; the caller waits at most :data:`WAIT_FACTOR` × ``timeout`` in all;
* bound service connections are kept (at most ``poolSize``) and reused; the user bind happens
  on one of them, which is then bound back to the service account (or dropped on any error);
* a server that cannot be reached, or does not answer in time, raises :class:`LdapUnavailable`
  (503, reason logged) — and for :data:`BACKOFF` seconds after that every call fails at once,
  so a dead server costs each request nothing; htpasswd users are never sent to LDAP;
* a successful login is remembered for ``cacheTime`` under an HMAC of the password (per-process
  random key): a CI job pushing many layers binds once. Failures are never remembered;
* :meth:`LdapDirectory.user_groups` (for sessions, API keys and tokens of LDAP users) searches
  the user again once their entry is older than ``cacheTime``: a user deleted or disabled (no
  longer matching ``userFilter``) loses every credential within that time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import logging
import math
import secrets
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn

from common.config.identity import LdapSettings, read_credentials
from gateway.auth.external import LdapUnavailable

log = logging.getLogger("shardreg.auth")

#: After a failure to reach the server, calls fail at once for this many seconds.
BACKOFF = 2.0
#: A caller waits at most this many LDAP timeouts (queueing included).
WAIT_FACTOR = 3
#: Most calls waiting for a pool thread before new ones are refused (503).
MAX_WAITING = 256


@dataclass
class _Entry:
    groups: frozenset[str]
    checked: float
    #: HMAC of the password last verified (None: the entry only records that the user exists).
    digest: bytes | None = None
    verified: float = 0.0


def group_names(values: list[str]) -> frozenset[str]:
    """Group attribute values → the names policies may use: full DN and short name."""
    names: set[str] = set()
    for value in values:
        if not value:
            continue
        names.add(value)
        try:
            rdn = parse_dn(value)
        except ldap_errors.LDAPInvalidDnError:
            continue
        if rdn:
            names.add(_unescape(rdn[0][1]))
    return frozenset(names)


def _unescape(value: str) -> str:
    """An RDN value as written in a DN (``a\\,b``, ``a\\2Cb``, UTF-8 as ``\\C3\\A9``) → the value."""
    out, i = bytearray(), 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            pair = value[i + 1:i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                out += bytes.fromhex(pair)
                i += 3
                continue
            out += value[i + 1].encode()
            i += 2
            continue
        out += value[i].encode()
        i += 1
    return out.decode("utf-8", "replace")


class LdapDirectory:
    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        bind_dn, bind_password = settings.bind_dn, settings.bind_password
        if settings.credentials_file:
            creds = read_credentials(settings.credentials_file, ("bindDN", "bindPassword"), "http.auth.ldap")
            bind_dn, bind_password = creds["bindDN"] or bind_dn, creds["bindPassword"] or bind_password
        self._bind = (bind_dn or None, bind_password or None)
        tls = ldap3.Tls(validate=ssl.CERT_NONE if settings.skip_verify else ssl.CERT_REQUIRED,
                        ca_certs_file=settings.ca_cert, version=ssl.PROTOCOL_TLS_CLIENT)
        self._server = ldap3.Server(settings.address, port=settings.port, use_ssl=settings.use_ssl, tls=tls,
                                    connect_timeout=settings.timeout, get_info=ldap3.NONE)
        self._idle: list[ldap3.Connection] = []
        self._lock = threading.Lock()
        self._threads = concurrent.futures.ThreadPoolExecutor(settings.pool_size, thread_name_prefix="ldap")
        self._key = secrets.token_bytes(32)
        self._entries: dict[str, _Entry] = {}
        self._down_until = 0.0
        self._down_reason = ""
        self._waiting = 0

    # -- the async face --------------------------------------------------------------------------
    async def authenticate(self, user: str, password: str) -> frozenset[str] | None:
        """The user's groups if ``password`` is theirs, None if not; raises :class:`LdapUnavailable`."""
        if not user or not password:  # an empty password would be an unauthenticated bind
            return None
        digest = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        entry = self._entries.get(user)
        now = time.monotonic()
        if (entry is not None and entry.digest is not None and now - entry.verified < self.settings.cache_time
                and hmac.compare_digest(entry.digest, digest)):
            return entry.groups
        groups = await self._run(self._login, user, password)
        if groups is None:
            return None
        self._entries[user] = _Entry(groups=groups, checked=now, digest=digest, verified=now)
        self._trim()
        return groups

    async def user_groups(self, user: str) -> frozenset[str] | None:
        """The groups of ``user`` if they still exist (and match ``userFilter``), else None."""
        entry = self._entries.get(user)
        now = time.monotonic()
        if entry is not None and now - entry.checked < self.settings.cache_time:
            return entry.groups
        found = await self._run(self._lookup, user)
        if found is None:
            self._entries.pop(user, None)
            return None
        if entry is not None:
            entry.groups, entry.checked = found[1], now
        else:
            self._entries[user] = _Entry(groups=found[1], checked=now)
            self._trim()
        return found[1]

    def forget(self) -> None:
        """Drop every remembered login and user (tests, and an operator's reload)."""
        self._entries.clear()

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            self._unbind(conn)

    def _trim(self) -> None:
        if len(self._entries) > 10000:  # bounded: forget the oldest half
            for user, _ in sorted(self._entries.items(), key=lambda kv: kv[1].checked)[:5000]:
                self._entries.pop(user, None)

    async def _run(self, fn: Any, *args: Any) -> Any:
        now = time.monotonic()
        if now < self._down_until:
            raise LdapUnavailable(self._down_reason)
        if self._waiting >= MAX_WAITING:
            raise LdapUnavailable("too many LDAP requests waiting")
        self._waiting += 1
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._threads, fn, *args)
            return await asyncio.wait_for(future, self.settings.timeout * WAIT_FACTOR)
        except TimeoutError:
            raise self._down("no answer in time") from None
        except (ldap_errors.LDAPCommunicationError, ldap_errors.LDAPSocketOpenError,
                ldap_errors.LDAPSocketReceiveError, ldap_errors.LDAPSessionTerminatedByServerError,
                ldap_errors.LDAPStartTLSError, ldap_errors.LDAPSSLConfigurationError, OSError) as exc:
            raise self._down(f"{type(exc).__name__}: {exc}") from None
        except ldap_errors.LDAPBindError as exc:  # the service account itself was refused
            raise self._down(f"service bind refused: {exc}") from None
        except Exception as exc:  # whatever else ldap3 raises: logged, and a 503 rather than a 500
            raise self._down(f"{type(exc).__name__}: {exc}") from None
        finally:
            self._waiting -= 1

    def _down(self, reason: str) -> LdapUnavailable:
        reason = f"LDAP server {self.settings.address}:{self.settings.port}: {reason}"
        log.error("%s", reason)
        self._down_until = time.monotonic() + BACKOFF
        self._down_reason = reason
        return LdapUnavailable(reason)

    # -- in the pool threads ---------------------------------------------------------------------
    def _connection(self, fresh: bool = False) -> tuple[ldap3.Connection, bool]:
        """A bound service connection: (connection, whether it was reused from the pool)."""
        with self._lock:
            if self._idle and not fresh:
                return self._idle.pop(), True
        s = self.settings
        conn = ldap3.Connection(self._server, user=self._bind[0], password=self._bind[1],
                                receive_timeout=max(1, math.ceil(s.timeout)), raise_exceptions=True, read_only=True,
                                client_strategy=ldap3.SYNC, auto_referrals=False)
        conn.open()
        if s.insecure and s.start_tls:
            conn.start_tls()
        conn.bind()
        return conn, False

    def _release(self, conn: ldap3.Connection) -> None:
        with self._lock:
            if len(self._idle) < self.settings.pool_size:
                self._idle.append(conn)
                return
        self._unbind(conn)

    @staticmethod
    def _unbind(conn: ldap3.Connection) -> None:
        try:
            conn.unbind()
        except Exception:  # closing a broken connection: nothing to do
            pass

    def _search(self, conn: ldap3.Connection, user: str) -> tuple[str, frozenset[str]] | None:
        s = self.settings
        flt = f"({s.user_attribute}={escape_filter_chars(user)})"
        if s.user_filter:
            flt = f"(&{flt}{s.user_filter})"
        attrs = [s.user_group_attribute] if s.user_group_attribute else []
        conn.search(s.base_dn, flt, search_scope=ldap3.SUBTREE if s.subtree_search else ldap3.LEVEL,
                    attributes=attrs, size_limit=2, time_limit=max(1, int(s.timeout)))
        entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        if len(entries) != 1:
            if len(entries) > 1:
                log.warning("LDAP: more than one entry for user %r, refused", user[:64])
            return None
        raw = entries[0].get("attributes", {}).get(s.user_group_attribute, []) if attrs else []
        values = [raw] if isinstance(raw, str) else [str(v) for v in raw]
        return entries[0]["dn"], group_names(values)

    def _with_connection(self, fn: Any, fresh: bool = False) -> Any:
        conn, reused = self._connection(fresh)
        started = time.monotonic()
        try:
            result = fn(conn)
        except (ldap_errors.LDAPNoSuchObjectResult, ldap_errors.LDAPSizeLimitExceededResult):
            self._release(conn)  # no base DN, or more than one entry: no such user
            return None
        except (ldap_errors.LDAPCommunicationError, ldap_errors.LDAPSessionTerminatedByServerError):
            self._unbind(conn)
            if not reused or time.monotonic() - started > self.settings.timeout / 2:
                raise  # a fresh connection failed, or the server is slow: no second wait
            log.info("LDAP: a pooled connection was closed by the server, reconnecting")
            return self._with_connection(fn, fresh=True)
        except BaseException:
            self._unbind(conn)
            raise
        self._release(conn)
        return result

    def _lookup(self, user: str) -> tuple[str, frozenset[str]] | None:
        return self._with_connection(lambda conn: self._search(conn, user))

    def _login(self, user: str, password: str) -> frozenset[str] | None:
        def run(conn: ldap3.Connection) -> frozenset[str] | None:
            found = self._search(conn, user)
            if found is None:
                return None
            dn, groups = found
            try:
                conn.rebind(user=dn, password=password)
            except (ldap_errors.LDAPBindError, ldap_errors.LDAPInvalidCredentialsResult,
                    ldap_errors.LDAPUnwillingToPerformResult, ldap_errors.LDAPInappropriateAuthenticationResult):
                ok = False
            else:
                ok = True
            conn.rebind(user=self._bind[0], password=self._bind[1])  # back to the service account
            return groups if ok else None
        result: frozenset[str] | None = self._with_connection(run)
        return result
