"""The gateway ↔ shard wire protocol over ZeroMQ (DEALER → ROUTER).

Request:  ``[request_id, op, msgpack(args), *raw_frames]``
Reply:    ``[request_id, status, msgpack(result), *raw_frames]``

``request_id`` is 8 bytes chosen by the gateway, ``op`` one of :class:`Op`, ``status`` is
``b"ok"`` or ``b"err"`` (then ``result`` is a wire-encoded :class:`RegistryError`). Blob bytes
never travel inside msgpack: they are the trailing raw frames, sent with ``copy=False``.
A *notice* (``common.messages.NOTICES``) is a request the shard never answers: the sender does
not wait, and a refusal is only logged on the shard.

Every op has a request and a reply type (``TypedDict``\\ s in :mod:`common.messages`), tied to
the op by a :class:`Wire` constant there (``messages.MANIFEST_GET``). A ``TypedDict`` is a
plain dict at run time, so typing the wire costs nothing on the hot path; mypy checks every
call site (``ShardClient.call(shard, messages.MANIFEST_GET, {...})``) and every shard handler
(``@handles(messages.MANIFEST_GET)``) against the same two types. The shard checks the
request's required keys before it runs a handler (:meth:`Wire.missing`).

Streams use request/reply credits: a sender keeps at most :data:`WINDOW` chunk requests
unanswered, and the receiver answers each chunk only once it is written. A ZeroMQ ROUTER
drops messages silently at its high-water mark, so the window, not the HWM, bounds memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Generic, TypeVar

import msgpack

OK = b"ok"
ERR = b"err"

#: Size of one blob frame, and the number of frames a stream keeps in flight.
FRAME_SIZE = 1024 * 1024
WINDOW = 16

#: A raw frame as sent (bytes) or received (a zmq.Frame or a memoryview over one).
Frame = Any
Frames = Sequence[Frame]

Req = TypeVar("Req", bound=Mapping[str, Any])
Rep = TypeVar("Rep", bound=Mapping[str, Any])


class Op(StrEnum):
    PING = "ping"
    STATUS = "status"
    # repositories and listings
    CATALOG = "repo.catalog"
    REPO_COUNT = "repo.count"
    TAGS_LIST = "tags.list"
    # manifests
    MANIFEST_GET = "manifest.get"
    MANIFEST_PULLS = "manifest.pulls"  # a notice: never answered
    MANIFEST_PUT = "manifest.put"
    MANIFEST_DELETE = "manifest.delete"
    REFERRERS = "referrers.list"
    # blobs
    BLOB_STAT = "blob.stat"
    BLOB_READ = "blob.read"
    BLOB_DELETE = "blob.delete"
    BLOB_LINK = "blob.link"
    # uploads
    UPLOAD_START = "upload.start"
    UPLOAD_STATUS = "upload.status"
    UPLOAD_BEGIN = "upload.begin"
    UPLOAD_WRITE = "upload.write"
    UPLOAD_END = "upload.end"
    UPLOAD_CHUNK = "upload.chunk"
    UPLOAD_ABORT = "upload.abort"
    UPLOAD_COMMIT = "upload.commit"
    UPLOAD_CANCEL = "upload.cancel"
    # extensions: search metadata, user preferences, image trust, profiling
    SEARCH_IMAGES = "search.images"
    SEARCH_REPOS = "search.repos"
    SEARCH_EXPAND = "search.expand"
    USERPREFS_TOGGLE = "userprefs.toggle"
    TRUST_PUT = "trust.put"
    DEBUG_PROFILE = "debug.profile"
    # per-user records (on the shard of the user name): API keys, sessions, shared secrets
    APIKEY_CREATE = "user.apikey.create"
    APIKEY_LIST = "user.apikey.list"
    APIKEY_DELETE = "user.apikey.delete"
    APIKEY_LOOKUP = "user.apikey.lookup"
    APIKEY_TOUCH = "user.apikey.touch"
    SESSION_CREATE = "user.session.create"
    SESSION_GET = "user.session.get"
    SESSION_DELETE = "user.session.delete"
    SECRET_GET = "user.secret.get"
    USER_PURGE = "user.purge"
    # storage lifecycle (shard/retention.py, shard/events/): a retention pass, the test clock
    RETENTION_RUN = "retention.run"
    CLOCK_SET = "clock.set"
    # sync (issue 13): pull-through and the sync registries' state
    SYNC_MANIFEST = "sync.manifest"
    SYNC_BLOB = "sync.blob"
    SYNC_BLOB_READ = "sync.blob.read"
    SYNC_STATUS = "sync.status"
    # resharding (issue 12): the cluster map, the resize plan and lease (home: shard 0), moves
    CLUSTER_MAP_GET = "cluster.map.get"
    CLUSTER_MAP_PUT = "cluster.map.put"
    CLUSTER_PLAN_GET = "cluster.plan.get"
    CLUSTER_PLAN_BEGIN = "cluster.plan.begin"
    CLUSTER_PLAN_UPDATE = "cluster.plan.update"
    CLUSTER_LEASE = "cluster.lease"
    MOVE_LIST = "move.list"
    MOVE_START = "move.start"
    MOVE_STATE = "move.state"
    MOVE_MANIFESTS = "move.manifests"
    MOVE_BLOB_LINK = "move.blob.link"
    MOVE_BLOB_WRITE = "move.blob.write"
    MOVE_BLOB_COMMIT = "move.blob.commit"
    MOVE_APPLY = "move.apply"
    MOVE_FENCE = "move.fence"
    MOVE_UNFENCE = "move.unfence"
    MOVE_ACTIVATE = "move.activate"
    MOVE_REOPEN = "move.reopen"
    MOVE_SWITCH = "move.switch"
    MOVE_DONE = "move.done"
    TRUST_LIST = "trust.list"
    # sorted search listings from the shards' ordered indexes (issue 17)
    SEARCH_PAGE = "search.page"


class Wire(Generic[Req, Rep]):
    """One op with its request and reply types: what both ends of the wire agree on."""

    __slots__ = ("op", "request", "reply", "required")

    def __init__(self, op: Op, request: type[Req], reply: type[Rep]) -> None:
        self.op = op
        self.request = request
        self.reply = reply
        self.required: frozenset[str] = getattr(request, "__required_keys__", frozenset())

    def __call__(self, args: Req) -> Request[Req, Rep]:
        """This op with its arguments, ready for ``ShardClient.call``."""
        return Request(self, args)

    def missing(self, args: Mapping[str, Any]) -> list[str]:
        """The required request keys ``args`` lacks (empty when it is complete)."""
        return [k for k in self.required if k not in args]

    def __repr__(self) -> str:
        return f"Wire({self.op.value})"


class Request(Generic[Req, Rep]):
    """An op and its arguments (``messages.TAGS_LIST({"repo": ..., "n": ..., "last": ...})``).

    Built by calling the op's :class:`Wire`, so that mypy checks the arguments against the
    op's request type before the client sends them.
    """

    __slots__ = ("wire", "args")

    def __init__(self, wire: Wire[Req, Rep], args: Req) -> None:
        self.wire, self.args = wire, args


class Reply(Generic[Rep]):
    """A shard's answer: the decoded result and the raw frames that followed it."""

    __slots__ = ("result", "frames", "shard")

    def __init__(self, result: Rep, frames: list[Frame], shard: int = -1) -> None:
        self.result, self.frames = result, frames
        #: The shard that answered (after any redirects: where a PATCH or a blob read continues).
        self.shard = shard


#: What a shard handler returns: the reply and the raw frames to send after it.
Answer = tuple[Rep, list[Frame]]


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes | memoryview) -> Any:
    return msgpack.unpackb(data, raw=False)
