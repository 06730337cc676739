"""``/v2/<name>/blobs/<digest>``: GET (with ``Range``), HEAD, DELETE.

When the gateway shares the shards' filesystem it opens the blob file the shard names and
streams it itself (a pull then costs what a plain file server costs); otherwise the bytes
come over ZeroMQ in FRAME_SIZE reads, WINDOW of them in flight.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

from quart import Blueprint, Response, request

from common.protocol import FRAME_SIZE, Op
from common.rules import Header, MediaType, parse_digest, validate_name
from gateway.distribution.common import authorize, delete_in_repo, state
from gateway.http import parse_range
from gateway.shard_client import ShardClient

blueprint = Blueprint("blobs", __name__)


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


@blueprint.route("/v2/<path:name>/blobs/<digest>", methods=["GET", "HEAD"])
async def get_blob(name: str, digest: str) -> Response:
    validate_name(name)
    parse_digest(digest)
    await authorize(name, "read")
    st = state()
    shard = st.client.shard_of(name)
    info = (await st.client.call(shard, Op.BLOB_STAT, {"repo": name, "digest": digest})).result
    size = info["size"]
    byte_range = parse_range(request.headers.get("Range"), size) if request.method == "GET" else None
    start, end = byte_range or (0, size)
    if request.method == "HEAD":
        body: bytes | AsyncIterator[bytes] = b""
    else:
        path = st.blob_file(shard, info["path"])
        if path is not None and path.exists():
            body = _file_chunks(path, start, end)
        else:
            body = _shard_chunks(st.client, shard, digest, start, end)
    response = Response(body, status=206 if byte_range else 200, content_type=MediaType.OCTET_STREAM)
    response.headers[Header.CONTENT_DIGEST] = digest
    response.headers["Accept-Ranges"] = "bytes"
    response.headers["ETag"] = f'"{digest}"'
    if byte_range:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response.headers["Content-Length"] = str(end - start)
    return response


@blueprint.route("/v2/<path:name>/blobs/<digest>", methods=["DELETE"])
async def delete_blob(name: str, digest: str) -> Response:
    validate_name(name)
    parse_digest(digest)
    return await delete_in_repo(name, Op.BLOB_DELETE, {"digest": digest})
