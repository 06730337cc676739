"""What a blob or manifest read needs from its request, and what it answers: shared by the Quart views
and the read fast path (:mod:`gateway.distribution.reads`), so both serve exactly the same answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from quart import Response, request

from gateway.auth.identity import HeaderMap


@dataclass(frozen=True)
class ReadRequest:
    """The parts of a GET/HEAD a read looks at."""

    method: str
    headers: HeaderMap
    #: Every ``Accept`` header, joined with ", ".
    accept: str
    range: str | None
    remote_addr: str | None
    scope: Mapping[str, Any]

    @classmethod
    def from_quart(cls) -> ReadRequest:
        return cls(request.method, request.headers, ", ".join(request.headers.getlist("Accept")),
                   request.headers.get("Range"), request.remote_addr, request.scope)


@dataclass
class Answer:
    """Status, content type, headers (``Content-Length`` included) and body (bytes, or an async iterator
    of bytes and :class:`~gateway.zerocopy.FileRegion` parts)."""

    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes | AsyncIterator[Any]
    #: Whether the body's parts wait on another process (a shard, an upstream registry): the read fast
    #: path then stops reading them as soon as the client disconnects. A blob file sent zero-copy does
    #: not wait (its region is written, or the write fails), and is sent without a watch.
    waits: bool = True


def quart_response(answer: Answer) -> Response:
    response = Response(answer.body, status=answer.status, content_type=answer.content_type)
    response.headers.update(answer.headers)
    return response
