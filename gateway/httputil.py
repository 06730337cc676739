"""Small HTTP helpers shared by the Quart routes and the raw ASGI upload path."""

from __future__ import annotations

import json
import re
from typing import Any

from common.errors import ErrorCode, RegistryError
from common.grammar import Header

JSON_TYPE = "application/json"
_RANGE_PART_RE = re.compile(r"(\d*)-(\d*)")
#: More parts than this in one Range header and the header is ignored (the whole blob is sent).
MAX_RANGES = 64
_CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/(?:\d+|\*))?")


def error_body(exc: RegistryError) -> bytes:
    return json.dumps(exc.body()).encode()


def error_headers(exc: RegistryError) -> dict[str, str]:
    headers = {"Content-Type": JSON_TYPE, Header.API_VERSION: "registry/2.0"}
    headers.update(exc.headers)
    return headers


def parse_ranges(value: str | None, size: int) -> list[tuple[int, int]] | None:
    """A blob GET ``Range`` → [(start, end exclusive), ...]; None = serve it all.

    Unsatisfiable parts are dropped; if none is left: 416 with ``Content-Range: bytes */size``.
    Overlapping and adjacent parts are merged; a set asking for more bytes than the blob holds is
    answered with the whole blob (200), so a short header cannot multiply the bytes sent.
    Malformed or foreign headers (and more than MAX_RANGES parts) are ignored, as RFC 9110 allows.
    """
    if not value or not value.strip().startswith("bytes="):
        return None
    parts = value.strip()[len("bytes="):].split(",")
    if len(parts) > MAX_RANGES:
        return None
    ranges: list[tuple[int, int]] = []
    for part in parts:
        match = _RANGE_PART_RE.fullmatch(part.strip())
        if not match or match.groups() == ("", ""):
            return None
        first, last = match.groups()
        if first == "":
            suffix = int(last)
            if suffix > 0 and size > 0:
                ranges.append((max(0, size - suffix), size))
            continue
        start = int(first)
        end = int(last) + 1 if last else size
        if last and end <= start:
            if len(parts) > 1:
                return None  # an invalid part invalidates the header: serve it all
            raise _unsatisfiable(value, size)
        if start < size:
            ranges.append((start, min(end, size)))
    if not ranges:
        raise _unsatisfiable(value, size)
    if sum(end - start for start, end in ranges) > size:
        return None  # asks for more than the blob (overlaps): the whole blob once is cheaper
    return _coalesce(ranges)


def _coalesce(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping and adjacent ranges (RFC 9110 §14.2), so no byte is sent twice.

    Parts keep the order the client asked for; a merged part takes the place of its first member.
    """
    order = sorted(range(len(ranges)), key=lambda i: ranges[i])
    groups: list[list[int]] = []  # [start, end, first index]
    for i in order:
        start, end = ranges[i]
        if groups and start <= groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], end)
            groups[-1][2] = min(groups[-1][2], i)
        else:
            groups.append([start, end, i])
    return [(start, end) for start, end, _ in sorted(groups, key=lambda g: g[2])]


def _unsatisfiable(value: str, size: int) -> RegistryError:
    return RegistryError(ErrorCode.RANGE_INVALID, detail={"range": value[:100], "size": size},
                         headers={"Content-Range": f"bytes */{size}"})


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
