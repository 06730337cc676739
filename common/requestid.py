"""The request id: one per HTTP request, in the response (``X-Request-Id``), in every log line the
gateway writes while serving it, and carried to the shard inside the ZeroMQ message id.

The gateway's message id frame is ``REQUEST_KEY_SIZE`` bytes (pid + counter) that the shard
echoes unchanged; the request id rides after them, so the wire format of every op stays as it is
and a shard reads it only when it logs (:func:`from_message_id`).
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar

#: Bytes of the message id the gateway needs to match a reply (4-byte pid + 8-byte counter).
REQUEST_KEY_SIZE = 12
#: A client's own ``X-Request-Id`` is kept when it looks like an id (never logged otherwise).
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

#: The id of the request the current task serves ("" outside a request).
REQUEST_ID: ContextVar[str] = ContextVar("shardreg_request_id", default="")


def new_request_id(offered: str | None = None) -> str:
    """The client's id when it is a sane one, else 16 random hex digits."""
    if offered and _VALID.fullmatch(offered):
        return offered
    return os.urandom(8).hex()


def to_message_id(key: bytes) -> bytes:
    """``key`` (what the gateway matches replies by) with the current request id appended."""
    request_id = REQUEST_ID.get()
    return key + request_id.encode() if request_id else key


def from_message_id(message_id: bytes) -> str:
    """The request id a shard received (empty for requests that came without one)."""
    if len(message_id) <= REQUEST_KEY_SIZE:
        return ""
    return message_id[REQUEST_KEY_SIZE:REQUEST_KEY_SIZE + 64].decode("ascii", "replace")


class Caller:
    """Who made the current request, noted by the access check (``AccessControl.authorize``) for the
    access and audit logs: a name and how it was proven, never a credential."""

    __slots__ = ("user", "via")

    def __init__(self) -> None:
        self.user: str | None = None
        self.via = "anonymous"


#: The current request's :class:`Caller` (shared by the tasks that serve it).
CALLER: ContextVar[Caller | None] = ContextVar("shardreg_caller", default=None)


def note_caller(user: str | None, via: str) -> None:
    caller = CALLER.get()
    if caller is not None:
        caller.user, caller.via = user, via
