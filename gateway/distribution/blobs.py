"""``/v2/<name>/blobs/<digest>``: GET (with ``Range``), HEAD, DELETE.

When the gateway shares the shards' filesystem it opens the blob file the shard names and
streams it itself (a pull then costs what a plain file server costs); otherwise the bytes
come over ZeroMQ in FRAME_SIZE reads, WINDOW of them in flight. On a plain-HTTP/1.1 connection
the file's bytes are not even read by Python: the body is made of :class:`~gateway.zerocopy.FileRegion`
parts the server sends with ``sendfile(2)`` (:mod:`gateway.zerocopy`). A blob file is immutable and
was verified against its digest before the shard renamed it into place, so nothing is skipped by not
looking at the bytes; headers, ranges and multipart framing are the same on every path.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from quart import Response

from common import messages
from common.errors import ErrorCode, RegistryError
from common.grammar import Header, MediaType, parse_digest, validate_name
from common.protocol import FRAME_SIZE
from gateway import zerocopy
from gateway.context import current_state
from gateway.distribution import pullthrough
from gateway.distribution.answer import Answer, ReadRequest, quart_response
from gateway.distribution.common import delete_in_repo
from gateway.httputil import parse_ranges
from gateway.shard_client import ShardClient
from gateway.state import GatewayState


async def _file_chunks(path: Path, start: int, end: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    fd = await loop.run_in_executor(None, os.open, path, os.O_RDONLY)
    try:
        pos = start
        while pos < end:
            data = await loop.run_in_executor(None, os.pread, fd, min(FRAME_SIZE, end - pos), pos)
            if not data:
                break
            pos += len(data)
            yield data
    finally:
        os.close(fd)


async def _shard_chunks(client: ShardClient, shard: int, digest: str, start: int, end: int
                        ) -> AsyncIterator[bytes]:
    # runs after the handler returned, outside the app context: take the client as an argument
    async for frame in client.read_blob(shard, digest, start, end):
        yield frame.bytes


async def blob_answer(st: GatewayState, req: ReadRequest, name: str, digest: str) -> Answer:
    """GET/HEAD of a blob, for the Quart view and the read fast path (:mod:`gateway.distribution.reads`)."""
    validate_name(name)
    parse_digest(digest)
    await st.access.authorize(req.headers, name, "read", req.remote_addr, method=req.method)
    fetching = False
    local = st.local_reads.blob(st.client, name, digest) if st.local_reads is not None else None
    try:
        if local is not None:
            shard, info = local
        else:
            stated = await st.client.call_repo(messages.BLOB_STAT({"repo": name, "digest": digest}))
            info, shard = stated.result, stated.shard
    except RegistryError as exc:  # the miss point of a pull-through repository (extensions.sync)
        if exc.code is not ErrorCode.BLOB_UNKNOWN or not pullthrough.applies(st.config, name):
            raise
        shard, synced = await pullthrough.blob_on_miss(st, name, digest, req.method == "HEAD")
        info, fetching = {"size": synced["size"], "path": synced["path"]}, synced["fetching"]
    size = info["size"]
    ranges = parse_ranges(req.range, size) if req.method == "GET" else None
    path = st.blob_file(shard, info["path"])
    # decided here (the body runs after the handler returned): the blob file's regions, sent zero-copy
    zero_copy_file = path if (req.method == "GET" and not fetching and zerocopy.offered(req.scope) and path is not None
                              and path.exists()) else None

    def chunks(start: int, end: int) -> AsyncIterator[bytes] | AsyncIterator[zerocopy.FileRegion]:
        if zero_copy_file is not None:
            return zerocopy.file_regions(zero_copy_file, start, end)
        if fetching:
            return pullthrough.fetching_chunks(st.client, shard, name, digest, start, end)
        if path is not None and path.exists():
            return _file_chunks(path, start, end)
        return _shard_chunks(st.client, shard, digest, start, end)

    headers = {Header.CONTENT_DIGEST: digest, "Accept-Ranges": "bytes", "ETag": f'"{digest}"'}
    if ranges is not None and len(ranges) > 1:
        boundary = secrets.token_hex(16)
        parts = [(f"--{boundary}\r\nContent-Type: {MediaType.OCTET_STREAM}\r\n"
                  f"Content-Range: bytes {a}-{b - 1}/{size}\r\n\r\n").encode() for a, b in ranges]
        closing = f"--{boundary}--\r\n".encode()
        length = sum(len(p) + (b - a) + 2 for p, (a, b) in zip(parts, ranges, strict=True)) + len(closing)

        async def multipart() -> AsyncIterator[bytes | zerocopy.FileRegion]:
            for head, (a, b) in zip(parts, ranges, strict=True):
                yield head
                async for data in chunks(a, b):
                    yield data
                yield b"\r\n"
            yield closing

        headers["Content-Length"] = str(length)
        return Answer(206, f"multipart/byteranges; boundary={boundary}", headers, multipart(), waits=zero_copy_file is None)
    start, end = ranges[0] if ranges else (0, size)
    body: Any = b"" if req.method == "HEAD" else chunks(start, end)
    if ranges:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    return Answer(206 if ranges else 200, MediaType.OCTET_STREAM, headers, body, waits=zero_copy_file is None)


async def get_blob(name: str, digest: str) -> Response:
    return quart_response(await blob_answer(current_state(), ReadRequest.from_quart(), name, digest))


async def delete_blob(name: str, digest: str) -> Response:
    validate_name(name)
    parse_digest(digest)
    return await delete_in_repo(messages.BLOB_DELETE({"repo": name, "digest": digest}))
