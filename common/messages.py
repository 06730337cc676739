"""The request and reply of every wire op (see :mod:`common.protocol` for the framing).

One ``XRequest``/``XReply`` pair of ``TypedDict``\\ s per op and a :class:`~common.protocol.Wire`
constant that ties them to the op name: the gateway calls ``client.call(shard, TAGS_LIST,
{"repo": ..., "n": ..., "last": ...})`` and the shard handles it with ``@handles(TAGS_LIST)``.
Keys are the msgpack map keys on the wire. :data:`ALL` lists every op's wire, and a test checks
that it covers :class:`~common.protocol.Op` exactly. Changing a request or reply here changes
the wire between gateways and shards of one cluster: resharding will version it.

Raw frames are not part of these types: a request's trailing frames are named in its
docstring (manifest bytes, blob bytes, trust material), as are a reply's.
"""
# ruff: noqa: F405

# No ``from __future__ import annotations`` here: TypedDict must see NotRequired[...] at run
# time to know which keys are required (Wire.missing relies on it).
from typing import Any, NotRequired, TypedDict

from common.messages_lifecycle import CLOCK_SET, RETENTION_RUN  # storage lifecycle ops (their types there)
from common.messages_users import *  # noqa: F403  (the per-user records' types)
from common.protocol import Op, Wire
from common.sync_messages import SyncBlobReadRequest, SyncBlobReply, SyncBlobRequest, SyncStatusReply

#: An OCI descriptor ({mediaType, digest, size, artifactType?, annotations?}) as a dict.
Descriptor = dict[str, Any]
#: A zot GraphQL summary (ImageSummary, RepoSummary) built by the shard, as a dict.
Summary = dict[str, Any]


class Empty(TypedDict):
    pass


class RepoScoped(TypedDict):
    """What every op routed by repository carries: the repository is the routing key."""

    repo: str


# -- cluster --------------------------------------------------------------------------------
class PingReply(TypedDict):
    shard: int
    time: float
    #: Whether the shard can serve writes, and why not (its readiness: cheap, for probes).
    ready: bool
    why: str


class StatusReply(TypedDict):
    shard: int
    lmdb_bytes: int
    blob_count: int
    blob_bytes: int
    uploads: int
    damaged: list[str]
    #: Free bytes on the shard's filesystem; whether it can serve writes, and why not.
    disk_free: int
    ready: bool
    why: str
    pid: int
    #: Retention's last pass and the event sinks' figures (shard/lifecycle_status.py).
    lifecycle: NotRequired[dict[str, Any]]
    reshard: NotRequired[dict[str, Any]]  # the map and the moves (shard.routing.Routing.status)


# -- repositories and listings ------------------------------------------------------------
class CatalogRequest(TypedDict):
    n: int
    last: str | None


class CatalogReply(TypedDict):
    repos: list[str]
    more: bool


class RepoCountRequest(TypedDict):
    #: "" to count only; a name to also ask whether the shard holds it.
    repo: str


class RepoCountReply(TypedDict):
    count: int
    exists: bool


class TagsListRequest(TypedDict):
    repo: str
    n: int | None
    last: str | None


class TagsListReply(TypedDict):
    tags: list[str]
    more: bool


# -- manifests ----------------------------------------------------------------------------
class ManifestGetRequest(TypedDict):
    repo: str
    reference: str
    head: bool


class ManifestPullsRequest(TypedDict):
    """Manifest GETs a gateway worker answered from the shard's metadata read in place
    (gateway.local_reads), as ``[repo, digest]`` pairs: a notice (never answered). The shard
    counts each pair whose repository it serves under its routing (like a ``manifest.get``)."""

    pulls: list[list[str]]


class ManifestGetReply(TypedDict):
    """Followed by one frame, the manifest's bytes, unless the request was ``head``."""

    digest: str
    media_type: str
    size: int


class ManifestPutRequest(TypedDict):
    """Followed by one frame: the manifest's bytes, exactly as pushed."""

    repo: str
    digest: str
    media_type: str
    tags: list[str]
    blobs: list[str]
    children: list[str]
    subject: str | None
    artifact_type: str | None
    annotations: dict[str, str] | None
    config: Descriptor | None
    #: Who pushed it (search metadata's PushedBy); "" when anonymous.
    pushed_by: str
    #: Whether the caller may create a new tag, and move an existing one. The shard checks which
    #: tags exist in the write transaction and refuses (DENIED) what the caller may not do.
    may_create: bool
    may_update: bool
    #: Whether the caller is an admin (may overwrite immutable tags); the event context
    #: (actor, addr, method, useragent) for lifecycle events. Absent: not admin, no context.
    admin: NotRequired[bool]
    event: NotRequired[dict[str, str]]


class ManifestPutReply(TypedDict):
    digest: str
    created: bool


class ManifestDeleteRequest(TypedDict):
    repo: str
    #: A tag (untag) or a digest (delete the manifest and every tag pointing at it).
    reference: str
    admin: NotRequired[bool]
    event: NotRequired[dict[str, str]]


class ManifestDeleteReply(TypedDict):
    deleted: str
    tags: NotRequired[list[str]]


class ReferrersRequest(TypedDict):
    repo: str
    subject: str
    artifact_types: list[str]


class ReferrersReply(TypedDict):
    manifests: list[Descriptor]


# -- blobs --------------------------------------------------------------------------------
class BlobRequest(TypedDict):
    repo: str
    digest: str


class BlobStatReply(TypedDict):
    size: int
    #: The blob file relative to the shard directory (gateways sharing storage read it).
    path: str


class BlobReadRequest(TypedDict):
    digest: str
    offset: int
    length: int


class BlobReadReply(TypedDict):
    """Followed by one frame: the bytes read."""

    length: int


class BlobDeleteReply(TypedDict):
    deleted: str


class BlobLinkReply(TypedDict):
    size: int


# -- uploads ------------------------------------------------------------------------------
class UploadStartRequest(TypedDict):
    repo: str
    algorithm: str
    #: Who starts it ("" when anonymous): the shard caps uploads per user.
    user: str


class UploadStartReply(TypedDict):
    uuid: str


class UploadRequest(TypedDict):
    repo: str
    uuid: str


class UploadAbortRequest(TypedDict):
    """The gateway gives up the PATCH in progress; ``full``: because the shard's disk refused its spool
    file (the shard then reports itself not ready, as when its own write fails)."""

    repo: str
    uuid: str
    full: NotRequired[str]


class UploadBeginRequest(TypedDict):
    repo: str
    uuid: str
    #: Where the client says its chunk starts (Content-Range), or None.
    start: int | None


class UploadWriteRequest(TypedDict):
    """Followed by the chunk's frames; answered once they are written (the sender's credit).

    With ``spooled`` there are no frames: a gateway sharing the shard's filesystem has written the
    next ``spooled`` bytes of the PATCH to the shard's ``spool/<uuid>.<start>`` (``start``: where the
    PATCH began); the shard hashes them, and adopts or copies that file when the PATCH ends."""

    repo: str
    uuid: str
    offset: int
    spooled: NotRequired[int]


class UploadEndRequest(TypedDict):
    repo: str
    uuid: str
    #: How many bytes the PATCH announced (Content-Length), or None.
    length: int | None


class UploadChunkRequest(TypedDict):
    """A small body sent whole (its frames: the ASGI chunks it came in): ``upload.begin``, its write, ``upload.end`` and, with
    ``digest``, ``upload.commit`` in one op, each with its own checks."""

    repo: str
    uuid: str
    start: int | None
    digest: NotRequired[str]


class UploadCommitRequest(TypedDict):
    repo: str
    uuid: str
    digest: str


class OffsetReply(TypedDict):
    offset: int


class UploadAbortReply(TypedDict):
    offset: NotRequired[int]


class UploadCommitReply(TypedDict):
    digest: str
    size: int


# -- extensions -----------------------------------------------------------------------------
class SearchImagesRequest(TypedDict):
    user: str | None
    #: Only images whose manifest, config or a layer has this digest (or digest prefix).
    digest: NotRequired[str]
    #: Only these repositories (default: all of the shard's).
    repos: NotRequired[list[str]]


class SearchImagesReply(TypedDict):
    images: list[Summary]


class SearchReposRequest(TypedDict):
    user: str | None
    #: Keep names containing this (case-insensitive).
    query: NotRequired[str]
    #: "starred" or "bookmarked": only the user's.
    only: NotRequired[str]
    #: Include each repository's image summaries (as ``_images``).
    images: NotRequired[bool]
    repos: NotRequired[list[str]]


class SearchReposReply(TypedDict):
    repos: list[Summary]


class SearchExpandRequest(TypedDict):
    repo: str
    user: str | None


class SearchExpandReply(TypedDict):
    images: list[Summary]
    summary: Summary


class UserprefsToggleRequest(TypedDict):
    repo: str
    user: str | None
    #: "toggleStar" or "toggleBookmark".
    action: str


class UserprefsToggleReply(TypedDict):
    value: bool


class TrustPutRequest(TypedDict):
    """Followed by one frame: the key or certificate (PEM or DER)."""

    #: "cosign" or "notation".
    kind: str
    #: notation trust store type ("ca", "signingAuthority"); ignored for cosign.
    type: str


class TrustPutReply(TypedDict):
    version: int


class DebugProfileRequest(TypedDict):
    kind: str
    seconds: float
    top: int


class DebugProfileReply(TypedDict):
    text: str


# -- the wires -------------------------------------------------------------------------------
PING = Wire(Op.PING, Empty, PingReply)
STATUS = Wire(Op.STATUS, Empty, StatusReply)
CATALOG = Wire(Op.CATALOG, CatalogRequest, CatalogReply)
REPO_COUNT = Wire(Op.REPO_COUNT, RepoCountRequest, RepoCountReply)
TAGS_LIST = Wire(Op.TAGS_LIST, TagsListRequest, TagsListReply)
MANIFEST_GET = Wire(Op.MANIFEST_GET, ManifestGetRequest, ManifestGetReply)
MANIFEST_PULLS = Wire(Op.MANIFEST_PULLS, ManifestPullsRequest, Empty)
#: At most this many pairs in one ``manifest.pulls`` (the shard refuses more: bounded work).
MAX_PULLS = 1024
MANIFEST_PUT = Wire(Op.MANIFEST_PUT, ManifestPutRequest, ManifestPutReply)
MANIFEST_DELETE = Wire(Op.MANIFEST_DELETE, ManifestDeleteRequest, ManifestDeleteReply)
REFERRERS = Wire(Op.REFERRERS, ReferrersRequest, ReferrersReply)
BLOB_STAT = Wire(Op.BLOB_STAT, BlobRequest, BlobStatReply)
BLOB_READ = Wire(Op.BLOB_READ, BlobReadRequest, BlobReadReply)
BLOB_DELETE = Wire(Op.BLOB_DELETE, BlobRequest, BlobDeleteReply)
BLOB_LINK = Wire(Op.BLOB_LINK, BlobRequest, BlobLinkReply)
UPLOAD_START = Wire(Op.UPLOAD_START, UploadStartRequest, UploadStartReply)
UPLOAD_STATUS = Wire(Op.UPLOAD_STATUS, UploadRequest, OffsetReply)
UPLOAD_BEGIN = Wire(Op.UPLOAD_BEGIN, UploadBeginRequest, OffsetReply)
UPLOAD_WRITE = Wire(Op.UPLOAD_WRITE, UploadWriteRequest, OffsetReply)
UPLOAD_END = Wire(Op.UPLOAD_END, UploadEndRequest, OffsetReply)
UPLOAD_CHUNK = Wire(Op.UPLOAD_CHUNK, UploadChunkRequest, OffsetReply)
UPLOAD_ABORT = Wire(Op.UPLOAD_ABORT, UploadAbortRequest, UploadAbortReply)
UPLOAD_COMMIT = Wire(Op.UPLOAD_COMMIT, UploadCommitRequest, UploadCommitReply)
UPLOAD_CANCEL = Wire(Op.UPLOAD_CANCEL, UploadRequest, Empty)
SEARCH_IMAGES = Wire(Op.SEARCH_IMAGES, SearchImagesRequest, SearchImagesReply)
SEARCH_REPOS = Wire(Op.SEARCH_REPOS, SearchReposRequest, SearchReposReply)
SEARCH_EXPAND = Wire(Op.SEARCH_EXPAND, SearchExpandRequest, SearchExpandReply)
USERPREFS_TOGGLE = Wire(Op.USERPREFS_TOGGLE, UserprefsToggleRequest, UserprefsToggleReply)
TRUST_PUT = Wire(Op.TRUST_PUT, TrustPutRequest, TrustPutReply)
DEBUG_PROFILE = Wire(Op.DEBUG_PROFILE, DebugProfileRequest, DebugProfileReply)
APIKEY_CREATE = Wire(Op.APIKEY_CREATE, ApikeyCreateRequest, UuidReply)
APIKEY_LIST = Wire(Op.APIKEY_LIST, UserRequest, ApikeyListReply)
APIKEY_DELETE = Wire(Op.APIKEY_DELETE, ApikeyDeleteRequest, DeletedReply)
APIKEY_LOOKUP = Wire(Op.APIKEY_LOOKUP, ApikeyLookupRequest, ApikeyLookupReply)
APIKEY_TOUCH = Wire(Op.APIKEY_TOUCH, ApikeyTouchRequest, ApikeyTouchReply)
SESSION_CREATE = Wire(Op.SESSION_CREATE, SessionCreateRequest, SidReply)
SESSION_GET = Wire(Op.SESSION_GET, SessionRequest, SessionGetReply)
SESSION_DELETE = Wire(Op.SESSION_DELETE, SessionRequest, DeletedReply)
SECRET_GET = Wire(Op.SECRET_GET, SecretGetRequest, SecretGetReply)
USER_PURGE = Wire(Op.USER_PURGE, UserRequest, UserPurgeReply)

#: Every op's wire, by op.
ALL: dict[Op, Wire[Any, Any]] = {w.op: w for w in (
    PING, STATUS, CATALOG, REPO_COUNT, TAGS_LIST, MANIFEST_GET, MANIFEST_PULLS, MANIFEST_PUT, MANIFEST_DELETE, REFERRERS,
    BLOB_STAT, BLOB_READ, BLOB_DELETE, BLOB_LINK, UPLOAD_START, UPLOAD_STATUS, UPLOAD_BEGIN, UPLOAD_WRITE,
    UPLOAD_END, UPLOAD_CHUNK, UPLOAD_ABORT, UPLOAD_COMMIT, UPLOAD_CANCEL, SEARCH_IMAGES, SEARCH_REPOS, SEARCH_EXPAND,
    USERPREFS_TOGGLE, TRUST_PUT, DEBUG_PROFILE, APIKEY_CREATE, APIKEY_LIST, APIKEY_DELETE, APIKEY_LOOKUP,
    APIKEY_TOUCH, SESSION_CREATE, SESSION_GET, SESSION_DELETE, SECRET_GET,
    USER_PURGE, RETENTION_RUN, CLOCK_SET)}
#: Ops the shard never answers (see common.protocol): the sender does not wait for them.
NOTICES = frozenset({Op.MANIFEST_PULLS})
# -- sync (issue 13): request/reply types in common/sync_messages.py (this module's size) -----
SYNC_MANIFEST = Wire(Op.SYNC_MANIFEST, ManifestGetRequest, ManifestGetReply)  # manifest.get, pulling through
SYNC_BLOB = Wire(Op.SYNC_BLOB, SyncBlobRequest, SyncBlobReply)
SYNC_BLOB_READ = Wire(Op.SYNC_BLOB_READ, SyncBlobReadRequest, BlobReadReply)
SYNC_STATUS = Wire(Op.SYNC_STATUS, Empty, SyncStatusReply)
ALL.update({w.op: w for w in (SYNC_MANIFEST, SYNC_BLOB, SYNC_BLOB_READ, SYNC_STATUS)})

# -- resharding (issue 12): in common/messages_cluster.py
from common.messages_cluster import *  # noqa: E402,F403
from common.messages_cluster import WIRES as _CLUSTER_WIRES  # noqa: E402

ALL.update({w.op: w for w in _CLUSTER_WIRES})

# -- sorted search listings (issue 17): in common/messages_search.py
from common.messages_search import *  # noqa: E402,F403
from common.messages_search import SEARCH_WIRES as _SEARCH_WIRES  # noqa: E402

ALL.update({w.op: w for w in _SEARCH_WIRES})
