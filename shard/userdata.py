"""Per-user records a shard keeps for the gateways: API keys, sessions and shared secrets.

A user's records live on the shard the ring picks for the *user name*
(``common.ring.shard_for(user, shards)``), so every gateway finds them in one hop. Shared
secrets (the session signing key when the config names none) live on shard 0.

Everything is stored in the MetaStore's ``system`` database under the ``userdata/`` prefix::

    userdata/apikey/<user>\\0<uuid>    -> {uuid, hash, label, scopes, createdAt, expiresAt, creatorUa,
                                          generatedBy, lastUsed}
    userdata/apikeyhash/<sha256 hex>  -> {user, uuid}       lookup of a presented key
    userdata/session/<sid>            -> {user, created, expires}
    userdata/secret/<name>            -> 32 random bytes

API keys are stored as the SHA-256 of the key, never the key itself (keys carry 128 random
bits, so a slow hash adds nothing).
"""

from __future__ import annotations

import os
import time
from typing import Any

import lmdb

from common.errors import ErrorCode, RegistryError
from common.protocol import Op
from shard.metastore import MetaStore

Result = tuple[Any, list[Any]]

_APIKEY = b"userdata/apikey/"
_APIKEY_HASH = b"userdata/apikeyhash/"
_SESSION = b"userdata/session/"
_SECRET = b"userdata/secret/"
#: At most this many API keys per user (a runaway script must not fill the shard).
MAX_KEYS_PER_USER = 1000


def _text(args: dict, name: str, limit: int = 512) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"{name} missing or invalid", status=400)
    return value


def _key_prefix(user: str) -> bytes:
    return _APIKEY + user.encode() + b"\0"


class UserData:
    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta

    def handlers(self) -> dict[Op, Any]:
        return {
            Op.APIKEY_CREATE: self.op_apikey_create,
            Op.APIKEY_LIST: self.op_apikey_list,
            Op.APIKEY_DELETE: self.op_apikey_delete,
            Op.APIKEY_LOOKUP: self.op_apikey_lookup,
            Op.APIKEY_TOUCH: self.op_apikey_touch,
            Op.SESSION_CREATE: self.op_session_create,
            Op.SESSION_GET: self.op_session_get,
            Op.SESSION_DELETE: self.op_session_delete,
            Op.SECRET_GET: self.op_secret_get,
        }

    # -- API keys -------------------------------------------------------------------------
    async def op_apikey_create(self, args: dict, frames: list) -> Result:
        user, record = _text(args, "user"), args.get("record")
        if not isinstance(record, dict):
            raise RegistryError(ErrorCode.BAD_REQUEST, "record missing", status=400)
        uuid, digest = _text(record, "uuid", 64), _text(record, "hash", 128)

        def run(txn: lmdb.Transaction) -> dict:
            prefix = _key_prefix(user)
            if sum(1 for _ in self.meta.scan(txn, "system", prefix)) >= MAX_KEYS_PER_USER:
                raise RegistryError(ErrorCode.DENIED, f"at most {MAX_KEYS_PER_USER} API keys per user")
            self.meta.put(txn, "system", prefix + uuid.encode(), record)
            self.meta.put(txn, "system", _APIKEY_HASH + digest.encode(), {"user": user, "uuid": uuid})
            return {"uuid": uuid}

        return self.meta.write(run), []

    async def op_apikey_list(self, args: dict, frames: list) -> Result:
        prefix = _key_prefix(_text(args, "user"))

        def run(txn: lmdb.Transaction) -> list:
            return [self.meta.get(txn, "system", k) for k, _ in self.meta.scan(txn, "system", prefix)]

        return {"keys": self.meta.read(run)}, []

    async def op_apikey_delete(self, args: dict, frames: list) -> Result:
        user, uuid = _text(args, "user"), _text(args, "uuid", 64)

        def run(txn: lmdb.Transaction) -> bool:
            k = _key_prefix(user) + uuid.encode()
            record = self.meta.get(txn, "system", k)
            if record is None:
                return False
            self.meta.delete(txn, "system", k)
            self.meta.delete(txn, "system", _APIKEY_HASH + record["hash"].encode())
            return True

        return {"deleted": self.meta.write(run)}, []

    async def op_apikey_lookup(self, args: dict, frames: list) -> Result:
        digest = _text(args, "hash", 128)

        def run(txn: lmdb.Transaction) -> dict | None:
            ref = self.meta.get(txn, "system", _APIKEY_HASH + digest.encode())
            if ref is None:
                return None
            record = self.meta.get(txn, "system", _key_prefix(ref["user"]) + ref["uuid"].encode())
            if record is None:
                return None
            return {**{k: v for k, v in record.items() if k != "hash"}, "user": ref["user"]}

        return {"key": self.meta.read(run)}, []

    async def op_apikey_touch(self, args: dict, frames: list) -> Result:
        """Record ``lastUsed`` for a batch of keys: ``uses`` is ``[[user, uuid, timestamp], ...]``."""
        uses = args.get("uses") or []

        def run(txn: lmdb.Transaction) -> int:
            updated = 0
            for user, uuid, when in uses:
                k = _key_prefix(str(user)) + str(uuid).encode()
                record = self.meta.get(txn, "system", k)
                if record is not None and when > (record.get("lastUsed") or 0):
                    record["lastUsed"] = float(when)
                    self.meta.put(txn, "system", k, record)
                    updated += 1
            return updated

        return {"updated": self.meta.write(run)}, []

    # -- sessions -------------------------------------------------------------------------
    async def op_session_create(self, args: dict, frames: list) -> Result:
        user, sid = _text(args, "user"), _text(args, "sid", 128)
        expires = float(args.get("expires") or 0)

        def run(txn: lmdb.Transaction) -> None:
            self.meta.put(txn, "system", _SESSION + sid.encode(),
                          {"user": user, "created": time.time(), "expires": expires})

        self.meta.write(run)
        return {"sid": sid}, []

    async def op_session_get(self, args: dict, frames: list) -> Result:
        sid = _text(args, "sid", 128)
        record = self.meta.read(lambda txn: self.meta.get(txn, "system", _SESSION + sid.encode()))
        if record is not None and record["expires"] and record["expires"] < time.time():
            self.meta.write(lambda txn: self.meta.delete(txn, "system", _SESSION + sid.encode()))
            record = None
        return {"session": record}, []

    async def op_session_delete(self, args: dict, frames: list) -> Result:
        sid = _text(args, "sid", 128)
        deleted = self.meta.write(lambda txn: self.meta.delete(txn, "system", _SESSION + sid.encode()))
        return {"deleted": bool(deleted)}, []

    # -- shared secrets ---------------------------------------------------------------------
    async def op_secret_get(self, args: dict, frames: list) -> Result:
        """A random secret, created on first request and the same for every gateway afterwards."""
        k = _SECRET + _text(args, "name", 64).encode()

        def run(txn: lmdb.Transaction) -> bytes:
            value = self.meta.get(txn, "system", k)
            if value is None:
                value = os.urandom(32)
                self.meta.put(txn, "system", k, value)
            return value

        return {"secret": self.meta.write(run)}, []
