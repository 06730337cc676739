"""Request and reply types of the per-user ops (API keys, sessions, the session secret, purge).

Split from :mod:`common.messages` (which re-exports them) to keep each module readable.
"""

# No ``from __future__ import annotations``: TypedDict must see NotRequired[...] at run time.
from typing import Any, NotRequired, TypedDict


# -- per-user records -----------------------------------------------------------------------
class UserRequest(TypedDict):
    user: str


class ApikeyCreateRequest(TypedDict):
    user: str
    #: {uuid, hash, label, scopes, createdAt, expiresAt, creatorUa, generatedBy, lastUsed}
    record: dict[str, Any]


class UuidReply(TypedDict):
    uuid: str


class ApikeyListReply(TypedDict):
    keys: list[dict[str, Any]]


class ApikeyDeleteRequest(TypedDict):
    user: str
    uuid: str


class DeletedReply(TypedDict):
    deleted: bool


class ApikeyLookupRequest(TypedDict):
    #: SHA-256 (hex) of the presented key.
    hash: str
    user: NotRequired[str]  # the user it is presented for: routes the request (issue 12)


class ApikeyLookupReply(TypedDict):
    #: The key's record without its hash, plus ``user``; None when unknown.
    key: dict[str, Any] | None


class ApikeyTouchRequest(TypedDict):
    #: [[user, uuid, timestamp], ...]
    uses: list[list[Any]]


class ApikeyTouchReply(TypedDict):
    updated: int


class SessionCreateRequest(TypedDict):
    user: str
    sid: str
    expires: float


class SessionRequest(TypedDict):
    sid: str
    user: NotRequired[str]  # the session's user: routes the request (issue 12)


class SidReply(TypedDict):
    sid: str


class SessionGetReply(TypedDict):
    #: {user, created, expires}, or None when unknown or expired.
    session: dict[str, Any] | None


class UserPurgeReply(TypedDict):
    #: API keys and sessions deleted.
    keys: int
    sessions: int


class SecretGetRequest(TypedDict):
    name: str


class SecretGetReply(TypedDict):
    secret: bytes
