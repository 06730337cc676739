"""What the gateway changes in Hypercorn's HTTP/1.1 connections: the keep-alive wait as a timer
(gateway/connections.py), a response's head written with what follows it (gateway/zerocopy_server.py),
and bodiless reads run in the connection's reader task (gateway/inline_requests.py).

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
from types import SimpleNamespace
from typing import Any

import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config

from gateway import connections, inline_requests, zerocopy_server
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


class _InlineApp:
    """Asks for ``/inline/...`` to run in the reader task (as the gateway asks for its reads): ``/inline/ok``
    answers at once; ``/inline/body`` echoes its body; ``/inline/fail`` fails; ``/inline/watch`` sends part
    of a body, then waits for the client to leave (as a body streamed from a shard does);
    ``/inline/watch-then-answer`` watches in a task of its own while it answers, then stops watching.
    Anything else is the plain app's."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, asyncio.Task[Any] | None]] = []
        self.received: list[str] = []

    def serves_inline(self, scope: dict[str, Any]) -> bool:
        return bool(scope["path"].startswith("/inline"))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        self.tasks.append((path, asyncio.current_task()))
        if path == "/inline/fail":
            raise RuntimeError("the application failed")
        if path == "/inline/body":
            body = (await receive())["body"]
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if path.startswith("/inline/watch"):
            assert (await receive())["type"] == "http.request"  # the request's (empty) body first
        if path == "/inline/watch":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
            await send({"type": "http.response.body", "body": b"first", "more_body": True})
            self.received.append((await asyncio.wait_for(receive(), 10))["type"])
            return
        if path == "/inline/watch-then-answer":
            async def watch() -> None:
                self.received.append((await receive())["type"])
            watching = asyncio.ensure_future(watch())
            await asyncio.sleep(0.1)
            watching.cancel()
        await _app(scope, receive, send)


def _counting_iterations(monkeypatch: pytest.MonkeyPatch, port: Callable[[], int]) -> tuple[list[int], list[int]]:
    """(iteration of each read of the server's socket, iteration of each response head written)."""
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
        if transport.get_extra_info("sockname")[1] == port():
            arrived.append(iterations)
        received(transport)

    def on_write(transport: Any, data: Any) -> None:
        if transport.get_extra_info("sockname")[1] == port() and bytes(data[:8]) == b"HTTP/1.1":
            answered.append(iterations)
        write(transport, data)

    monkeypatch.setattr(asyncio.BaseEventLoop, "_run_once", counting)
    monkeypatch.setattr(selector_events._SelectorSocketTransport, "_read_ready__data_received", on_received)
    monkeypatch.setattr(selector_events._SelectorSocketTransport, "write", on_write)
    return arrived, answered


@pytest.mark.parametrize(("path", "iterations"), [("/", 2), ("/inline/ok", 1)])
def test_a_request_is_answered_within_two_loop_iterations_of_its_bytes(monkeypatch: pytest.MonkeyPatch, path: str,
                                                                      iterations: int) -> None:
    """Hypercorn's own wait took seven: five went to cancelling the idle task (two tasks) first. A request
    the application runs in the reader task saves the iteration its own task waited to start."""
    port = 0
    arrived, answered = _counting_iterations(monkeypatch, lambda: port)

    async def main() -> None:
        nonlocal port
        async with _server(app=_InlineApp()) as (bound, _, _):
            port = bound
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(20):
                writer.write(REQUEST.replace(b"GET / ", f"GET {path} ".encode()))
                assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
            writer.close()

    asyncio.run(main())
    assert len(answered) == 20 and len(arrived) >= 20  # (the last read is the client's end of input)
    assert [a - r for r, a in zip(arrived[:20], answered, strict=True)] == [iterations] * 20


def test_inline_requests_run_in_the_connections_task_and_others_in_their_own() -> None:
    app = _InlineApp()

    async def main() -> None:
        async with _server(app=app) as (port, _, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for path in ("/inline/ok", "/", "/inline/ok", "/"):
                writer.write(REQUEST.replace(b"GET / ", f"GET {path} ".encode()))
                assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
            writer.write(b"HEAD /inline/ok HTTP/1.1\r\nHost: registry\r\n\r\n")
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            # a GET with a body is not run inline, whatever the application says: its body is read first
            writer.write(b"GET /inline/body HTTP/1.1\r\nHost: registry\r\nContent-Length: 4\r\n\r\nabcd")
            assert (await reader.readuntil(b"abcd")).startswith(b"HTTP/1.1 200")
            # pipelined: three in one write, answered in order
            writer.write(b"".join(f"GET /inline/ok HTTP/1.1\r\nHost: r\r\nX-N: {n}\r\n\r\n".encode() for n in range(3)))
            for _ in range(3):
                assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
            writer.close()

    asyncio.run(main())
    inline = {task for path, task in app.tasks if path == "/inline/ok"}
    assert len(inline) == 1 and len([p for p, _ in app.tasks if p == "/inline/ok"]) == 6  # GETs, HEAD, pipelined
    others = [task for path, task in app.tasks if path in ("/", "/inline/body")]
    assert len(others) == 3 and len(set(others)) == 3 and not inline & set(others)


def test_an_inline_request_learns_that_its_client_left() -> None:
    """The reader cannot watch the socket while it runs the application: a ``receive`` that waits watches
    the transport itself, and the connection works on after it stopped watching."""
    app = _InlineApp()

    async def main() -> None:
        async with _server(app=app) as (port, _, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /inline/watch-then-answer HTTP/1.1\r\nHost: registry\r\n\r\n")
            assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
            for _ in range(2):  # the watch is gone: requests, then the end of input, reach the connection
                writer.write(REQUEST)
                assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200")
            writer.write_eof()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at the end of input
            writer.close()
            assert app.received == []  # the watch saw nothing: the client was there throughout
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /inline/watch HTTP/1.1\r\nHost: registry\r\n\r\n")
            assert (await reader.readuntil(b"first")).startswith(b"HTTP/1.1 200")
            writer.close()  # gone mid-body
            for _ in range(100):
                if app.received:
                    break
                await asyncio.sleep(0.05)

    asyncio.run(main())
    assert app.received == ["http.disconnect"]


def test_an_inline_application_that_fails_is_a_500() -> None:
    async def main() -> None:
        async with _server(app=_InlineApp()) as (port, _, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /inline/fail HTTP/1.1\r\nHost: registry\r\n\r\n")
            assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 500")
            writer.close()

    asyncio.run(main())


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


def test_the_input_watch_forwards_everything_and_leaves_the_connections_protocol_as_it_was() -> None:
    """The watch a waiting ``receive`` installs: the connection's own protocol still gets every byte,
    is back in place when the wait ends (here by a timeout), and the end of input is a disconnect."""

    async def main() -> None:
        accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        server = await asyncio.start_server(lambda r, w: accepted.put_nowait((r, w)), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        _, client = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = await accepted.get()
        own = writer.transport.get_protocol()
        run = inline_requests.InlineRun(None, None, None, None, None, SimpleNamespace(reader=reader, writer=writer))
        waiting = asyncio.ensure_future(run.receive())
        await asyncio.sleep(0.05)
        assert isinstance(writer.transport.get_protocol(), inline_requests._InputWatch)
        client.write(b"pipelined")
        await asyncio.sleep(0.05)
        assert not waiting.done()  # bytes are no disconnect
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert writer.transport.get_protocol() is own
        assert await reader.readexactly(9) == b"pipelined"  # forwarded to the connection's reader
        waiting = asyncio.ensure_future(run.receive())
        await asyncio.sleep(0.05)
        client.close()
        assert (await asyncio.wait_for(waiting, 5))["type"] == "http.disconnect"
        assert writer.transport.get_protocol() is own
        writer.close()
        server.close()
        await server.wait_closed()

    asyncio.run(main())
