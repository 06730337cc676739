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
from common.clustermap import ClusterMap
from common.config import Config, ConfigError
from common.errors import ErrorCode, RegistryError
from common.messages import RepoScoped
from common.protocol import FRAME_SIZE, OK, WINDOW, Rep, Reply, Req, Request, pack, unpack
from common.requestid import to_message_id
from common.zmqctx import OwnedContext
from gateway.pull_notices import PullNotices

log = logging.getLogger("shardreg.gateway")
RETRY_AFTER = "5"
COPY_THRESHOLD = 512 * 1024
RepoReq = TypeVar("RepoReq", bound=RepoScoped)
#: How long a request waits for a shard connection before answering 503.
CONNECT_GRACE = 1.0
#: A refused CURVE handshake is logged at most this often per shard (ZeroMQ retries every second).
HANDSHAKE_LOG_INTERVAL = 30.0
#: More redirects than this for one request is a bug (or a resize stuck half-way): 503.
MAX_REDIRECTS = 8
#: How long a request keeps retrying a name that answers TRYAGAIN (being imported, or switching
#: owner: writes pause up to 1 s by design, longer on a loaded machine) before answering 503;
#: these retries do not count as redirects.
TRYAGAIN_BUDGET = 10.0
#: The first and the longest pause between two tries of a name answering TRYAGAIN.
TRYAGAIN_PAUSE, TRYAGAIN_MAX_PAUSE = 0.05, 0.25
#: How long a stopping worker waits for its shards to have the pulls it still holds.
DRAIN_TIMEOUT = 1.0
#: Names remembered as MOVED (per map epoch), so later requests go straight to the new owner.
HINTS = 65536


def unavailable(shard: int, why: str) -> RegistryError:
    return RegistryError(ErrorCode.UNAVAILABLE, f"shard {shard} is unavailable ({why}), retry later",
                         headers={"Retry-After": RETRY_AFTER})


async def _wait_switch(redirects: int, pause: float, until: float) -> tuple[int, float]:
    """Wait before trying a name again while its owner is switching (TRYAGAIN, or a shard that has a
    map the home has not yet): within the TRYAGAIN budget the try does not count as a redirect.
    Returns the redirect count and the next pause."""
    if time.monotonic() + pause <= until:
        redirects -= 1
    await asyncio.sleep(pause)
    return redirects, min(pause * 1.5, TRYAGAIN_MAX_PAUSE)


class ShardCallObserver(Protocol):
    """Told of every round trip (the metrics series, when metrics are on)."""

    def observe_shard_call(self, op: str, seconds: float) -> None: ...

    def shard_timeout(self, op: str) -> None: ...


class ShardClient:
    def __init__(self, config: Config, observer: ShardCallObserver | None = None) -> None:
        self.config = config
        self.observer = observer
        self.timeout = config.cluster.request_timeout
        # its own context (one client per worker process): nothing is shared with, or left behind by,
        # another client in the same process
        self.zmq = OwnedContext(self)
        self.sockets: list[zmq.asyncio.Socket] = []
        self.readers: list[asyncio.Task] = []
        self.pending: dict[bytes, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._prefix = struct.pack(">I", os.getpid() & 0xFFFFFFFF)
        self.keys = curvekeys.client_keys(config)  # tcp without keys: ConfigError (unless cluster.insecure)
        #: The cluster map this worker routes with; epoch 0 until the first answer says better.
        self.map = ClusterMap.stable(0, config.cluster.shards, config.cluster.hash_seed)
        self.hints: dict[str, tuple[int, int]] = {}
        self.redirects: dict[str, int] = {"moved": 0, "ask": 0, "stale_map": 0, "tryagain": 0}
        self._refreshing: asyncio.Task | None = None
        #: Manifest GETs answered in place, told to their shards in batches (gateway.pull_notices).
        self.pulls = PullNotices(self._tell_pulls)
        self._looked = -1.0
        for index in range(self.count):
            self._connect(index)

    def _connect(self, index: int) -> zmq.asyncio.Socket:
        """The socket to shard ``index`` (made when first needed: a resize adds shards)."""
        while len(self.sockets) <= index:
            i = len(self.sockets)
            try:
                endpoint = self.config.shard_endpoint(i)
            except IndexError:
                raise unavailable(i, "no endpoint configured for it (cluster.endpoints)") from None
            sock = self.zmq.socket(zmq.DEALER)
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 100_000)
            sock.setsockopt(zmq.RCVHWM, 0)
            sock.setsockopt(zmq.RECONNECT_IVL, 100)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            # tcp: notice a shard whose host vanished without closing the connection
            sock.setsockopt(zmq.HEARTBEAT_IVL, 2000)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 6000)
            keys = self.keys
            if keys is not None:  # CURVE: the shard must hold this public key; it admits ours by ZAP
                assert keys.pair.secret is not None
                server = keys.servers[i] if i < len(keys.servers) else self._server_key(i)
                sock.curve_serverkey = server
                sock.curve_publickey = keys.pair.public
                sock.curve_secretkey = keys.pair.secret
            sock.connect(endpoint)
            self.sockets.append(sock)
            loop = asyncio.get_running_loop()
            self.readers += [loop.create_task(self._read(i)), loop.create_task(self._watch(i))]
        return self.sockets[index]

    def _server_key(self, index: int) -> bytes:
        path = self.config.cluster.shard_key
        if not path or "{index}" not in path:
            raise unavailable(index, "no CURVE key for it (cluster.shardKey has no {index})")
        try:
            return curvekeys.load(path.replace("{index}", str(index))).public
        except ConfigError as exc:
            raise unavailable(index, str(exc)) from None

    async def _watch(self, index: int) -> None:
        """Fail the requests in flight to a shard as soon as its connection drops (a crash):
        callers answer 503 at once instead of waiting for their timeout."""
        refused = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
        monitor = self.zmq.track(self.sockets[index].get_monitor_socket(zmq.EVENT_DISCONNECTED | refused))
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
        """The first hop for a name under this worker's map (call_repo/call_user follow redirects)."""
        return self.map.owner(repo)

    @property
    def count(self) -> int:
        """How many shards hold data (the map's width; before the first answer, the configured count)."""
        return self.map.width

    @property
    def width(self) -> int:
        """How many shards a fan-out asks."""
        return self.map.width

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
                future.set_result(Reply(result, msg[3:], index))
            else:
                future.set_exception(RegistryError.from_wire(result))

    async def send(self, shard: int, request: Request[Req, Rep], frames: Sequence[Any] = (),
                   via: str | None = None) -> asyncio.Future:
        """Send one request; the returned future resolves to its :class:`Reply`.

        With ZMQ_IMMEDIATE a send fails at once while the shard is not connected; we retry
        for up to CONNECT_GRACE seconds (a shard restarting, a worker just started) and
        then answer 503.
        """
        if self.pulls.waiting:
            self.pulls.flush(shard)  # the shard hears of earlier pulls first
        rid, message = self._message(request, via)
        message += frames
        # Frames below COPY_THRESHOLD are copied into the message (a memcpy into memory libzmq reuses);
        # sent zero-copy, each would cost a wake-up of pyzmq's garbage thread when libzmq lets it go
        # (an upload.chunk of 64 KiB ASGI chunks: one per chunk). (The socket's own copy_threshold does
        # not apply: zmq.asyncio sends through a shadow socket that keeps pyzmq's 64 KiB default.)
        copy = all(len(frame) < COPY_THRESHOLD for frame in frames)
        sock = self._connect(shard)
        deadline = None
        while True:
            # zmq.asyncio resolves a NOBLOCK send at once, reporting EAGAIN in the returned future
            sent = cast(asyncio.Future, sock.send_multipart(message, flags=zmq.NOBLOCK, copy=copy))
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
        return self._awaiting(rid, shard, request.wire.op.value)

    def _message(self, request: Request[Any, Any], via: str | None = None) -> tuple[bytes, list[Any]]:
        rid = to_message_id(self._prefix + struct.pack(">Q", next(self._ids)))  # + the HTTP request's id
        args: dict[str, Any] = {**request.args, "epoch": self.map.epoch}
        if via:
            args["via"] = via
        return rid, [rid, request.wire.op.value.encode(), pack(args)]

    def _awaiting(self, rid: bytes, shard: int, op: str) -> asyncio.Future:
        """The future the reply to message ``rid`` resolves."""
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

    def _tell_pulls(self, shard: int, batch: list[list[str]]) -> None:
        _, message = self._message(messages.MANIFEST_PULLS({"pulls": batch}))
        try:
            sent = cast(asyncio.Future, self._connect(shard).send_multipart(message, flags=zmq.NOBLOCK, copy=False))
        except RegistryError as exc:  # a shard without an endpoint: nobody to tell
            log.debug("%d pulls not told to shard %d: %s", len(batch), shard, exc.message)
            return
        if sent.done() and sent.exception() is not None:  # not connected: the counts are lost, not worth a retry
            log.debug("%d pulls not told to shard %d: %s", len(batch), shard, sent.exception())

    async def call_repo(self, request: Request[RepoReq, Rep], frames: Sequence[Any] = (),
                        timeout: float | None = None) -> Reply[Rep]:
        """Call the shard that owns the request's repository (following the map's redirects)."""
        return await self.call_name(request.args["repo"], request, frames, timeout)

    async def call_user(self, user: str, request: Request[Req, Rep], frames: Sequence[Any] = (),
                        timeout: float | None = None) -> Reply[Rep]:
        """Call the shard that holds ``user``'s records (API keys, sessions)."""
        return await self.call_name(user, request, frames, timeout)

    async def call_name(self, name: str, request: Request[Req, Rep], frames: Sequence[Any] = (),
                        timeout: float | None = None) -> Reply[Rep]:
        """Send an op routed by ``name``; follow STALE_MAP (refresh the map), MOVED / ASK (resend to
        the shard named, marked ``via``) and TRYAGAIN (the name is switching: retry its first hop).
        None of these ever reaches the client."""
        via: str | None = None
        hint = self.hints.get(name)
        shard = self.map.owner(name)
        if hint is not None and hint[0] == self.map.epoch:
            shard, via = hint[1], "moved"
        checked = False
        redirects, pause, tryagain_until = 0, TRYAGAIN_PAUSE, time.monotonic() + TRYAGAIN_BUDGET
        while redirects < MAX_REDIRECTS:
            redirects += 1
            try:
                return await self.wait(shard, await self.send(shard, request, frames, via), timeout)
            except RegistryError as exc:
                code = exc.code
                if code is ErrorCode.UNAVAILABLE and not checked and via is None:
                    # a shard that is down may have been drained and stopped by a resize this
                    # worker has not heard of: ask the home once before answering 503
                    checked = True
                    if await self.newer_map():
                        shard = self.map.owner(name)
                        continue
                    raise
                if code not in (ErrorCode.STALE_MAP, ErrorCode.MOVED, ErrorCode.ASK, ErrorCode.TRYAGAIN):
                    raise
                detail = exc.detail if isinstance(exc.detail, dict) else {}
                self.redirects[code.name.lower()] += 1
                if code is ErrorCode.STALE_MAP:
                    epoch = self.map.epoch
                    await self.refresh(detail.get("view"))
                    if self.map.epoch == epoch:  # the shard has the new map before the home: wait for the home
                        redirects, pause = await _wait_switch(redirects, pause, tryagain_until)
                    shard, via = self.map.owner(name), None
                elif code is ErrorCode.MOVED:
                    if int(detail.get("epoch", 0)) > self.map.epoch:
                        await self.refresh(None)
                    shard, via = int(detail["shard"]), "moved"
                    self._hint(name, shard)
                elif code is ErrorCode.ASK:
                    shard, via = int(detail["shard"]), "ask"
                elif "view" in detail and detail["view"] is None:  # a shard without a map yet
                    await self.install(shard)
                    shard, via = self.map.owner(name), None  # (this worker's map may have been the stale one)
                else:
                    self.hints.pop(name, None)
                    redirects, pause = await _wait_switch(redirects, pause, tryagain_until)
                    shard, via = self.map.owner(name), None
        log.error("%s for %s: more than %d redirects", request.wire.op.value, name, MAX_REDIRECTS)
        raise unavailable(shard, "the cluster map is changing")

    async def newer_map(self) -> bool:
        """Whether the home has a newer map than this worker's (installed if so); at most one
        look every second per worker, so a crashed shard does not double the load on the home."""
        now = time.monotonic()
        if now - self._looked < 1.0:
            return False
        self._looked = now
        epoch = self.map.epoch
        try:
            reply = await self.wait(0, await self.send(0, messages.CLUSTER_MAP_GET({})), min(self.timeout, 2.0))
        except RegistryError:
            return False
        if reply.result["view"]:
            self.set_map(ClusterMap.from_wire(reply.result["view"]))
        return self.map.epoch > epoch

    def _hint(self, name: str, shard: int) -> None:
        if len(self.hints) >= HINTS:
            self.hints.pop(next(iter(self.hints)))
        self.hints[name] = (self.map.epoch, shard)

    async def refresh(self, view: dict[str, Any] | None) -> None:
        """Install the newest map: the home's (shard 0), or ``view`` if the home cannot answer."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh(view))
        await asyncio.shield(self._refreshing)

    async def _refresh(self, view: dict[str, Any] | None) -> None:
        try:
            reply = await self.wait(0, await self.send(0, messages.CLUSTER_MAP_GET({})), min(self.timeout, 5.0))
            view = reply.result["view"] or view
        except RegistryError as exc:
            log.warning("cluster map: the home (shard 0) did not answer (%s); using the shard's view", exc.message)
        if view is not None:
            self.set_map(ClusterMap.from_wire(view))

    def set_map(self, new: ClusterMap) -> None:
        if new.epoch > self.map.epoch:
            log.info("cluster map epoch %d (%s, %d → %d shards)", new.epoch, new.phase, new.source_count, new.shards)
            self.map = new
            self.hints.clear()

    async def install(self, shard: int) -> None:
        """Give a shard that has no map yet (a new cluster's shard) the home's map, when it is part of it."""
        if self.map.epoch == 0:
            await self.refresh(None)
        if self.map.phase == "stable" and shard < self.map.shards:
            await self.call(shard, messages.CLUSTER_MAP_PUT({"view": self.map.to_wire()}))
        else:
            await asyncio.sleep(0.05)

    async def call_all(self, request: Request[Req, Rep], timeout: float | None = None) -> list[Reply[Rep]]:
        """Ask every shard holding data under the map; redone once the map is refreshed if it was stale."""
        for _ in range(MAX_REDIRECTS):
            try:
                return list(await asyncio.gather(*(self.call(i, request, timeout=timeout) for i in range(self.width))))
            except RegistryError as exc:
                if exc.code is ErrorCode.STALE_MAP:
                    await self.refresh(exc.detail.get("view") if isinstance(exc.detail, dict) else None)
                elif exc.code is ErrorCode.TRYAGAIN and isinstance(exc.detail, dict) and exc.detail.get("view", 0) is None:
                    await self.install(self.width - 1)
                elif exc.code is ErrorCode.UNAVAILABLE and await self.newer_map():
                    continue  # a shard a resize retired: ask only those of the new map
                else:
                    raise
        raise unavailable(0, "the cluster map is changing")

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

    async def drain(self) -> None:
        """Before closing: the pulls waiting here reach their shards (each sends them ahead of a
        ping, and answers the ping after them; at most DRAIN_TIMEOUT)."""
        waiting = list(self.pulls.waiting)
        if waiting:
            await asyncio.gather(*(self.call(shard, messages.PING({}), timeout=DRAIN_TIMEOUT) for shard in waiting),
                                 return_exceptions=True)

    def close(self) -> None:
        self.pulls.close()
        for task in self.readers:
            task.cancel()
        self.zmq.close()
