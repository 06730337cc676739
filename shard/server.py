"""The shard process: a ZeroMQ ROUTER socket serving the ops of :mod:`shard.ops` and the extensions.

The server wires the shard at start: the core state (:class:`ShardService`), the op
components, the extensions and the hooks through which the core tells them of pushes, pulls
and deletes; then it binds every op to its ``@handles`` method (:mod:`shard.ops.registry`).

Each request becomes a task, except ordered ops (``upload.write`` chunks), which are queued
in arrival order on their upload (see ``UploadSessions.enqueue_write``) and answered once
written: the answers are the sender's credits. Optionally serves ``/livez``, ``/readyz`` and
``/metrics`` over plain HTTP on ``cluster.shardMetricsPort`` for Kubernetes probes and
Prometheus.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from common import curvekeys, heap
from common.config import Config, ConfigError
from common.datalock import lock_data_dir
from common.errors import ErrorCode, RegistryError
from common.messages import ALL as WIRES
from common.messages import NOTICES
from common.privatefs import private_dir
from common.protocol import ERR, OK, Answer, Frames, Op, pack, unpack
from common.requestid import REQUEST_ID, from_message_id
from common.signals import stop_signals
from common.startup import shard_metrics_host, shard_metrics_port
from common.zmqctx import OwnedContext
from shard.diskfull import is_storage_full, storage_full
from shard.health import OpLatency, serve_health
from shard.hooks import Hooks
from shard.lifecycle import Lifecycle
from shard.maintenance import collect_garbage, remove_orphan_files, scrub
from shard.ops.blobs import BlobOps
from shard.ops.cluster import Cleanup, ClusterOps
from shard.ops.manifests import ManifestOps
from shard.ops.moves import MoveOps
from shard.ops.registry import Handler, Respond, bind
from shard.ops.repositories import RepositoryOps
from shard.ops.uploads import UploadOps
from shard.profiling import Profiler
from shard.routing import Routing
from shard.search_meta import SearchMeta
from shard.search_walk import SearchWalk
from shard.searchstore import SearchStore
from shard.service import ShardService
from shard.sync.service import SyncService
from shard.trust import Trust
from shard.userdata import UserData
from shard.userprefs import UserPrefs
from shard.zap import DOMAIN, ZapHandler

log = logging.getLogger("shardreg.shard")

#: Periodic maintenance: how often abandoned uploads are looked for.
MAINTENANCE_INTERVAL = 300.0


class ShardServer:
    def __init__(self, config: Config, index: int) -> None:
        self.config = config
        self.index = index
        # first: a shard that may not serve (tcp without keys) stops before it opens anything
        self.keys = curvekeys.server_keys(config, index)
        self.zap: ZapHandler | None = None
        private_dir(config.shard_dir(index))  # 0700, also for data written by older versions
        self.service = ShardService(
            config.shard_dir(index), index, config.cluster.shards, durable=config.storage.commit,
            upload_expiry=config.storage.upload_expiry, max_uploads=config.storage.max_uploads,
            max_uploads_per_user=config.storage.max_uploads_per_user)
        # the extensions: their own LMDB environment, fed by the core's hooks
        self.hooks = Hooks()
        store = SearchStore(self.service.root / "search")
        trust = Trust(store)
        self.search = SearchMeta(self.service.meta, self.service.blobs, store, trust)
        self.hooks.on_push.append(self.search.record_push)
        self.hooks.on_pull.append(self.search.record_pull)
        self.hooks.on_delete.append(self.search.record_delete)
        self.routing = Routing(self.service.meta, index, self.service.uploads.repo_busy)
        view = self.routing.view
        if view is not None and view.phase == "stable" and view.shards != config.cluster.shards:
            log.warning("cluster.shards is %d but the cluster map (epoch %d) has %d shards: the map decides; "
                        "change the count with `shardreg cluster resize --shards N`", config.cluster.shards,
                        view.epoch, view.shards)
        self.cleanup = Cleanup(self.service, self.routing, self.search)
        self.moves = MoveOps(self.service, self.routing, self.search)
        self.search.owns = self.routing.lists
        self.walk = SearchWalk(self.search)  # search.page: sorted listings from the ordered index (issue 17)
        self.walk.lists_all = lambda: self.routing.view is None or self.routing.view.epoch <= 1
        self.service.reshard_status = self.routing.status
        self.service.lists = self.routing.lists
        # retention, immutable tags, lint, the event outbox (shard/lifecycle.py)
        self.lifecycle = Lifecycle(config, self.service, self.hooks, self.search)
        self.service.lifecycle_status = self.lifecycle.status
        self.sync = SyncService(config, self.service, self.hooks)  # extensions.sync (issue 13)
        self.sync.mirror.owns = self.routing.owns_stably
        manifests = ManifestOps(self.service, self.hooks, self.lifecycle.policy)
        manifests.serves = self.routing.serves
        bound = bind(
            RepositoryOps(self.service), manifests,
            BlobOps(self.service), UploadOps(self.service), UserData(self.service.meta), self.search, trust,
            UserPrefs(self.service.meta, store, self.search.reindex), Profiler(), ClusterOps(self.service, self.routing), self.moves,
            self.lifecycle, self.sync, self.walk)
        self.handlers = bound.handlers
        self.ordered = bound.ordered
        self.op_latency = OpLatency(index)
        self.zmq = OwnedContext(self)  # ends with its sockets even if close() is never called
        self.sock = self.zmq.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.tasks: set[asyncio.Task[None]] = set()
        self.started = time.time()

    async def _send(self, ident: bytes, rid: bytes, status: bytes, result: Any, frames: list[Any]) -> None:
        try:
            await self.sock.send_multipart([ident, rid, status, pack(result), *frames], copy=False)
        except zmq.ZMQError as exc:  # the gateway is gone (ROUTER_MANDATORY): nobody to answer
            log.debug("reply dropped: %s", exc)

    def _reply_later(self, ident: bytes, rid: bytes) -> Respond[Any]:
        def reply(outcome: Answer[Any] | RegistryError) -> None:
            if isinstance(outcome, RegistryError):
                if outcome.code is ErrorCode.INSUFFICIENT_STORAGE:
                    self.service.disk.note_full(outcome.message)
                coro = self._send(ident, rid, ERR, outcome.to_wire(), [])
            else:
                coro = self._send(ident, rid, OK, outcome[0], outcome[1])
            self._spawn(coro)
        return reply

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def dispatch(self, op: str, args: Any, frames: Frames) -> Answer[Any]:
        """Run one (not ordered) op as the socket loop does: find its handler, check the request.

        Also the way in for in-process callers (tests) that want the server's checks without a socket.
        """
        handler: Handler | None = self.handlers.get(op)  # type: ignore[call-overload]  # a str from the wire
        if handler is None:
            raise RegistryError(ErrorCode.BAD_REQUEST, f"unknown op {op}")
        _check_request(op, args)
        release = await self.routing.admit(Op(op), args)
        try:
            return await handler(args, frames)
        finally:
            release()

    async def _handle(self, ident: bytes, rid: bytes, op: str, args: Any, frames: list[Any]) -> None:
        started = time.perf_counter()
        REQUEST_ID.set(from_message_id(rid))  # this task's log lines name the gateway's request
        send = self._send if op not in NOTICES else _unanswered
        try:
            result, out = await self.dispatch(op, args, frames)
            await send(ident, rid, OK, result, out)
        except RegistryError as exc:
            if exc.code is ErrorCode.INSUFFICIENT_STORAGE:
                self.service.disk.note_full(exc.message)
            await send(ident, rid, ERR, exc.to_wire(), [])
        except Exception as exc:
            if is_storage_full(exc):  # one line, no traceback: the operator must free space
                log.error("op %s failed: storage full: %s", op, exc)
                self.service.disk.note_full(str(exc))
                await send(ident, rid, ERR, storage_full(exc).to_wire(), [])
            else:
                log.exception("op %s failed", op)
                await send(ident, rid, ERR, RegistryError(ErrorCode.INTERNAL).to_wire(), [])
        finally:
            self.op_latency.observe(op, time.perf_counter() - started)

    async def serve(self) -> None:
        endpoint = self.config.shard_bind(self.index)
        self._secure()
        if endpoint.startswith("ipc://"):
            path = endpoint[len("ipc://"):]
            if path.startswith("@"):
                raise ConfigError(f"{endpoint}: abstract sockets have no permissions; use a path in a private directory")
            private_dir(Path(path).parent)  # only the registry's user may enter: nobody else can connect
            if os.path.exists(path):
                os.unlink(path)
        self.sock.bind(endpoint)
        log.info("shard %d serving on %s%s (data %s)", self.index, endpoint, " with CURVE" if self.keys else "",
                 self.config.shard_dir(self.index))
        self.maintenance = asyncio.get_running_loop().create_task(self._maintenance())
        self.cleaner = asyncio.get_running_loop().create_task(self.cleanup.loop())
        self.lifecycle.start()
        self.sync.start()  # periodic mirroring, if configured
        self.warming = asyncio.get_running_loop().create_task(self.search.warm())  # listing keys (issue 17)
        scrubbing = self.config.extensions.scrub
        if scrubbing.enable:
            self.scrubber = asyncio.get_running_loop().create_task(self._scrub_every(scrubbing.interval))
        if self.config.cluster.shard_metrics_port:
            await serve_health(self.service, self.op_latency, shard_metrics_host(self.config),
                               shard_metrics_port(self.config, self.index))
        while True:
            msg = await self.sock.recv_multipart(copy=False)
            if len(msg) < 4:
                continue
            ident, rid, op_frame, args_frame = msg[0].bytes, msg[1].bytes, msg[2].bytes, msg[3].bytes
            try:
                op, args = op_frame.decode(), unpack(args_frame)
            except Exception:
                await self._send(ident, rid, ERR, RegistryError(ErrorCode.BAD_REQUEST).to_wire(), [])
                continue
            frames = msg[4:]
            ordered = self.ordered.get(op)  # type: ignore[call-overload]  # a str from the wire
            if ordered is not None:
                try:
                    _check_request(op, args)
                    self.routing.check(Op(op), args)
                except RegistryError as exc:
                    await self._send(ident, rid, ERR, exc.to_wire(), [])
                    continue
                REQUEST_ID.set(from_message_id(rid))  # the upload's writer task logs under this request
                ordered(args, frames, self._reply_later(ident, rid))
            elif op == Op.UPLOAD_CHUNK:  # its bytes go straight to the file: no copy out of the message
                self._spawn(self._handle(ident, rid, op, args, frames))
            else:
                self._spawn(self._handle(ident, rid, op, args, [f.bytes for f in frames]))

    def _secure(self) -> None:
        """CURVE server with a ZAP handler that admits only the configured gateway keys; the
        handler is bound before the socket (libzmq admits every client when there is none)."""
        if self.keys is None:
            return
        assert self.keys.pair.secret is not None
        self.zap = ZapHandler(self.zmq.socket(zmq.REP), self.keys.admitted)
        self.sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
        self.sock.zap_domain = DOMAIN
        self.sock.curve_secretkey = self.keys.pair.secret
        self.sock.curve_publickey = self.keys.pair.public
        self.sock.curve_server = True

    async def _maintenance(self) -> None:
        storage = self.config.storage
        interval = min(MAINTENANCE_INTERVAL, max(1.0, storage.upload_expiry / 4), max(1.0, storage.gc_interval))
        last_gc = time.monotonic()
        try:  # files a crash left between their rename and their commit (none, usually)
            await remove_orphan_files(self.service)
        except Exception:
            log.exception("removing orphaned blob files failed")
        while True:
            await asyncio.sleep(interval)
            try:
                await self.service.uploads.expire()
                if freed := self.service.meta.free_stale_readers():
                    log.info("freed %d read slots of processes that died mid-read", freed)
                if storage.gc and time.monotonic() - last_gc >= storage.gc_interval:
                    last_gc = time.monotonic()
                    await self.lifecycle.every_gc_interval()
                    await collect_garbage(self.service, storage.gc_delay)
                    await remove_orphan_files(self.service)
            except Exception:
                log.exception("maintenance failed")

    async def _scrub_every(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await scrub(self.service)
            except Exception:
                log.exception("scrub failed")

    def close(self) -> None:
        try:
            if self.zap is not None:
                self.zap.close()
        finally:
            self.zmq.close()
            try:
                self.search.close()
            finally:
                self.service.close()



async def _unanswered(ident: bytes, rid: bytes, status: bytes, result: Any, frames: list[Any]) -> None:
    """What a notice's "answer" becomes (common.messages.NOTICES): nothing is sent; a refusal is logged."""
    if status == ERR:
        log.debug("notice refused: %s", result)


#: The keys each op's request type requires, by op name (a set test costs ~0.2 µs per request).
_REQUIRED: dict[str, frozenset[str]] = {op.value: wire.required for op, wire in WIRES.items()}


def _check_request(op: str, args: Any) -> None:
    """Refuse a request that is not a map or lacks a key its op's request type requires."""
    if not isinstance(args, dict):
        raise RegistryError(ErrorCode.BAD_REQUEST, f"{op}: the request is not a map")
    if not _REQUIRED[op] <= args.keys():
        missing = WIRES[Op(op)].missing(args)
        raise RegistryError(ErrorCode.BAD_REQUEST, f"{op}: missing {', '.join(sorted(missing))}")


def run_shard(config: Config, index: int) -> None:
    """Entry point of ``shardreg shard``: serve until SIGTERM/SIGINT (SIGINT unless a supervisor
    started it with SIGINT ignored). Raises :class:`common.datalock.DataDirBusy` if another process
    owns the shard's directory."""
    curvekeys.server_keys(config, index)  # tcp without keys, unreadable keys: exit 2 before touching the data
    lock = lock_data_dir(config.shard_dir(index), f"shard {index}'s directory")

    async def main() -> None:
        server = ShardServer(config, index)
        heap.settle()  # what start-up made lives as long as the process: out of the collector's sight
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in stop_signals():
            loop.add_signal_handler(sig, stop.set)
        serve = loop.create_task(server.serve())
        waiter = loop.create_task(stop.wait())
        done, _ = await asyncio.wait({serve, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if serve in done and serve.exception():
            server.close()
            raise serve.exception()  # type: ignore[misc]
        serve.cancel()
        for background in (getattr(server, "maintenance", None), getattr(server, "scrubber", None),
                           getattr(server, "cleaner", None), getattr(server, "warming", None)):
            if background is not None:
                background.cancel()
        # let in-flight writes finish so that nothing acknowledged is lost
        pending = [t for t in server.tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=10)
        await server.lifecycle.stop()
        await server.sync.close()
        server.close()
        log.info("shard %d stopped", index)

    try:
        asyncio.run(main())
    finally:
        lock.release()
