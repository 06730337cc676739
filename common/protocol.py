"""The gateway ↔ shard wire protocol over ZeroMQ (DEALER → ROUTER).

Request:  ``[request_id, op, msgpack(args), *raw_frames]``
Reply:    ``[request_id, status, msgpack(result), *raw_frames]``

``request_id`` is 8 bytes chosen by the gateway, ``op`` one of :class:`Op`, ``status`` is
``b"ok"`` or ``b"err"`` (then ``result`` is a wire-encoded :class:`RegistryError`). Blob bytes
never travel inside msgpack: they are the trailing raw frames, sent with ``copy=False``.

Streams use request/reply credits: a sender keeps at most :data:`WINDOW` chunk requests
unanswered, and the receiver answers each chunk only once it is written. A ZeroMQ ROUTER
drops messages silently at its high-water mark, so the window, not the HWM, bounds memory.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgpack

OK = b"ok"
ERR = b"err"

#: Size of one blob frame, and the number of frames a stream keeps in flight.
FRAME_SIZE = 1024 * 1024
WINDOW = 16


class Op(StrEnum):
    PING = "ping"
    STATUS = "status"
    # repositories and listings
    CATALOG = "repo.catalog"
    REPO_COUNT = "repo.count"
    TAGS_LIST = "tags.list"
    # manifests
    MANIFEST_GET = "manifest.get"
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
    UPLOAD_ABORT = "upload.abort"
    UPLOAD_COMMIT = "upload.commit"
    UPLOAD_CANCEL = "upload.cancel"

    # -- extensions (shard/search_meta.py): search metadata, user preferences, image trust, profiling --
    SEARCH_IMAGES = "search.images"
    SEARCH_REPOS = "search.repos"
    SEARCH_EXPAND = "search.expand"
    USERPREFS_TOGGLE = "userprefs.toggle"
    TRUST_PUT = "trust.put"
    DEBUG_PROFILE = "debug.profile"

    # --- user data (shard/userdata.py; owned by the auth work) ---------------------------
    APIKEY_CREATE = "user.apikey.create"
    APIKEY_LIST = "user.apikey.list"
    APIKEY_DELETE = "user.apikey.delete"
    APIKEY_LOOKUP = "user.apikey.lookup"
    APIKEY_TOUCH = "user.apikey.touch"
    SESSION_CREATE = "user.session.create"
    SESSION_GET = "user.session.get"
    SESSION_DELETE = "user.session.delete"
    SECRET_GET = "user.secret.get"


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes | memoryview) -> Any:
    return msgpack.unpackb(data, raw=False)
