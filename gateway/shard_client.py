"""The gateway's side of the wire: one DEALER socket per shard, one reader task per socket.

``call`` sends one request and awaits its reply (by request id), with a timeout: a shard that
does not answer becomes a 503 with ``Retry-After``, never a hang. Sockets use
``ZMQ_IMMEDIATE`` so that nothing queues for a shard that is down (a restarted shard never
sees stale requests); ZeroMQ reconnects by itself when the shard comes back.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import struct
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, TypeVar, cast

import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from common import curvekeys, messages
from common.config import Config
from common.errors import ErrorCode, RegistryError
from common.messages import RepoScoped
from common.protocol import FRAME_SIZE, OK, WINDOW, Rep, Reply, Req, Request, pack, unpack
from common.requestid import to_message_id
from common.ring import shard_for

log = logging.getLogger("shardreg.gateway")
RETRY_AFTER = "5"
COPY_THRESHOLD = 512 * 1024
RepoReq = TypeVar("RepoReq", bound=RepoScoped)
#: How long a request waits for a shard connection before answering 503.
CONNECT_GRACE = 1.0
#: A refused CURVE handshake is logged at most this often per shard (ZeroMQ retries every second).
HANDSHAKE_LOG_INTERVAL = 30.0


def unavailable(shard: int, why: str) -> RegistryError:
    return RegistryError(ErrorCode.UNAVAILABLE, f"shard {shard} is unavailable ({why}), retry later",
                         headers={"Retry-After": RETRY_AFTER})


class ShardCallObserver(Protocol):
    """Told of every round trip (the metrics series, when metrics are on)."""

    def observe_shard_call(self, op: str, seconds: float) -> None: ...

    def shard_timeout(self, op: str) -> None: ...


class ShardClient:
    def __init__(self, config: Config, observer: ShardCallObserver | None = None) -> None:
        self.config = config
        self.observer = observer
        self.count = config.cluster.shards
        self.timeout = config.cluster.request_timeout
        # its own context (one client per worker process): nothing is shared with, or left behind by,
        # another client in the same process
        self.ctx = zmq.asyncio.Context()
        self.sockets: list[zmq.asyncio.Socket] = []
        self.readers: list[asyncio.Task] = []
        self.pending: dict[bytes, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._prefix = struct.pack(">I", os.getpid() & 0xFFFFFFFF)
        keys = curvekeys.client_keys(config)  # tcp without keys: ConfigError (unless cluster.insecure)
        for index in range(self.count):
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 100_000)
            sock.setsockopt(zmq.RCVHWM, 0)
            sock.setsockopt(zmq.RECONNECT_IVL, 100)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            # tcp: notice a shard whose host vanished without closing the connection
            sock.setsockopt(zmq.HEARTBEAT_IVL, 2000)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
            # Socket reads arrive as ~64 KiB chunks: copying those is cheaper than zero-copy
            # bookkeeping (pyzmq's GC thread); only really large frames go without a copy.
            sock.copy_threshold = COPY_THRESHOLD
            if keys is not None:  # CURVE: the shard must hold this public key; it admits ours by ZAP
                assert keys.pair.secret is not None
                sock.curve_serverkey = keys.servers[index]
                sock.curve_publickey = keys.pair.public
                sock.curve_secretkey = keys.pair.secret
            sock.connect(config.shard_endpoint(index))
            self.sockets.append(sock)
        loop = asyncio.get_running_loop()
        self.readers = [loop.create_task(self._read(i)) for i in range(self.count)]
        self.readers += [loop.create_task(self._watch(i)) for i in range(self.count)]

    async def _watch(self, index: int) -> None:
        """Fail the requests in flight to a shard as soon as its connection drops (a crash):
        callers answer 503 at once instead of waiting for their timeout."""
        refused = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        monitor = self.sockets[index].get_monitor_socket(zmq.EVENT_DISCONNECTED | refused)
        last_refusal = -HANDSHAKE_LOG_INTERVAL
        try:
            while True:
                event = await recv_monitor_message(monitor)
                if event["event"] & refused:  # wrong keys: say so, but not on every reconnect
                    if time.monotonic() - last_refusal >= HANDSHAKE_LOG_INTERVAL:
                        last_refusal = time.monotonic()
                        log.error("shard %d refused the CURVE handshake: check cluster.gatewayKey (is its public key "
                                  "admitted by the shard?) and cluster.shardKey (the shard's public key)", index)
                    continue
                if event["event"] != zmq.EVENT_DISCONNECTED:
                    continue
                lost = [f for f in self.pending.values() if getattr(f, "shard", None) == index and not f.done()]
                for future in lost:
                    future.set_exception(unavailable(index, "connection lost"))
                if lost:
                    log.warning("shard %d disconnected; failed %d requests in flight", index, len(lost))
        except (asyncio.CancelledError, zmq.ZMQError):
            return
        finally:
            monitor.close(0)

    def shard_of(self, repo: str) -> int:
        return shard_for(repo, self.count, self.config.cluster.hash_seed)

    async def _read(self, index: int) -> None:
        sock = self.sockets[index]
        while True:
            try:
                msg = await sock.recv_multipart(copy=False)
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError as exc:
                if exc.errno == zmq.ETERM:
                    return
                log.warning("shard %d socket error: %s", index, exc)
                await asyncio.sleep(0.1)
                continue
            if len(msg) < 3:
                continue
            future = self.pending.pop(msg[0].bytes, None)
            if future is None or future.done():
                continue  # the caller timed out long ago
            if self.observer is not None:
                self.observer.observe_shard_call(future.op, time.perf_counter() - future.sent)  # type: ignore[attr-defined]
            try:
                result = unpack(msg[2].buffer)
            except Exception as exc:  # noqa: BLE001
                future.set_exception(RegistryError(ErrorCode.INTERNAL, f"bad reply: {exc}"))
                continue
            if msg[1].bytes == OK:
                future.set_result(Reply(result, msg[3:]))
            else:
                future.set_exception(RegistryError.from_wire(result))

    async def send(self, shard: int, request: Request[Req, Rep], frames: Sequence[Any] = ()) -> asyncio.Future:
        """Send one request; the returned future resolves to its :class:`Reply`.

        With ZMQ_IMMEDIATE a send fails at once while the shard is not connected; we retry
        for up to CONNECT_GRACE seconds (a shard restarting, a worker just started) and
        then answer 503.
        """
        rid = to_message_id(self._prefix + struct.pack(">Q", next(self._ids)))  # + the HTTP request's id
        op = request.wire.op.value
        message = [rid, op.encode(), pack(request.args), *frames]
        deadline = None
        while True:
            # zmq.asyncio resolves a NOBLOCK send at once, reporting EAGAIN in the returned future
            sent = cast(asyncio.Future, self.sockets[shard].send_multipart(message, flags=zmq.NOBLOCK, copy=False))
            failure = sent.exception() if sent.done() else None
            if failure is None:
                break
            if not isinstance(failure, zmq.Again):
                raise unavailable(shard, f"send failed: {failure}")
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + CONNECT_GRACE
            if loop.time() >= deadline:
                raise unavailable(shard, "not connected")
            await asyncio.sleep(0.02)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        future.rid, future.shard = rid, shard  # type: ignore[attr-defined]
        future.op, future.sent = op, time.perf_counter()  # type: ignore[attr-defined]
        self.pending[rid] = future
        return future

    async def wait(self, shard: int, future: asyncio.Future, timeout: float | None = None) -> Reply[Any]:
        try:
            return await asyncio.wait_for(future, timeout or self.timeout)
        except TimeoutError:
            if self.observer is not None:
                self.observer.shard_timeout(future.op)  # type: ignore[attr-defined]
            raise unavailable(shard, "timed out") from None
        finally:
            self.pending.pop(getattr(future, "rid", b""), None)

    async def call(self, shard: int, request: Request[Req, Rep], frames: Sequence[Any] = (),
                   timeout: float | None = None) -> Reply[Rep]:
        return await self.wait(shard, await self.send(shard, request, frames), timeout)

    async def call_repo(self, request: Request[RepoReq, Rep], frames: Sequence[Any] = (),
                        timeout: float | None = None) -> Reply[Rep]:
        """Call the shard that owns the request's repository."""
        return await self.call(self.shard_of(request.args["repo"]), request, frames, timeout)

    async def call_all(self, request: Request[Req, Rep], timeout: float | None = None) -> list[Reply[Rep]]:
        return list(await asyncio.gather(*(self.call(i, request, timeout=timeout) for i in range(self.count))))

    async def read_blob(self, shard: int, digest: str, start: int, end: int) -> AsyncIterator[Any]:
        """Stream bytes ``start..end`` (exclusive) of a blob, keeping WINDOW reads in flight."""
        inflight: list[asyncio.Future] = []
        pos = start
        try:
            while pos < end or inflight:
                while pos < end and len(inflight) < WINDOW:
                    length = min(FRAME_SIZE, end - pos)
                    inflight.append(await self.send(shard, messages.BLOB_READ(
                        {"digest": digest, "offset": pos, "length": length})))
                    pos += length
                reply = await self.wait(shard, inflight.pop(0))
                yield reply.frames[0]
        finally:
            for future in inflight:
                self.pending.pop(getattr(future, "rid", b""), None)
                future.cancel()

    def close(self) -> None:
        for task in self.readers:
            task.cancel()
        for sock in self.sockets:
            sock.close(0)
        self.ctx.destroy(0)
