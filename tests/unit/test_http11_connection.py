"""What the gateway changes in Hypercorn's HTTP/1.1 connections: the keep-alive wait as a timer
(gateway/connections.py), and a response's head written with what follows it (gateway/zerocopy_server.py).

A real Hypercorn server on a loopback port, in this process, serving small ASGI apps with the
gateway's connection handling installed, as every gateway worker does; clients are plain sockets on
the same loop.
"""

from __future__ import annotations

import asyncio
import socket
import time
from asyncio import selector_events
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from gateway import connections, zerocopy_server
from gateway.zerocopy import MESSAGE

REQUEST = b"GET / HTTP/1.1\r\nHost: registry\r\n\r\n"


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/slow":
        await asyncio.sleep(0.5)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(autouse=True)
def installed() -> None:
    connections.install()  # idempotent; what every gateway worker does first
    zerocopy_server.install()


@asynccontextmanager
async def _server(keep_alive: float = 75.0, app: Any = _app) -> AsyncIterator[tuple[int, Callable[[], None], asyncio.Task]]:
    """A running server: (port, stop, the serving task)."""
    sock = socket.create_server(("127.0.0.1", 0))
    config = Config()
    port = sock.getsockname()[1]
    config.bind = [f"fd://{sock.detach()}"]  # Hypercorn's own from here (it closes it)
    config.keep_alive_timeout = keep_alive
    config.graceful_timeout = 30
    config.errorlog = None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait, mode="asgi"))  # type: ignore[arg-type]
    try:
        yield port, stop.set, task
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(REQUEST)
    answer = await reader.readuntil(b"ok")
    assert answer.startswith(b"HTTP/1.1 200"), answer
    return answer


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closes the connection (fails the test after ``seconds``)."""
    started = time.monotonic()
    try:
        assert await asyncio.wait_for(reader.read(), seconds) == b""
    except TimeoutError:
        pytest.fail(f"the connection was still open after {seconds}s")
    return time.monotonic() - started


def test_a_request_is_answered_two_loop_iterations_after_its_bytes_arrive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hypercorn's own wait took seven: five went to cancelling the idle task (two tasks) first."""
    iterations = 0
    arrived: list[int] = []
    answered: list[int] = []
    run_once = asyncio.BaseEventLoop._run_once  # type: ignore[attr-defined]
    received = selector_events._SelectorSocketTransport._read_ready__data_received  # type: ignore[attr-defined]
    write = selector_events._SelectorSocketTransport.write  # type: ignore[attr-defined]

    def counting(loop: Any) -> None:
        nonlocal iterations
        iterations += 1
        run_once(loop)

    def on_received(transport: Any) -> None:
        if transport.get_extra_info("sockname")[1] == port:
            arrived.append(iterations)
        received(transport)

    def on_write(transport: Any, data: Any) -> None:
        if transport.get_extra_info("sockname")[1] == port and bytes(data[:8]) == b"HTTP/1.1":
            answered.append(iterations)
        write(transport, data)

    monkeypatch.setattr(asyncio.BaseEventLoop, "_run_once", counting)
    monkeypatch.setattr(selector_events._SelectorSocketTransport, "_read_ready__data_received", on_received)
    monkeypatch.setattr(selector_events._SelectorSocketTransport, "write", on_write)
    port = 0

    async def main() -> None:
        nonlocal port
        async with _server() as (bound, _, _):
            port = bound
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(20):
                await _ask(reader, writer)
            writer.close()

    asyncio.run(main())
    assert len(answered) == 20 and len(arrived) >= 20  # (the last read is the client's end of input)
    assert [a - r for r, a in zip(arrived[:20], answered, strict=True)] == [2] * 20


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout_and_a_request_restarts_it() -> None:
    async def main() -> None:
        async with _server(keep_alive=1.0) as (port, _, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(8):  # 2 s of requests 0.25 s apart: each one restarts the wait
                await _ask(reader, writer)
                await asyncio.sleep(0.25)
            assert 0.3 < await _closed_within(reader, 5)  # then 1 s idle (less the last 0.25 s)
            writer.close()
            # a connection that never sends a request is closed after the timeout too
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert 0.6 < await _closed_within(reader, 5)
            writer.close()

    asyncio.run(main())


def test_idle_connections_are_closed_at_once_when_the_worker_stops() -> None:
    async def main() -> None:
        async with _server(keep_alive=75) as (port, stop, task):
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            await _ask(*idle[0])
            await asyncio.sleep(0.1)
            stop()
            for reader, _ in idle:
                assert await _closed_within(reader, 5) < 5  # not the keep-alive timeout (75 s)
            await asyncio.wait_for(task, 5)  # nor the graceful timeout (30 s)
            for _, writer in idle:
                writer.close()

    asyncio.run(main())


def test_a_connection_whose_request_ends_after_the_stop_began_is_closed_after_its_answer() -> None:
    async def main() -> None:
        async with _server(keep_alive=75) as (port, stop, task):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST.replace(b"GET / ", b"GET /slow "))
            await asyncio.sleep(0.1)
            stop()  # while the request is in flight
            assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")  # answered
            assert await _closed_within(reader, 5) < 5  # then closed, not kept alive
            await asyncio.wait_for(task, 5)
            writer.close()

    asyncio.run(main())


def _answers(blob: Path) -> Any:
    """/small: 2 bytes; /empty: 201 and nothing; /parts: two parts; /file: ``blob`` as a file region
    (zero-copy); /late: a body 0.2 s after the head; /broken: a head, then the application fails."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await _answer(scope, send, blob)

    return app


async def _answer(scope: dict[str, Any], send: Any, blob: Path) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/file":
        assert MESSAGE in scope["extensions"]  # offered on plain HTTP/1.1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        with open(blob, "rb") as file:
            await send({"type": MESSAGE, "file": file, "offset": 0, "count": 5, "more_body": False})
        return
    if path in ("/late", "/broken"):  # a body that waits (a shard's stream), or never comes
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await asyncio.sleep(0.2)
        if path == "/broken":
            raise RuntimeError("the stream behind this body failed")
        await send({"type": "http.response.body", "body": b"late", "more_body": False})
        return
    body = {"/small": [b"ok"], "/empty": [], "/parts": [b"one", b"two"]}[path]
    length = str(sum(map(len, body))).encode()
    await send({"type": "http.response.start", "status": 201 if path == "/empty" else 200,
                "headers": [(b"content-length", length)]})
    for index, part in enumerate(body):
        await send({"type": "http.response.body", "body": part, "more_body": index < len(body) - 1})
        if index < len(body) - 1:
            await asyncio.sleep(0.05)  # the next part is not ready yet
    if not body:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def test_a_response_head_goes_out_with_what_follows_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One write per small answer (head and body, or head and end), not a segment for the head alone."""
    writes: list[bytes] = []
    write = selector_events._SelectorSocketTransport.write  # type: ignore[attr-defined]

    def recording(transport: Any, data: Any) -> None:
        if transport.get_extra_info("sockname")[1] == port:
            writes.append(bytes(data))
        write(transport, data)

    monkeypatch.setattr(selector_events._SelectorSocketTransport, "write", recording)
    (tmp_path / "blob").write_bytes(b"bytes")
    port = 0
    answers: dict[str, list[bytes]] = {}

    async def main() -> None:
        nonlocal port
        async with _server(app=_answers(tmp_path / "blob")) as (bound, _, _):
            port = bound
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for method, path, end in (("GET", "/small", b"ok"), ("HEAD", "/small", b"\r\n\r\n"),
                                      ("GET", "/empty", b"\r\n\r\n"), ("GET", "/parts", b"onetwo"),
                                      ("GET", "/file", b"bytes"), ("GET", "/late", b"late")):
                writes.clear()
                writer.write(f"{method} {path} HTTP/1.1\r\nHost: registry\r\n\r\n".encode())
                received = await reader.readuntil(end)
                answers[f"{method} {path}"] = [*writes, received]
            writer.close()

    asyncio.run(main())
    for key in ("GET /small", "HEAD /small", "GET /empty"):
        *written, received = answers[key]
        assert len(written) == 1 and written[0] == received, (key, written)
    *written, received = answers["GET /parts"]  # the head with the first part; the second when it comes
    assert len(written) == 2 and written[0].endswith(b"\r\n\r\none") and written[1] == b"two"
    *written, received = answers["GET /file"]  # the head, then the region with sendfile (not a write)
    assert len(written) == 1 and written[0].endswith(b"\r\n\r\n") and received == written[0] + b"bytes"
    *written, received = answers["GET /late"]  # a body that waits does not hold the head back
    assert len(written) == 2 and written[0].endswith(b"\r\n\r\n") and written[1] == b"late"


def test_a_response_whose_body_never_comes_still_sends_its_head_before_the_connection_ends(tmp_path: Path) -> None:
    """As before the head was held: the client sees the answer start and the body cut short (a pull-through
    blob that fails its digest check is answered that way), not a connection closed without a response."""

    async def main() -> None:
        async with _server(app=_answers(tmp_path)) as (port, _, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /broken HTTP/1.1\r\nHost: registry\r\n\r\n")
            received = await asyncio.wait_for(reader.read(), 10)  # until the server closes
            assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"\r\n\r\n"), received
            writer.close()

    asyncio.run(main())
