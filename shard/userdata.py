"""Per-user records a shard keeps for the gateways: API keys, sessions and shared secrets.

A user's records live on the shard the ring picks for the *user name*
(``common.ring.shard_for(user, shards)``), so every gateway finds them in one hop. Shared
secrets (the session signing key when the config names none) live on shard 0.

Everything is stored as MetaStore system records (``system_get``/``system_put``) whose names
start with ``userdata/``; this module owns those names::

    userdata/apikey/<user>\\0<uuid>    -> {uuid, hash, label, scopes, createdAt, expiresAt, creatorUa,
                                          generatedBy, lastUsed}
    userdata/apikeyhash/<sha256 hex>  -> {user, uuid}       lookup of a presented key
    userdata/session/<sha256 hex of sid> -> {user, created, expires}
    userdata/sessionof/<user>\0<sha256 hex of sid> -> 1   which sessions a user has (for a move)
    userdata/secret/<name>            -> 32 random bytes

``user.purge`` deletes a user's keys and sessions when a gateway sees them leave htpasswd.

API keys and session ids are stored as their SHA-256, never themselves (both carry at least 128
random bits, so a slow hash adds nothing): a copy of ``data.mdb`` logs nobody in.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping
from typing import Any

from common import messages as m
from common.errors import ErrorCode, RegistryError
from common.protocol import Answer, Frames
from shard.lmdbstore import Txn
from shard.metastore import MetaStore
from shard.ops.registry import handles

_APIKEY = b"userdata/apikey/"
_APIKEY_HASH = b"userdata/apikeyhash/"
_SESSION = b"userdata/session/"
_SECRET = b"userdata/secret/"
_SESSION_OF = b"userdata/sessionof/"
#: At most this many API keys per user (a runaway script must not fill the shard).
MAX_KEYS_PER_USER = 1000


def _text(args: Mapping[str, Any], name: str, limit: int = 512) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"{name} missing or invalid", status=400)
    return value


def _session_key(sid: str) -> bytes:
    return _SESSION + hashlib.sha256(sid.encode()).hexdigest().encode()


def _key_prefix(user: str) -> bytes:
    return _APIKEY + user.encode() + b"\0"


def _session_of(user: str, session_key: bytes = b"") -> bytes:
    return _SESSION_OF + user.encode() + b"\0" + session_key[len(_SESSION):]


def user_present(meta: MetaStore, txn: Txn, user: str) -> bool:
    """Whether this shard holds any record of ``user`` (an API key or a session)."""
    for prefix in (_key_prefix(user), _session_of(user)):
        for _ in meta.system_names(txn, prefix):
            return True
    return False


def user_names(meta: MetaStore, txn: Txn) -> list[str]:
    """Every user with a record on this shard."""
    names: set[str] = set()
    for prefix in (_APIKEY, _SESSION_OF):
        for k in meta.system_names(txn, prefix):
            names.add(bytes(k)[len(prefix):].split(b"\0", 1)[0].decode())
    return sorted(names)


def index_sessions(meta: MetaStore, txn: Txn) -> int:
    """Build the ``sessionof`` index for sessions stored before it existed (once, when a resize
    begins); returns how many were added."""
    added = 0
    for k in list(meta.system_names(txn, _SESSION)):
        record = meta.system_get(txn, k)
        if isinstance(record, dict) and isinstance(record.get("user"), str):
            index = _session_of(record["user"], bytes(k))
            if meta.system_get(txn, index) is None:
                meta.system_put(txn, index, 1)
                added += 1
    return added


def user_records(meta: MetaStore, txn: Txn, user: str) -> dict[str, Any]:
    """Every record of ``user`` (API keys with their hash index, sessions, the index), by record
    name (latin-1 text): what moves with the user."""
    out: dict[str, Any] = {}
    for k in list(meta.system_names(txn, _key_prefix(user))):
        record = meta.system_get(txn, k)
        out[bytes(k).decode("latin-1")] = record
        if isinstance(record, dict) and isinstance(record.get("hash"), str):
            hk = _APIKEY_HASH + record["hash"].encode()
            out[hk.decode("latin-1")] = meta.system_get(txn, hk)
    for k in list(meta.system_names(txn, _session_of(user))):
        session = _SESSION + bytes(k)[len(_session_of(user)):]
        record = meta.system_get(txn, session)
        if record is not None:
            out[bytes(k).decode("latin-1")] = 1
            out[session.decode("latin-1")] = record
    return out


def put_user_records(meta: MetaStore, txn: Txn, user: str, records: dict[str, Any]) -> None:
    """Make ``user``'s records here exactly ``records`` (the source's, at the fence)."""
    for name in set(user_records(meta, txn, user)) - set(records):
        meta.system_delete(txn, name.encode("latin-1"))
    for name, record in records.items():
        if not name.encode("latin-1").startswith(b"userdata/"):
            raise RegistryError(ErrorCode.BAD_REQUEST, "not a user record")
        meta.system_put(txn, name.encode("latin-1"), record)


def delete_user_records(meta: MetaStore, txn: Txn, user: str) -> int:
    records = user_records(meta, txn, user)
    for name in records:
        meta.system_delete(txn, name.encode("latin-1"))
    return len(records)


class UserData:
    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta

    # -- API keys -------------------------------------------------------------------------
    @handles(m.APIKEY_CREATE)
    async def op_apikey_create(self, args: m.ApikeyCreateRequest, frames: Frames) -> Answer[m.UuidReply]:
        user, record = _text(args, "user"), args.get("record")
        if not isinstance(record, dict):
            raise RegistryError(ErrorCode.BAD_REQUEST, "record missing", status=400)
        uuid, digest = _text(record, "uuid", 64), _text(record, "hash", 128)

        def run(txn: Txn) -> m.UuidReply:
            prefix = _key_prefix(user)
            if sum(1 for _ in self.meta.system_names(txn, prefix)) >= MAX_KEYS_PER_USER:
                raise RegistryError(ErrorCode.DENIED, f"at most {MAX_KEYS_PER_USER} API keys per user")
            self.meta.system_put(txn, prefix + uuid.encode(), record)
            self.meta.system_put(txn, _APIKEY_HASH + digest.encode(), {"user": user, "uuid": uuid})
            return {"uuid": uuid}

        return self.meta.write(run), []

    @handles(m.APIKEY_LIST)
    async def op_apikey_list(self, args: m.UserRequest, frames: Frames) -> Answer[m.ApikeyListReply]:
        prefix = _key_prefix(_text(args, "user"))

        def run(txn: Txn) -> list[Any]:
            return [self.meta.system_get(txn, k) for k in self.meta.system_names(txn, prefix)]

        return {"keys": self.meta.read(run)}, []

    @handles(m.APIKEY_DELETE)
    async def op_apikey_delete(self, args: m.ApikeyDeleteRequest, frames: Frames) -> Answer[m.DeletedReply]:
        user, uuid = _text(args, "user"), _text(args, "uuid", 64)

        def run(txn: Txn) -> bool:
            k = _key_prefix(user) + uuid.encode()
            record = self.meta.system_get(txn, k)
            if record is None:
                return False
            self.meta.system_delete(txn, k)
            self.meta.system_delete(txn, _APIKEY_HASH + record["hash"].encode())
            return True

        return {"deleted": self.meta.write(run)}, []

    @handles(m.APIKEY_LOOKUP)
    async def op_apikey_lookup(self, args: m.ApikeyLookupRequest, frames: Frames) -> Answer[m.ApikeyLookupReply]:
        digest = _text(args, "hash", 128)

        def run(txn: Txn) -> dict[str, Any] | None:
            ref = self.meta.system_get(txn, _APIKEY_HASH + digest.encode())
            if ref is None:
                return None
            record = self.meta.system_get(txn, _key_prefix(ref["user"]) + ref["uuid"].encode())
            if record is None:
                return None
            return {**{k: v for k, v in record.items() if k != "hash"}, "user": ref["user"]}

        return {"key": self.meta.read(run)}, []

    @handles(m.APIKEY_TOUCH)
    async def op_apikey_touch(self, args: m.ApikeyTouchRequest, frames: Frames) -> Answer[m.ApikeyTouchReply]:
        """Record ``lastUsed`` for a batch of keys: ``uses`` is ``[[user, uuid, timestamp], ...]``."""
        uses = args.get("uses") or []

        def run(txn: Txn) -> int:
            updated = 0
            for user, uuid, when in uses:
                k = _key_prefix(str(user)) + str(uuid).encode()
                record = self.meta.system_get(txn, k)
                if record is not None and when > (record.get("lastUsed") or 0):
                    record["lastUsed"] = float(when)
                    self.meta.system_put(txn, k, record)
                    updated += 1
            return updated

        return {"updated": self.meta.write(run)}, []

    # -- sessions -------------------------------------------------------------------------
    @handles(m.SESSION_CREATE)
    async def op_session_create(self, args: m.SessionCreateRequest, frames: Frames) -> Answer[m.SidReply]:
        user, sid = _text(args, "user"), _text(args, "sid", 128)
        expires = float(args.get("expires") or 0)

        def run(txn: Txn) -> None:
            self.meta.system_put(txn, _session_key(sid),
                          {"user": user, "created": time.time(), "expires": expires})
            self.meta.system_put(txn, _session_of(user, _session_key(sid)), 1)

        self.meta.write(run)
        return {"sid": sid}, []

    @handles(m.SESSION_GET)
    async def op_session_get(self, args: m.SessionRequest, frames: Frames) -> Answer[m.SessionGetReply]:
        sid = _text(args, "sid", 128)
        record = self.meta.read(lambda txn: self.meta.system_get(txn, _session_key(sid)))
        if record is not None and record["expires"] and record["expires"] < time.time():
            self.meta.write(lambda txn: self._delete_session(txn, sid))
            record = None
        return {"session": record}, []

    def _delete_session(self, txn: Txn, sid: str) -> bool:
        record = self.meta.system_get(txn, _session_key(sid))
        if isinstance(record, dict) and isinstance(record.get("user"), str):
            self.meta.system_delete(txn, _session_of(record["user"], _session_key(sid)))
        return self.meta.system_delete(txn, _session_key(sid))

    @handles(m.SESSION_DELETE)
    async def op_session_delete(self, args: m.SessionRequest, frames: Frames) -> Answer[m.DeletedReply]:
        sid = _text(args, "sid", 128)
        deleted = self.meta.write(lambda txn: self._delete_session(txn, sid))
        return {"deleted": bool(deleted)}, []

    # -- removed users ------------------------------------------------------------------------
    @handles(m.USER_PURGE)
    async def op_user_purge(self, args: m.UserRequest, frames: Frames) -> Answer[m.UserPurgeReply]:
        """Delete every API key and session of ``user`` (a gateway saw them leave htpasswd)."""
        user = _text(args, "user")

        def run(txn: Txn) -> tuple[int, int]:
            keys = list(self.meta.system_names(txn, _key_prefix(user)))
            for k in keys:
                record = self.meta.system_get(txn, k)
                if isinstance(record, dict) and isinstance(record.get("hash"), str):
                    self.meta.system_delete(txn, _APIKEY_HASH + record["hash"].encode())
                self.meta.system_delete(txn, k)
            # sessions are keyed by (a form of) the session id: find the user's by their records
            sessions = [k for k in self.meta.system_names(txn, _SESSION)
                        if (self.meta.system_get(txn, k) or {}).get("user") == user]
            for k in sessions:
                self.meta.system_delete(txn, k)
                self.meta.system_delete(txn, _session_of(user, bytes(k)))
            return len(keys), len(sessions)

        keys, sessions = self.meta.write(run)
        return {"keys": keys, "sessions": sessions}, []

    # -- shared secrets ---------------------------------------------------------------------
    @handles(m.SECRET_GET)
    async def op_secret_get(self, args: m.SecretGetRequest, frames: Frames) -> Answer[m.SecretGetReply]:
        """A random secret, created on first request and the same for every gateway afterwards."""
        k = _SECRET + _text(args, "name", 64).encode()

        def run(txn: Txn) -> bytes:
            value: bytes | None = self.meta.system_get(txn, k)
            if value is None:
                value = os.urandom(32)
                self.meta.system_put(txn, k, value)
            return value

        return {"secret": self.meta.write(run)}, []
