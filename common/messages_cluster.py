"""The wire ops of resharding (issue 12): the cluster map, the resize plan and lease, moves.

Re-exported by :mod:`common.messages` (which lists them in ``ALL``); kept apart so that the
core ops stay readable. See docs/architecture.md, "Resharding".
"""

# No ``from __future__ import annotations``: TypedDict must see NotRequired[...] at run time.
from typing import Any, NotRequired, TypedDict

from common.protocol import Op, Wire


class NoArgs(TypedDict):
    pass


class Routed(TypedDict):
    """What ``ShardClient`` adds to every request it sends (no request type declares it).

    The shard checks it before any handler runs (:mod:`shard.routing`)."""

    #: The map version the gateway routed with.
    epoch: NotRequired[int]
    #: "moved" | "ask": an old owner sent the gateway here.
    via: NotRequired[str]


class MapReply(TypedDict):
    """The shard's view of the cluster map (``ClusterMap.to_wire``), None before it has one."""

    index: int
    view: dict[str, Any] | None
    #: Names this shard owns and holds, moving out (not yet switched), switched (out), imported.
    counts: NotRequired[dict[str, int]]


class MapPutRequest(TypedDict):
    view: dict[str, Any]
    token: NotRequired[int]


class PlanReply(TypedDict):
    """The resize plan kept on the home (shard 0); None when no resize ever ran."""

    plan: dict[str, Any] | None
    view: dict[str, Any] | None
    lease: dict[str, Any] | None


class PlanBeginRequest(TypedDict):
    shards: int
    max_mbps: float | None
    id: str


class PlanUpdateRequest(TypedDict):
    token: int
    #: Keys of the plan to change (state, view, error, progress, ...).
    changes: dict[str, Any]


class LeaseRequest(TypedDict):
    holder: str
    ttl: float
    #: Renew a lease held with this token (0: take it if free or expired).
    token: int


class LeaseReply(TypedDict):
    granted: bool
    token: int
    holder: str
    until: float


class MoveRequest(TypedDict):
    """One name's move; ``token`` is the driver's lease token (older ones are refused)."""

    kind: str
    name: str
    token: int
    peer: NotRequired[int]


class MoveListRequest(TypedDict):
    after: str | None
    n: int
    token: int


class MoveListReply(TypedDict):
    #: [[kind, name, state], ...]: names moving out of this shard, not yet switched.
    names: list[list[str]]
    more: bool


class MoveStateReply(TypedDict):
    """A name's state on one side: tags, manifests and links (repositories) or records (users)."""

    present: bool
    state: str
    tags: dict[str, str]
    manifests: list[str]
    links: dict[str, int]
    records: dict[str, Any]
    uploads: int
    #: The repository's search data (pushes, tag times, download counts, stars, bookmarks).
    search: NotRequired[dict[str, dict[str, bytes]]]


class MoveManifestsRequest(TypedDict):
    repo: str
    digests: list[str]
    token: int


class MoveManifestsReply(TypedDict):
    """Followed by one frame per record: the manifest's bytes."""

    records: list[dict[str, Any]]


class MoveBlobRequest(TypedDict):
    repo: str
    digest: str
    token: int
    offset: NotRequired[int]
    size: NotRequired[int]


class MoveBlobReply(TypedDict):
    linked: bool
    offset: int


class MoveApplyRequest(TypedDict):
    """The source's whole mutable state, and the manifests the target lacks (their bytes follow)."""

    kind: str
    name: str
    token: int
    tags: dict[str, str]
    manifests: list[str]
    links: dict[str, int]
    added: list[dict[str, Any]]
    records: dict[str, Any]
    search: NotRequired[dict[str, dict[str, bytes]]]


class MoveFenceRequest(TypedDict):
    kind: str
    name: str
    token: int
    budget: float


class MoveReply(TypedDict):
    state: str


CLUSTER_MAP_GET = Wire(Op.CLUSTER_MAP_GET, NoArgs, MapReply)
CLUSTER_MAP_PUT = Wire(Op.CLUSTER_MAP_PUT, MapPutRequest, MapReply)
CLUSTER_PLAN_GET = Wire(Op.CLUSTER_PLAN_GET, NoArgs, PlanReply)
CLUSTER_PLAN_BEGIN = Wire(Op.CLUSTER_PLAN_BEGIN, PlanBeginRequest, PlanReply)
CLUSTER_PLAN_UPDATE = Wire(Op.CLUSTER_PLAN_UPDATE, PlanUpdateRequest, PlanReply)
CLUSTER_LEASE = Wire(Op.CLUSTER_LEASE, LeaseRequest, LeaseReply)
MOVE_LIST = Wire(Op.MOVE_LIST, MoveListRequest, MoveListReply)
MOVE_START = Wire(Op.MOVE_START, MoveRequest, MoveReply)
MOVE_STATE = Wire(Op.MOVE_STATE, MoveRequest, MoveStateReply)
MOVE_MANIFESTS = Wire(Op.MOVE_MANIFESTS, MoveManifestsRequest, MoveManifestsReply)
MOVE_BLOB_LINK = Wire(Op.MOVE_BLOB_LINK, MoveBlobRequest, MoveBlobReply)
MOVE_BLOB_WRITE = Wire(Op.MOVE_BLOB_WRITE, MoveBlobRequest, MoveBlobReply)
MOVE_BLOB_COMMIT = Wire(Op.MOVE_BLOB_COMMIT, MoveBlobRequest, MoveBlobReply)
MOVE_APPLY = Wire(Op.MOVE_APPLY, MoveApplyRequest, MoveReply)
MOVE_FENCE = Wire(Op.MOVE_FENCE, MoveFenceRequest, MoveReply)
MOVE_UNFENCE = Wire(Op.MOVE_UNFENCE, MoveRequest, MoveReply)
MOVE_ACTIVATE = Wire(Op.MOVE_ACTIVATE, MoveRequest, MoveReply)
MOVE_REOPEN = Wire(Op.MOVE_REOPEN, MoveRequest, MoveReply)
MOVE_SWITCH = Wire(Op.MOVE_SWITCH, MoveRequest, MoveReply)
MOVE_DONE = Wire(Op.MOVE_DONE, MoveRequest, MoveReply)


class TrustListReply(TypedDict):
    """Followed by one frame per entry: the key or certificate, as ``trust.put`` took it."""

    #: [kind, notation trust store type ("" for cosign)], in the frames' order.
    entries: list[list[str]]


#: The trust material a shard holds: the driver copies it to new shards before they are targets.
TRUST_LIST = Wire(Op.TRUST_LIST, NoArgs, TrustListReply)

#: Every resharding op's wire.
WIRES = (
    CLUSTER_MAP_GET, CLUSTER_MAP_PUT, CLUSTER_PLAN_GET, CLUSTER_PLAN_BEGIN, CLUSTER_PLAN_UPDATE, CLUSTER_LEASE,
    MOVE_LIST, MOVE_START, MOVE_STATE, MOVE_MANIFESTS, MOVE_BLOB_LINK, MOVE_BLOB_WRITE, MOVE_BLOB_COMMIT,
    MOVE_APPLY, MOVE_FENCE, MOVE_UNFENCE, MOVE_ACTIVATE, MOVE_REOPEN, MOVE_SWITCH, MOVE_DONE, TRUST_LIST)

#: How a shard decides whether an op is its own (shard.routing): by the repository, by the user,
#: or not at all (fan-outs, which list only what the shard owns; fixed ops; cluster and move ops).
ROUTE_REPO = frozenset({
    Op.TAGS_LIST, Op.MANIFEST_GET, Op.MANIFEST_PUT, Op.MANIFEST_DELETE, Op.REFERRERS, Op.BLOB_STAT,
    Op.BLOB_DELETE, Op.BLOB_LINK, Op.UPLOAD_START, Op.UPLOAD_STATUS, Op.UPLOAD_BEGIN, Op.UPLOAD_WRITE,
    Op.UPLOAD_END, Op.UPLOAD_CHUNK, Op.UPLOAD_ABORT, Op.UPLOAD_COMMIT, Op.UPLOAD_CANCEL, Op.SEARCH_EXPAND, Op.USERPREFS_TOGGLE,
    Op.SYNC_MANIFEST, Op.SYNC_BLOB})  # sync.blob.read follows the shard that answered sync.blob
ROUTE_USER = frozenset({
    Op.APIKEY_CREATE, Op.APIKEY_LIST, Op.APIKEY_DELETE, Op.SESSION_CREATE, Op.USER_PURGE})
#: Ops that change the name's data: held while the name is fenced, counted for the fence.
WRITES = frozenset({
    Op.MANIFEST_PUT, Op.MANIFEST_DELETE, Op.BLOB_DELETE, Op.BLOB_LINK, Op.UPLOAD_START, Op.UPLOAD_BEGIN,
    Op.UPLOAD_CHUNK, Op.UPLOAD_COMMIT, Op.UPLOAD_CANCEL, Op.USERPREFS_TOGGLE, Op.APIKEY_CREATE, Op.APIKEY_DELETE,
    Op.SESSION_CREATE, Op.USER_PURGE, Op.SYNC_MANIFEST, Op.SYNC_BLOB})
