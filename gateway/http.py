"""Small HTTP helpers shared by the Quart routes and the raw ASGI upload path."""

from __future__ import annotations

import json
import re
from typing import Any

from common.errors import ErrorCode, RegistryError
from common.rules import Header

JSON_TYPE = "application/json"
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)")
_CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?")


def error_body(exc: RegistryError) -> bytes:
    return json.dumps(exc.body()).encode()


def error_headers(exc: RegistryError) -> dict[str, str]:
    headers = {"Content-Type": JSON_TYPE, Header.API_VERSION: "registry/2.0"}
    headers.update(exc.headers)
    return headers


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """A blob GET ``Range`` → (start, end exclusive); None = serve it all; raises 416 if unsatisfiable."""
    if not value:
        return None
    match = _RANGE_RE.fullmatch(value.strip())
    if not match:
        return None  # multiple or foreign ranges: RFC 9110 lets us ignore them and send 200
    first, last = match.groups()
    unsatisfiable = RegistryError(ErrorCode.RANGE_INVALID, detail={"range": value[:100], "size": size},
                                  headers={"Content-Range": f"bytes */{size}"})
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - suffix), size
    start = int(first)
    end = int(last) + 1 if last else size
    if start >= size or end <= start:
        raise unsatisfiable
    return start, min(end, size)


def parse_content_range(value: str | None) -> tuple[int, int] | None:
    """A PATCH ``Content-Range: start-end`` (inclusive) → (start, end); None when absent."""
    if value is None:
        return None
    match = _CONTENT_RANGE_RE.fullmatch(value.strip())
    if not match:
        raise RegistryError(ErrorCode.RANGE_INVALID, "malformed Content-Range", detail={"range": value[:100]})
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise RegistryError(ErrorCode.RANGE_INVALID, "Content-Range ends before it starts",
                            detail={"range": value[:100]})
    return start, end


def upload_range(offset: int) -> str:
    """The ``Range`` header of an upload holding ``offset`` bytes."""
    return f"0-{offset - 1}" if offset > 0 else "0-0"


def int_param(value: str | None, name: str, minimum: int = 0) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"{name} must be an integer",
                            detail={name: value[:50]}, status=400) from None
    if number < minimum:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"{name} must be >= {minimum}", detail={name: value[:50]},
                            status=400)
    return number


async def read_body(limit: int, what: str = "body") -> bytes:
    """The current Quart request's body, refusing (413) more than ``limit`` bytes without buffering them."""
    from quart import request

    too_large = RegistryError(ErrorCode.PAYLOAD_TOO_LARGE, f"{what} larger than {limit} bytes", status=413)
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.body:
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def to_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
