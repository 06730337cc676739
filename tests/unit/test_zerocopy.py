"""The application half of zero-copy bodies (gateway/zerocopy.py): FileRegion bodies become ASGI
``http.response.zerocopysend`` messages when the server offers the extension, and bytes otherwise."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.zerocopy import EXTENSION, FileRegion, ZeroCopyApp, file_regions, offered


def run(app: ZeroCopyApp, scope: dict[str, Any]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def body_app(path: Path) -> ZeroCopyApp:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 206, "headers": []})
        await send({"type": "http.response.body", "body": b"head", "more_body": True})
        async for region in file_regions(path, 3, 10):
            assert len(region) == 7  # byte counters in the middlewares see the region's size
            await send({"type": "http.response.body", "body": region, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return ZeroCopyApp(app)


def test_regions_become_zerocopysend_when_offered(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"0123456789abcdef")
    scope = {"type": "http", "extensions": {EXTENSION: {}}}
    assert offered(scope) and not offered({"type": "http"}) and not offered({"type": "http", "extensions": None})
    sent = run(body_app(path), scope)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.zerocopysend",
                                         "http.response.body"]
    zc = sent[2]
    assert (zc["offset"], zc["count"], zc["more_body"]) == (3, 7, True)
    assert zc["file"].closed  # file_regions closes the file once the server has sent it


def test_regions_become_bytes_without_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"0123456789abcdef")
    sent = run(body_app(path), {"type": "http", "extensions": {}})
    assert [m.get("body") for m in sent[1:]] == [b"head", b"3456789", b""]
    assert all(m["type"] == "http.response.body" for m in sent[1:])


def test_a_short_file_is_an_error_not_short_bytes(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"0123")
    with open(path, "rb") as f, pytest.raises(OSError, match="short read"):
        FileRegion(f, 2, 10).read()
    assert os.path.getsize(path) == 4
