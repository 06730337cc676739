"""zot API keys: ``zak_<32 hex>``, stored hashed on the shard that owns the user.

* created by ``POST /zot/auth/apikey`` (see :mod:`gateway.auth.routes`); the key itself is shown
  once and only its SHA-256 is stored (:mod:`shard.userdata`);
* used as the password of Basic auth (``user:zak_...``): looked up by hash on the user's shard
  on every request, never cached — so a deleted key is refused by every worker of every
  gateway as soon as the delete has answered (one shard round trip per request; the cost is
  measured in docs/auth.md, "Revocation");
* ``lastUsed`` is recorded in memory and written in one batch per shard every
  :data:`TOUCH_INTERVAL` seconds (never a write per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
import uuid as uuidlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from common import messages
from gateway.auth.identity import Identity
from gateway.shard_client import ShardClient

log = logging.getLogger("shardreg.auth")

PREFIX = "zak_"
TOUCH_INTERVAL = 2.0
ZERO_TIME = "0001-01-01T00:00:00Z"
_FRACTION_RE = re.compile(r"\.\d+")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def rfc3339(ts: float | None) -> str:
    if not ts:
        return ZERO_TIME
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(value: str) -> float | None:
    """An RFC 3339 time → epoch seconds; zot's zero time and "" → None; raises ValueError."""
    if not value or value.startswith("0001-01-01"):
        return None
    text = value.strip().replace("z", "Z")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Go writes nanoseconds; Python takes at most microseconds.
    text = _FRACTION_RE.sub(lambda m: m.group(0)[:7], text)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError("time zone required")
    return parsed.timestamp()


def public_view(record: dict[str, Any]) -> dict[str, Any]:
    """The key as the zot API shows it (no hash, no key)."""
    expires = record.get("expiresAt")
    return {
        "createdAt": rfc3339(record.get("createdAt")),
        "expirationDate": rfc3339(expires),
        "isExpired": bool(expires and expires <= time.time()),
        "creatorUa": record.get("creatorUa", ""),
        "generatedBy": record.get("generatedBy", "manual"),
        "lastUsed": rfc3339(record.get("lastUsed")),
        "label": record.get("label", ""),
        "scopes": record.get("scopes"),
        "uuid": record["uuid"],
    }


class ApiKeys:
    def __init__(self, client: Callable[[], ShardClient]) -> None:
        self.client = client
        self._touched: dict[tuple[str, str], float] = {}
        self._flusher: asyncio.Task | None = None

    def _shard(self, user: str) -> int:
        return self.client().shard_of(user)

    async def create(self, user: str, label: str, scopes: list[str] | None, expires_at: float | None,
                     user_agent: str, origin: str = "htpasswd", groups: frozenset[str] = frozenset()
                     ) -> dict[str, Any]:
        """``origin``: where ``user`` is known (htpasswd, ldap, openid), checked at each use;
        ``groups``: an OpenID user's groups at creation (kept with the key)."""
        key = PREFIX + uuidlib.uuid4().hex
        record = {"uuid": str(uuidlib.uuid4()), "hash": key_hash(key), "label": label, "scopes": scopes,
                  "createdAt": time.time(), "expiresAt": expires_at, "creatorUa": user_agent[:256],
                  "generatedBy": "manual", "lastUsed": None, "origin": origin}
        if groups:
            record["groups"] = sorted(groups)
        await self.client().call_user(user, messages.APIKEY_CREATE({"user": user, "record": record}))
        return {**public_view(record), "apiKey": key}

    async def list(self, user: str) -> list[dict[str, Any]]:
        reply = await self.client().call_user(user, messages.APIKEY_LIST({"user": user}))
        keys = reply.result["keys"]
        for record in keys:  # show lastUsed not yet flushed by this worker
            pending = self._touched.get((user, record["uuid"]))
            if pending and pending > (record.get("lastUsed") or 0):
                record["lastUsed"] = pending
        return [public_view(r) for r in sorted(keys, key=lambda r: r.get("createdAt") or 0)]

    async def delete(self, user: str, key_id: str) -> bool:
        reply = await self.client().call_user(user, messages.APIKEY_DELETE({"user": user, "uuid": key_id}))
        return bool(reply.result["deleted"])

    async def verify(self, user: str, key: str) -> dict[str, Any] | None:
        """The key's record if ``key`` is a live key of ``user``; None otherwise."""
        if not key.startswith(PREFIX) or len(key) > 100:
            return None
        reply = await self.client().call_user(user, messages.APIKEY_LOOKUP({"hash": key_hash(key), "user": user}))
        record = reply.result["key"]
        if record is None or record["user"] != user:
            return None
        if record.get("expiresAt") and record["expiresAt"] <= time.time():
            return None
        self._touch(user, record["uuid"])
        return record

    # -- lastUsed batching --------------------------------------------------------------------
    def _touch(self, user: str, key_id: str) -> None:
        self._touched[(user, key_id)] = time.time()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._touched:
            await asyncio.sleep(TOUCH_INTERVAL)
            await self.flush()

    async def flush(self) -> None:
        touched, self._touched = self._touched, {}
        by_shard: dict[int, list[list[Any]]] = {}
        for (user, key_id), when in touched.items():
            by_shard.setdefault(self._shard(user), []).append([user, key_id, when])
        for shard, uses in by_shard.items():
            with contextlib.suppress(Exception):
                await self.client().call(shard, messages.APIKEY_TOUCH({"uses": uses}))
                continue
            log.warning("could not record lastUsed of %d API keys on shard %d", len(uses), shard)


def provenance(identity: Identity, groups_of: Callable[[str], frozenset[str]]) -> tuple[str, frozenset[str]]:
    """(origin, groups) to record with a key ``identity`` creates: where the user is known, and an
    OpenID user's groups from the ID token (nothing else can give them again at each use)."""
    assert identity.name is not None
    origin = identity.origin or "htpasswd"
    return origin, identity.groups - groups_of(identity.name) if origin == "openid" else frozenset()
