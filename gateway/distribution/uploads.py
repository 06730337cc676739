"""Blob uploads: ``/v2/<name>/blobs/uploads/[<uuid>]`` (POST, PATCH, PUT, GET, DELETE).

Served as plain ASGI in front of Quart, because Quart reads request bodies into memory without
limit. Here ``receive()`` is called only while fewer than ``WINDOW`` chunk writes are
unanswered by the shard, so Hypercorn stops reading the socket when the shard is slower than
the client: a 2 GiB push holds at most ``WINDOW × FRAME_SIZE`` bytes in the gateway. The ASGI
chunks (usually 64 KiB) are sent as the frames of one multipart message (about FRAME_SIZE
each), never joined.

When the gateway shares the shards' filesystem (``cluster.sharedStorage``, as in the embedded
cluster), a body of more than FRAME_SIZE goes another way: into the owning shard's
``spool/<uuid>.<start>``, announced to the shard every ``SPOOL_PIECE`` bytes, which the shard
hashes and then adopts as the upload's file (or copies, for a PATCH that does not start the
upload). On plain HTTP/1.1 the server's body tap (:mod:`gateway.body_tap`) moves the body from
the socket into that file with ``splice(2)``, never through Python; otherwise the ASGI chunks are
written in batches off the event loop. Either way the bytes cross no socket between gateway and
shard (docs/performance.md, "push-large").
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote

from common import messages
from common.errors import ErrorCode, RegistryError
from common.grammar import (
    CHUNK_MIN_LENGTH,
    DIGEST_ALGORITHMS,
    Header,
    digest_algorithm,
    parse_digest,
    validate_name,
)
from common.protocol import FRAME_SIZE
from gateway import body_tap
from gateway.body_guard import DRAIN_LIMIT
from gateway.distribution.upload_writer import ChunkWriter, TapSink, check_range, spool_failed
from gateway.httputil import error_body, error_headers, parse_content_range, upload_range
from gateway.quota import ensure_room_for
from gateway.state import GatewayState

log = logging.getLogger("shardreg.gateway")

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: Commits re-hash (other algorithm) and fsync whole blobs: allow them time.
COMMIT_TIMEOUT = 900.0
#: Bytes per second an upload body must average over each ``http.readTimeout`` (default 120 s) the
#: gateway spends waiting for it, else it is abandoned (slowloris): 120 KiB per 2 minutes.
MIN_BODY_RATE = 1024

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ClientGone(Exception):
    """The client disconnected before its body was complete."""


class BodyTooSlow(ClientGone):
    """The client is still there, but its body stalled or trickled below ``MIN_BODY_RATE``."""


class BodyPace:
    """Abandons a body that arrives slower than ``min_rate`` bytes/s over ``window`` seconds.

    Only the time spent waiting in ``receive()`` counts: while the gateway itself holds back (the
    shard is slower than the client) the client cannot send, and is not blamed for it. A body
    that stops altogether is abandoned after ``window`` seconds, one that trickles after the
    first window whose average stays below the rate — never held indefinitely.
    """

    def __init__(self, window: float, min_rate: float = MIN_BODY_RATE) -> None:
        self.window, self.needed = window, min_rate * window
        self.waited, self.received = 0.0, 0

    def wait_limit(self) -> float:
        """How long the next wait for body bytes may last."""
        return max(0.0, self.window - self.waited)

    def note(self, waited: float, received: int) -> None:
        """Count a wait and the bytes it brought; raises BodyTooSlow when a window ends too short."""
        self.waited += waited
        self.received += received
        if self.waited >= self.window:
            if self.received < self.needed:
                raise BodyTooSlow()
            self.waited, self.received = 0.0, 0  # a new window

    async def receive(self, receive: Receive) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                message = await asyncio.wait_for(receive(), self.wait_limit())
            except TimeoutError:
                message = None
            self.note(loop.time() - started, len(message.get("body", b"")) if message is not None else 0)
            if message is not None:
                return message


class Request:
    """The bits of an ASGI request the upload handlers need."""

    def __init__(self, scope: dict[str, Any], receive: Receive, read_timeout: float = 120.0) -> None:
        self.scope, self.receive = scope, receive
        self.pace = BodyPace(read_timeout)
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        client = scope.get("client")
        self.client = client[0] if client else None
        #: Offered by the server for a large body on plain HTTP/1.1 (:mod:`gateway.body_tap`).
        self.tap: body_tap.BodyTap | None = (scope.get("extensions") or {}).get(body_tap.EXTENSION, {}).get("tap")
        self._pending: dict[str, Any] | None = None
        self._complete = False

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def body_complete(self) -> bool:
        if self._complete:
            return True
        length = self.headers.get("content-length")
        return length == "0" or (length is None and "chunked" not in self.headers.get("transfer-encoding", ""))

    async def has_body(self) -> bool:
        """Whether the request carries body bytes (peeks at the first ASGI message)."""
        if self.headers.get("content-length") == "0":
            return False
        if "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", ""):
            return False
        if self.tap is not None and not self.tap.decided:
            return True  # offered only for a Content-Length of body_tap.TAP_MIN or more
        self._pending = await self._receive_body()
        return bool(self._pending.get("body")) or bool(self._pending.get("more_body"))

    async def _receive_body(self) -> dict[str, Any]:
        # a client that stops or trickles mid-body is dropped (its PATCH undone), not waited on forever
        message = await self.pace.receive(self.receive)
        if message["type"] == "http.disconnect":
            raise ClientGone()
        if not message.get("more_body", False):
            self._complete = True
        return message

    async def splice_into(self, writer: ChunkWriter) -> bool:
        """Have the server move the body into ``writer``'s spool file, if it offers to and the
        writer can take it; True once every byte is there (the ASGI end message still follows)."""
        if self.tap is None or self.tap.decided or self._pending is not None or writer.spool is None:
            return False
        if not writer.open_spool():
            return False
        self.tap.splice(TapSink(writer, self.pace))
        try:
            await self.tap.finished()
        except body_tap.ClientGone:
            raise ClientGone() from None
        except OSError as exc:  # the tap's write into the spool file (a full disk: 507)
            raise spool_failed(exc) from None
        return True

    async def read_whole(self) -> list[bytes]:
        """The rest of a body small enough to hold (its Content-Length was checked), as the ASGI
        chunks it came in: they go on as the frames of one message, never joined (joining copied
        up to a MiB into freshly mapped memory: 6 % of a worker's time in push-small)."""
        parts, more = [], True
        while more:
            chunk, more = await self.next_chunk()
            if chunk:
                parts.append(chunk)
        return parts

    async def next_chunk(self) -> tuple[bytes, bool]:
        message, self._pending = self._pending or await self._receive_body(), None
        return message.get("body", b""), message.get("more_body", False)

    async def discard_body(self, limit: int) -> bool:
        """Read and drop up to ``limit`` body bytes; True if the body is now complete."""
        seen = len(self._pending.get("body", b"")) if self._pending else 0
        self._pending = None
        try:
            while not self._complete and seen <= limit:
                seen += len((await asyncio.wait_for(self._receive_body(), 5)).get("body", b""))
        except (ClientGone, TimeoutError):
            return False
        return self._complete

    async def drain(self) -> None:
        """Consume an unwanted body so the connection can be reused."""
        self._pending = None
        while not self._complete:
            try:
                await self._receive_body()
            except ClientGone:
                return


async def respond(send: Send, status: int, headers: dict[str, str] | list[tuple[str, str]], body: bytes = b"") -> None:
    items = headers.items() if isinstance(headers, dict) else headers
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in items]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _location(name: str, uuid: str) -> str:
    return f"/v2/{name}/blobs/uploads/{uuid}"


def _session_headers(name: str, uuid: str, offset: int) -> dict[str, str]:
    return {
        "Location": _location(name, uuid), "Range": upload_range(offset), Header.UPLOAD_UUID: uuid,
        Header.ZOT_UPLOAD_UUID: uuid, Header.API_VERSION: "registry/2.0",
    }


def _blob_created(name: str, digest: str) -> dict[str, str]:
    return {"Location": f"/v2/{name}/blobs/{quote(digest, safe=':')}", Header.CONTENT_DIGEST: digest,
            Header.API_VERSION: "registry/2.0"}


class UploadHandler:
    def __init__(self, state: GatewayState) -> None:
        self.state = state

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send, raw_name: str,
                       uuid: str | None) -> None:
        """Serve ``/v2/<raw_name>/blobs/uploads/[<uuid>]`` (the routes of :mod:`gateway.routes`)."""
        request = Request(scope, receive, self.state.config.http.read_timeout)
        try:
            name = validate_name(raw_name)
            if uuid is not None and not UUID_RE.fullmatch(uuid):
                raise RegistryError(ErrorCode.BLOB_UPLOAD_UNKNOWN, detail={"uuid": uuid[:100]})
            if uuid is None:
                if request.method != "POST":
                    raise RegistryError(ErrorCode.METHOD_NOT_ALLOWED, status=405)
                identity = await self.state.access.authorize(request.headers, name, "create", request.client)
                status, headers = await self.post(request, name, identity.name or "")
            else:
                action = "read" if request.method == "GET" else "create"
                await self.state.access.authorize(request.headers, name, action, request.client)
                method = {"PATCH": self.patch, "PUT": self.put, "GET": self.status, "DELETE": self.cancel}.get(
                    request.method)
                if method is None:
                    raise RegistryError(ErrorCode.METHOD_NOT_ALLOWED, status=405)
                status, headers = await method(request, name, uuid)
            await request.drain()
            await respond(send, status, headers)
        except BodyTooSlow:
            log.info("upload body below %d bytes/s for %ss, abandoned: %s %s from %s", MIN_BODY_RATE,
                     request.pace.window, request.method, request.path, request.client or "-")
            exc = RegistryError(ErrorCode.BLOB_UPLOAD_INVALID, "the upload body arrived too slowly", status=408)
            try:  # answered at once: the rest of the body is not read, the connection is closed
                await respond(send, exc.status, {**error_headers(exc), "Connection": "close"}, error_body(exc))
            except Exception:  # noqa: BLE001 - the client is gone
                pass
        except ClientGone:
            return
        except RegistryError as exc:
            await self._fail(request, send, exc)
        except Exception:
            log.exception("upload request failed: %s %s", request.method, request.path)
            await self._fail(request, send, RegistryError(ErrorCode.INTERNAL))

    async def _fail(self, request: Request, send: Send, exc: RegistryError) -> None:
        headers = error_headers(exc)
        # Read a small unread body before answering: closing a socket with unread input makes the
        # kernel send RST, which can destroy the error answer on its way to the client.
        if not request.body_complete and not await request.discard_body(DRAIN_LIMIT):
            headers["Connection"] = "close"  # too big to read: the rest must not be parsed as a request
        try:
            await respond(send, exc.status, headers, error_body(exc))
        except Exception:  # noqa: BLE001 - the client is gone
            pass

    # -- POST: start, monolithic, mount --------------------------------------------------
    async def post(self, request: Request, name: str, user: str) -> tuple[int, dict[str, str]]:
        """``user`` ("" when anonymous) is who the shard counts the upload against (per-user cap)."""
        client = self.state.client
        await ensure_room_for(self.state, name)
        mount, digest = request.arg("mount"), request.arg("digest")
        if mount is not None:
            parse_digest(mount)
            source = request.arg("from")
            if source:
                validate_name(source)
                await self.state.access.authorize(request.headers, source, "read", request.client)
                if await self.mount(name, source, mount, user):
                    return 201, _blob_created(name, mount)
        elif request.arg("from") is not None:
            raise RegistryError(ErrorCode.BAD_REQUEST, "from without mount", status=400)
        algorithm = request.arg("digest-algorithm") or "sha256"
        if digest is not None:
            parse_digest(digest)
            algorithm = digest_algorithm(digest)
        if algorithm not in DIGEST_ALGORITHMS:
            raise RegistryError(ErrorCode.DIGEST_INVALID, f"unsupported digest algorithm {algorithm[:20]}",
                                status=400)
        started = await client.call_repo(messages.UPLOAD_START({"repo": name, "algorithm": algorithm, "user": user}))
        shard, uuid = started.shard, started.result["uuid"]
        if digest is None:
            headers = _session_headers(name, uuid, 0)
            headers[Header.OCI_CHUNK_MIN_LENGTH] = str(CHUNK_MIN_LENGTH)
            return 202, headers
        try:
            if await request.has_body():
                await self.stream_body(request, shard, name, uuid, None, digest)
            else:
                await self._commit(name, uuid, digest)
        except BaseException:
            await self._cancel_quietly(shard, name, uuid)
            raise
        headers = _blob_created(name, digest)
        headers[Header.ZOT_UPLOAD_UUID] = uuid
        return 201, headers

    async def mount(self, name: str, source: str, digest: str, user: str) -> bool:
        """Link ``digest`` from ``source`` into ``name``; across shards the bytes are copied."""
        client = self.state.client
        try:
            stated = await client.call_repo(messages.BLOB_STAT({"repo": source, "digest": digest}))
        except RegistryError as exc:
            if exc.code in (ErrorCode.BLOB_UNKNOWN, ErrorCode.NAME_UNKNOWN):
                return False
            raise
        stat, src = stated.result, stated.shard
        try:
            await client.call_repo(messages.BLOB_LINK({"repo": name, "digest": digest}))
            return True
        except RegistryError as exc:
            if exc.code != ErrorCode.BLOB_UNKNOWN or src == client.shard_of(name):
                if exc.code == ErrorCode.BLOB_UNKNOWN:
                    return False
                raise
        # The target shard does not hold the bytes: copy them shard to shard.
        started = await client.call_repo(messages.UPLOAD_START(
            {"repo": name, "algorithm": digest_algorithm(digest), "user": user}))
        dst, uuid = started.shard, started.result["uuid"]
        try:
            dst = (await client.call_repo(messages.UPLOAD_BEGIN({"repo": name, "uuid": uuid, "start": 0}))).shard
            writer = ChunkWriter(client, dst, name, uuid, 0)
            async for frame in client.read_blob(src, digest, 0, stat["size"]):
                await writer.write([frame.buffer])
            await writer.flush()
            await client.call(dst, messages.UPLOAD_END({"repo": name, "uuid": uuid, "length": stat["size"]}))
            await client.call_repo(messages.UPLOAD_COMMIT({"repo": name, "uuid": uuid, "digest": digest}),
                                   timeout=COMMIT_TIMEOUT)
        except BaseException:
            await self._cancel_quietly(dst, name, uuid)
            raise
        return True

    # -- PATCH / PUT: bytes ----------------------------------------------------------------
    async def stream_body(self, request: Request, shard: int, name: str, uuid: str,
                          content_range: tuple[int, int] | None, digest: str | None = None) -> int:
        """Append the request body to the upload; returns the new upload size. The PATCH goes to
        the shard that accepted its ``upload.begin`` (``shard`` is the first guess: during a resize
        the owner may redirect). With ``digest`` the upload is committed after it. A body of at most
        FRAME_SIZE (by its Content-Length) is read whole and sent in one op, ``upload.chunk``
        (begin, write, end and the commit), instead of three or four."""
        client = self.state.client
        start = content_range[0] if content_range else None
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) <= FRAME_SIZE:
            body = await request.read_whole()
            check_range(content_range, sum(len(part) for part in body))
            whole: messages.UploadChunkRequest = {"repo": name, "uuid": uuid, "start": start}
            if digest is not None:
                whole["digest"] = digest
            return (await client.call_repo(messages.UPLOAD_CHUNK(whole), body,
                                           timeout=COMMIT_TIMEOUT)).result["offset"]
        begun = await client.call_repo(messages.UPLOAD_BEGIN({"repo": name, "uuid": uuid, "start": start}))
        offset, shard = begun.result["offset"], begun.shard
        writer = ChunkWriter(client, shard, name, uuid, offset, self.state.spool_dir(shard))
        try:
            await request.splice_into(writer)
            more = True
            while more:
                chunk, more = await request.next_chunk()
                if chunk:
                    await writer.add(chunk)
            await writer.flush()
        except BaseException as exc:
            await writer.discard()
            abort: messages.UploadAbortRequest = {"repo": name, "uuid": uuid}
            if isinstance(exc, RegistryError) and exc.code is ErrorCode.INSUFFICIENT_STORAGE:
                abort["full"] = exc.message  # the shard's disk refused the spool file: its /readyz tells
            try:
                await client.call(shard, messages.UPLOAD_ABORT(abort))
            except Exception:  # noqa: BLE001 - the shard will expire the stale PATCH itself
                pass
            raise
        length = writer.offset - offset
        try:
            check_range(content_range, length)
        except RegistryError:
            await client.call(shard, messages.UPLOAD_ABORT({"repo": name, "uuid": uuid}))
            raise
        offset = (await client.call(shard, messages.UPLOAD_END({"repo": name, "uuid": uuid, "length": length}))
                  ).result["offset"]
        if digest is not None:
            await self._commit(name, uuid, digest)
        return offset

    async def patch(self, request: Request, name: str, uuid: str) -> tuple[int, dict[str, str]]:
        content_range = parse_content_range(request.headers.get("content-range"))
        offset = await self.stream_body(request, self.state.client.shard_of(name), name, uuid, content_range)
        return 202, _session_headers(name, uuid, offset)

    async def put(self, request: Request, name: str, uuid: str) -> tuple[int, dict[str, str]]:
        digest = request.arg("digest")
        if not digest:
            raise RegistryError(ErrorCode.DIGEST_INVALID, "digest parameter is required", status=400)
        parse_digest(digest)
        if await request.has_body():
            content_range = parse_content_range(request.headers.get("content-range"))
            await self.stream_body(request, self.state.client.shard_of(name), name, uuid, content_range, digest)
        else:
            await self._commit(name, uuid, digest)
        return 201, _blob_created(name, digest)

    async def _commit(self, name: str, uuid: str, digest: str) -> None:
        await self.state.client.call_repo(messages.UPLOAD_COMMIT({"repo": name, "uuid": uuid, "digest": digest}),
                                          timeout=COMMIT_TIMEOUT)

    async def status(self, request: Request, name: str, uuid: str) -> tuple[int, dict[str, str]]:
        offset = (await self.state.client.call_repo(messages.UPLOAD_STATUS({"repo": name, "uuid": uuid}))).result["offset"]
        return 204, _session_headers(name, uuid, offset)

    async def cancel(self, request: Request, name: str, uuid: str) -> tuple[int, dict[str, str]]:
        await self.state.client.call_repo(messages.UPLOAD_CANCEL({"repo": name, "uuid": uuid}))
        return 204, {Header.API_VERSION: "registry/2.0"}

    async def _cancel_quietly(self, shard: int, name: str, uuid: str) -> None:
        try:
            await self.state.client.call_repo(messages.UPLOAD_CANCEL({"repo": name, "uuid": uuid}))
        except Exception:  # noqa: BLE001 - expiry will remove it
            pass
