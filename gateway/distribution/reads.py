"""The read fast path: ``GET``/``HEAD`` of ``/v2/<name>/blobs/<digest>`` and ``/v2/<name>/manifests/<ref>``
served as plain ASGI, without building a Quart request.

These are most of a registry's requests (a CI pull is a manifest GET, then config and layer GETs,
and every ``docker pull`` of a cached image is HEADs). Through Quart each paid for a request object
and context, werkzeug routing and a response object: beyond the shard round trip, most of what a
gateway worker spent on a HEAD (py-spy, docs/performance.md). Here the path is matched once and the same answer
functions the Quart views use (:func:`~gateway.distribution.blobs.blob_answer`,
:func:`~gateway.distribution.manifests.manifest_answer`) produce the status, headers and body, sent
as ASGI messages; errors are rendered as the Quart app renders them. Anything that is not exactly
such a request (another method, a name that is not a valid repository name, a trailing slash, a
request with a body) is left to Quart, which keeps serving those routes too.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from werkzeug.utils import get_content_type

from common.errors import ErrorCode, RegistryError
from common.grammar import MAX_NAME_LENGTH, NAME_RE
from gateway.distribution.answer import Answer, ReadRequest
from gateway.distribution.blobs import blob_answer
from gateway.distribution.manifests import manifest_answer
from gateway.httputil import error_body, error_headers
from gateway.state import GatewayState

log = logging.getLogger("shardreg.gateway")

_PATH = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>blobs|manifests)/(?P<ref>[^/]+)$")
_METHODS = frozenset({"GET", "HEAD"})
AnswerFn = Callable[[GatewayState, ReadRequest, str, str], Awaitable[Answer]]
_ANSWERS: dict[str, AnswerFn] = {"blobs": blob_answer, "manifests": manifest_answer}


def match(scope: dict[str, Any]) -> tuple[AnswerFn, str, str] | None:
    """(answer function, name, reference) when the fast path serves this request, else None."""
    if scope["method"] not in _METHODS:
        return None
    found = _PATH.match(scope["path"])
    if found is None:
        return None
    name = found.group("name")
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.fullmatch(name):
        return None  # Quart answers it (the same NAME_INVALID, or its own 404 for what is no route)
    return _ANSWERS[found.group("kind")], name, found.group("ref")


def _read_request(scope: dict[str, Any]) -> ReadRequest | None:
    """The request's view, or None if it carries a body (left to Quart, which drains it)."""
    headers: dict[str, str] = {}
    accept: list[str] = []
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "accept":
            accept.append(value)
        elif name in ("content-length", "transfer-encoding") and value.strip() != "0":
            return None
        headers.setdefault(name, value)  # the first of repeated headers, as werkzeug's get() answers
    client = scope.get("client")
    return ReadRequest(scope["method"], headers, ", ".join(accept), headers.get("range"),
                       client[0] if client else None, scope)


def _encode(content_type: str, headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    out = [(b"content-type", get_content_type(content_type, "utf-8").encode())]
    out += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    return out


async def serve(state: GatewayState, found: tuple[AnswerFn, str, str], scope: dict[str, Any], receive: Any,
                send: Any, fallback: Callable[[], Awaitable[None]]) -> None:
    """Answer one matched request; ``fallback`` (Quart) serves it instead when it carries a body."""
    request = _read_request(scope)
    if request is None:
        await fallback()
        return
    answer_fn, name, ref = found
    try:
        answer = await answer_fn(state, request, name, ref)
    except RegistryError as exc:
        answer = Answer(exc.status, "text/html", {**error_headers(exc)}, error_body(exc))
    except Exception:
        log.exception("unhandled error")
        internal = RegistryError(ErrorCode.INTERNAL)
        answer = Answer(internal.status, "text/html", {**error_headers(internal)}, error_body(internal))
    body = answer.body
    headers = answer.headers
    if isinstance(body, bytes) and "Content-Length" not in headers:
        headers["Content-Length"] = str(len(body))
    encoded = _encode(answer.content_type, headers)
    if answer.content_type == "text/html":  # an error: its Content-Type is in its headers
        encoded = encoded[1:]
    await send({"type": "http.response.start", "status": answer.status, "headers": encoded})
    if isinstance(body, bytes):
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return
    if answer.waits:
        await _stream(body, receive, send)
    else:
        await _send_parts(body, send)


async def _send_parts(body: AsyncIterator[Any], send: Any) -> None:
    """Send a streamed body's parts, then its end; the body is closed whatever happens."""
    try:
        async for part in body:
            await send({"type": "http.response.body", "body": part, "more_body": True})
    finally:
        await body.aclose()  # type: ignore[attr-defined]  # the file closes even if the client went away
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _stream(body: AsyncIterator[Any], receive: Any, send: Any) -> None:
    """Send a body whose parts wait on another process; stop reading it (shard frames, an upstream) as
    soon as the client disconnects."""

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        streaming.cancel()

    streaming = asyncio.ensure_future(_send_parts(body, send))
    watching = asyncio.ensure_future(watch())
    try:
        await streaming
    except asyncio.CancelledError:
        if not watching.done():
            raise  # this request itself was cancelled
    finally:
        streaming.cancel()
        watching.cancel()
