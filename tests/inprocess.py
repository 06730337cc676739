"""A whole registry inside the test process: the real gateway app and real shards, no processes.

:class:`InProcessRegistry` runs, on an event loop of its own thread, the gateway's ASGI app
(``gateway.app.create_app``) and ``cluster.shards`` shard servers (``shard.server.ShardServer``)
with real LMDB and blob files in a temporary directory; gateway and shards talk over ZeroMQ
as in production. Tests drive it with an ordinary synchronous ``httpx.Client`` whose transport
hands each request to the app on that loop, so a test written for a real cluster runs
unchanged on it, without starting processes or opening TCP ports.

Only the public entry points are used (``create_app``, ``ShardServer(config, i).serve()`` and
``close()``, ``parse_config``), so the fixture does not depend on how the packages are split.

What it is not: there is no HTTP server. Hypercorn's own behaviour (HTTP parsing, keep-alive,
TLS, HTTP/2, connection limits, a client that vanishes mid-body) and process life (restarts,
signals, crashes) need :class:`tests.cluster.Cluster`. Response bodies are delivered whole,
not streamed.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

import httpx

from common import messages
from common.config import Config, parse_config
from gateway.app import create_app
from shard.server import ShardServer

log = logging.getLogger("tests.inprocess")
T = TypeVar("T")
Message = dict[str, Any]
ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Coroutine[Any, Any, None]]
#: The address tests see in URLs (nothing listens there: requests never leave the process).
BASE_URL = "http://registry.test"
#: Longest a single request may take before the test fails instead of hanging.
REQUEST_TIMEOUT = 120.0
#: Longest start-up may take (the shards open LMDB; a machine busy with disk I/O can be slow).
START_TIMEOUT = 60.0


class ASGIRequestError(Exception):
    """The app broke the ASGI protocol or never answered."""


async def call_asgi(app: ASGIApp, request: httpx.Request, body: list[bytes],
                    client: tuple[str, int] = ("127.0.0.1", 40000)) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Serve one HTTP/1.1 request with ``app``: (status, headers, body), as Hypercorn would hand it over."""
    url = request.url
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": request.method, "scheme": url.scheme, "path": url.path,
        "raw_path": url.raw_path.split(b"?", 1)[0], "query_string": url.query, "root_path": "",
        "headers": [(name.lower(), value) for name, value in request.headers.raw],
        "client": client, "server": (url.host, url.port or 80), "extensions": {},
    }
    chunks = [chunk for chunk in body if chunk]
    body_read = False
    answered = asyncio.Event()
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = []
    parts: list[bytes] = []

    async def receive() -> Message:
        # as Hypercorn: each chunk with more_body, then an empty last message
        nonlocal body_read
        if chunks:
            return {"type": "http.request", "body": chunks.pop(0), "more_body": True}
        if not body_read:
            body_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await answered.wait()  # the client stays connected until the response is out
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            if status is not None:
                raise ASGIRequestError("response started twice")
            status = message["status"]
            headers.extend((bytes(k), bytes(v)) for k, v in message.get("headers", []))
        elif message["type"] == "http.response.body":
            if status is None or answered.is_set():
                raise ASGIRequestError("body outside a response")
            if request.method != "HEAD":
                parts.append(bytes(message.get("body", b"")))
            if not message.get("more_body", False):
                answered.set()

    try:
        await app(scope, receive, send)
    except Exception:
        if status is not None:
            raise
        log.exception("app failed before answering")  # Hypercorn answers 500 then
        return 500, [(b"content-length", b"0")], b""
    if status is None or not answered.is_set():
        raise ASGIRequestError(f"{request.method} {url}: the app returned without a complete response")
    return status, headers, b"".join(parts)


class InProcessTransport(httpx.BaseTransport):
    """A synchronous httpx transport that serves requests with an ASGI app on another thread's loop."""

    def __init__(self, registry: InProcessRegistry) -> None:
        self.registry = registry

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = list(request.stream)  # type: ignore[arg-type]  # a sync client's stream is iterable
        status, headers, content = self.registry.run(call_asgi(self.registry.app, request, body))
        return httpx.Response(status, headers=headers, stream=httpx.ByteStream(content), request=request)


class InProcessRegistry:
    """The gateway app and its shards on one event loop in a background thread (see the module docstring)."""

    def __init__(self, *, shards: int = 2, config: dict[str, Any] | None = None) -> None:
        # short: a shard's ipc socket path (<root>/run/shard-N.sock) must fit in sun_path
        self.root = Path(tempfile.mkdtemp(prefix="sr-", dir="/tmp"))
        document = dict(config or {})
        document["storage"] = {**document.get("storage", {}), "rootDirectory": str(self.root / "data")}
        document["cluster"] = {**document.get("cluster", {}), "shards": shards}
        self.config: Config = parse_config(document)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="inprocess-registry", daemon=True)
        self.shards: list[ShardServer] = []
        self.serving: list[asyncio.Task[None]] = []
        self.lifespan: asyncio.Task[None] | None = None
        self.lifespan_inbox: asyncio.Queue[Message] | None = None
        self.lifespan_outbox: asyncio.Queue[Message] | None = None
        self.url = BASE_URL
        self.app: ASGIApp  # created on the loop, by start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = REQUEST_TIMEOUT) -> T:
        """Run ``coro`` on the registry's loop and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            raise TimeoutError(f"the in-process registry did not answer within {timeout}s") from None

    def start(self) -> InProcessRegistry:
        self.thread.start()
        try:
            self.run(self._start(), START_TIMEOUT + 30)
        except BaseException:
            self.stop()
            raise
        return self

    async def _start(self) -> None:
        for index in range(self.config.cluster.shards):
            server = ShardServer(self.config, index)
            self.shards.append(server)
            self.serving.append(asyncio.get_running_loop().create_task(server.serve()))
        await self._wait_bound()
        self.app = create_app(self.config)
        await self._lifespan("startup")
        await self._wait_ready()

    async def _wait_bound(self, timeout: float = START_TIMEOUT) -> None:
        """Let the shards bind before the gateway connects, as the supervisor starts them first.

        (A DEALER that connects to an ipc path before it exists is meant to retry, but in one
        process we saw it stay unconnected about once in 40 starts.)"""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        paths = [Path(self.config.shard_bind(i)[len("ipc://"):]) for i in range(self.config.cluster.shards)
                 if self.config.shard_bind(i).startswith("ipc://")]
        while not all(p.exists() for p in paths):
            for task in self.serving:
                if task.done():
                    task.result()
            if loop.time() > deadline:
                raise RuntimeError(f"in-process shards did not bind within {timeout}s")
            await asyncio.sleep(0.005)

    async def _lifespan(self, phase: str) -> None:
        """ASGI lifespan events, as Hypercorn sends them to each worker's app."""
        if self.lifespan is None:
            inbox: asyncio.Queue[Message] = asyncio.Queue()
            outbox: asyncio.Queue[Message] = asyncio.Queue()
            self.lifespan_inbox, self.lifespan_outbox = inbox, outbox
            scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
            self.lifespan = asyncio.get_running_loop().create_task(self.app(scope, inbox.get, outbox.put))
        assert self.lifespan_inbox is not None and self.lifespan_outbox is not None
        await self.lifespan_inbox.put({"type": f"lifespan.{phase}"})
        reply = await asyncio.wait_for(self.lifespan_outbox.get(), 30)
        if reply["type"] != f"lifespan.{phase}.complete":
            raise RuntimeError(f"gateway lifespan {phase} failed: {reply}")

    async def _wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        probe = httpx.Request("GET", f"{self.url}/readyz")
        while True:
            for task in self.serving:
                if task.done():
                    task.result()  # a shard that failed to start: raise its error
            status, _, body = await call_asgi(self.app, probe, [])
            if status == 200:
                return
            if loop.time() > deadline:
                raise RuntimeError(f"in-process registry not ready after {timeout}s: {status} {body!r}")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.thread.is_alive():
            try:
                self.run(self._stop(), 60)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(30)
        if not self.loop.is_running():
            self.loop.close()
        shutil.rmtree(self.root, ignore_errors=True)

    async def _stop(self) -> None:
        if self.lifespan is not None:
            try:
                await self._lifespan("shutdown")
            finally:
                self.lifespan.cancel()
        for task in self.serving:
            task.cancel()
        for server in self.shards:
            server.close()
        # whatever the servers left behind (maintenance loops, reader tasks) ends with the loop
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def settle(self) -> None:
        """Wait until every shard has handled what the gateway sent it so far — e.g. the pulls it
        tells after answering manifest GETs itself (``manifest.pulls``): a ping through the
        gateway's own socket to each shard sends them first, and is answered after them."""
        async def ping_all() -> None:
            client = self.app.state.client  # type: ignore[attr-defined]
            for index in range(len(self.shards)):
                await client.call(index, messages.PING({}))

        self.run(ping_all())

    def client(self, **kwargs: Any) -> httpx.Client:
        """A client of this registry; ``kwargs`` as for ``httpx.Client`` (headers, timeout, ...)."""
        kwargs.setdefault("timeout", 60)
        return httpx.Client(base_url=self.url, transport=InProcessTransport(self), **kwargs)

    def __enter__(self) -> InProcessRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def registry_client(**settings: Any) -> Iterator[httpx.Client]:
    """A started registry (``InProcessRegistry(**settings)``) and a client of it, for fixtures."""
    with InProcessRegistry(**settings) as registry, registry.client() as client:
        yield client
