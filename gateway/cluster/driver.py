"""The driver of a resize: runs in a gateway worker under a lease on the home (shard 0).

Every worker runs :meth:`Driver.watch`: every few seconds it reads the home's plan; when a resize
is running and nobody holds the lease (or it expired: its holder died), it takes the lease and
resumes the resize from the shards' records. Each step is idempotent:

1. **join**: wait until the new shards answer (embedded: ask the supervisor to start them), then
   install the transition view on the targets, then on the sources;
2. **move**: per source, the names it lists as moving; each is copied (blobs, manifests, then the
   mutable state by diff), fenced (≤ 1 s, the source enforces it), copied a last time, activated
   on the target and switched on the source (the move's one commit);
3. **finish**: the stable view at the new count, targets first; the plan is marked done.

Every move op carries the lease's token: a shard refuses an older driver's ops, so a driver that
was paused and comes back can do nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import messages
from common.clustermap import ClusterMap
from common.errors import ErrorCode, RegistryError
from common.protocol import FRAME_SIZE
from gateway.shard_client import ShardClient

log = logging.getLogger("shardreg.reshard")
LEASE_TTL = 10.0
RENEW_EVERY = 2.0
WATCH_EVERY = float(os.environ.get("SHARDREG_RESHARD_WATCH", "5"))
#: Moves at once per source shard (each keeps one blob read in flight; clients keep 16).
PER_SOURCE = 4
#: Copy rounds before the fence; the fence's budget for writes in flight.
ROUNDS, FENCE_BUDGET = 5, 0.8
#: Written for the embedded supervisor: how many shard processes to run.
REQUEST_FILE = "cluster-request.json"


class LeaseLost(Exception):
    """Another driver took the lease: stop at once."""


class Driver:
    def __init__(self, client: Callable[[], ShardClient], root: Path | None) -> None:
        self.client = client
        self.root = root
        self.holder = f"gateway pid {os.getpid()}"
        self.token = 0
        self.kick = asyncio.Event()
        self.running: asyncio.Task[None] | None = None
        self.progress: dict[str, Any] = {}
        self._fences: list[float] = []
        self._bucket = (time.monotonic(), 0.0)
        self.max_mbps: float | None = None
        #: The plan was marked "aborting" while this driver moved names: stop taking new ones.
        self.aborting = False

    # -- lease and plan ------------------------------------------------------------------------
    async def _call(self, shard: int, request: Any, frames: Any = (), timeout: float | None = None) -> Any:
        return (await self.client().call(shard, request, frames, timeout)).result

    async def plan(self) -> dict[str, Any]:
        return dict(await self._call(0, messages.CLUSTER_PLAN_GET({}), timeout=5))

    async def _lease(self) -> bool:
        reply = await self._call(0, messages.CLUSTER_LEASE({"holder": self.holder, "ttl": LEASE_TTL,
                                                            "token": self.token}), timeout=5)
        if reply["granted"]:
            self.token = reply["token"]
        return bool(reply["granted"])

    async def _update(self, **changes: Any) -> dict[str, Any]:
        reply = await self._call(0, messages.CLUSTER_PLAN_UPDATE({"token": self.token, "changes": changes}), timeout=5)
        return dict(reply["plan"] or {})

    async def watch(self) -> None:
        """Take over a running resize whose driver is gone (every worker runs this)."""
        while True:
            try:
                await asyncio.wait_for(self.kick.wait(), WATCH_EVERY)
            except TimeoutError:
                pass
            self.kick.clear()
            if self.running is not None and not self.running.done():
                continue
            try:
                state = await self.plan()
                plan = state["plan"]
                if plan and plan["state"] in ("running", "aborting"):
                    if await self._lease():
                        self.running = asyncio.get_running_loop().create_task(self._drive(plan))
            except RegistryError as exc:
                log.debug("resize watcher: %s", exc.message)
            except Exception:
                log.exception("resize watcher failed")

    async def _drive(self, plan: dict[str, Any]) -> None:
        renew = asyncio.get_running_loop().create_task(self._renew())
        work = asyncio.get_running_loop().create_task(self.resize(plan))
        done, _ = await asyncio.wait({renew, work}, return_when=asyncio.FIRST_COMPLETED)
        for task in (renew, work):
            task.cancel()
        if work in done and not work.cancelled() and work.exception() is None:
            await self._release()
        if work in done and not work.cancelled() and work.exception() is not None:
            exc = work.exception()
            log.error("resize %s stopped: %s (it resumes by itself)", plan["id"], exc)
            self.progress.setdefault("errors", []).append(str(exc))
        elif renew in done:
            log.warning("resize %s: the lease was lost; another driver resumes it", plan["id"])

    async def _release(self) -> None:
        """The resize ended: let the next one's driver take the lease at once."""
        try:
            await self._call(0, messages.CLUSTER_LEASE({"holder": self.holder, "ttl": 0, "token": self.token}),
                             timeout=5)
        except RegistryError:
            pass

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                if not await self._lease():
                    return
            except RegistryError:
                continue  # the home is down: the lease may expire, and whoever holds it next resumes

    # -- the resize ------------------------------------------------------------------------------
    async def resize(self, plan: dict[str, Any]) -> None:
        old, new = int(plan["from"]), int(plan["to"])
        seed = self.client().config.cluster.hash_seed
        transition = ClusterMap(int(plan["epoch"]), new, old, seed)
        width = max(old, new)
        targets = list(range(old, new)) if new > old else list(range(new))
        sources = list(range(old)) if new > old else list(range(new, old))
        self.max_mbps = plan.get("maxMbps")
        started = time.monotonic()
        self._bucket = (started, 0.0)
        self.progress = {"names": {"done": 0, "left": 0}, "bytes": {"done": 0, "left": 0}, "busyRetries": 0,
                         "uploadsRefused": 0, "errors": [], "started": time.time()}
        self._request_shards(width)
        await self._wait_up(width)
        if new > old:
            await self._copy_trust(list(range(old)), targets)
        for group in (targets, sources):
            await self._install(group, transition)
        if plan["state"] == "aborting":
            await self._abort(plan, transition, targets, sources)
            return
        self.aborting = False
        reporter = asyncio.get_running_loop().create_task(self._report(plan, started))
        try:
            await asyncio.gather(*(self._drain(source, transition) for source in sources))
        finally:
            reporter.cancel()
        if self.aborting:
            await self._abort(plan, transition, targets, sources)
            return
        stable = transition.finished()
        for group in (targets, sources, [i for i in range(width) if i not in targets and i not in sources]):
            await self._install(group, stable)
        refused = 0  # after the sources left the transition: they refuse no more uploads
        for source in sources:  # (counted by the sources since they started: a figure, not a ledger)
            counts = (await self._call(source, messages.CLUSTER_MAP_GET({}), timeout=10)).get("counts") or {}
            refused += int(counts.get("uploadsRefused", 0))
        self.progress["uploadsRefused"] = refused
        await self._update(state="done", finished=time.time(), error=None, progress=self._progress(started))
        self._request_shards(new)
        log.info("resize %s %d→%d done: epoch %d, %d names moved", plan["id"], old, new, stable.epoch,
                 self.progress["names"]["done"])
        self.client().set_map(stable)

    async def _abort(self, plan: dict[str, Any], transition: ClusterMap, targets: list[int],
                     sources: list[int]) -> None:
        """Roll back a resize nothing has switched in yet; otherwise finish it (and say so)."""
        switched = 0
        for source in sources:
            counts = (await self._call(source, messages.CLUSTER_MAP_GET({}), timeout=10)).get("counts") or {}
            switched += int(counts.get("switched", 0))
        if switched:
            await self._update(state="running", error=f"abort refused: {switched} names already switched; "
                                                      "the resize finishes instead")
            plan["state"] = "running"
            self.aborting = False
            await self.resize(plan)
            return
        back = transition.rolled_back()
        for group in (sources, targets):
            await self._install(group, back)
        await self._update(state="aborted", finished=time.time())
        self._request_shards(transition.source_count)
        self.client().set_map(back)

    def _request_shards(self, count: int) -> None:
        """Embedded mode: ask the supervisor for ``count`` shard processes (it polls this file)."""
        if self.root is None:
            return
        path = self.root / REQUEST_FILE
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"shards": count, "at": time.time()}))
        os.replace(tmp, path)

    async def _wait_up(self, width: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        for index in range(width):
            while True:
                try:
                    await self._call(index, messages.PING({}), timeout=2)
                    break
                except RegistryError:
                    if time.monotonic() > deadline:
                        raise RegistryError(ErrorCode.UNAVAILABLE, f"shard {index} did not come up") from None
                    await asyncio.sleep(0.2)

    async def _copy_trust(self, sources: list[int], targets: list[int]) -> None:
        """Give new shards the trust material (cosign keys, notation certificates) before any
        image moves there, so that its signatures verify as before. ``trust.put`` keeps one entry
        per content: copying again (a resumed resize) changes nothing. Read from every old shard,
        in case one missed an upload (it went to all that answered)."""
        entries: dict[tuple[str, str, bytes], None] = {}
        for index in sources:
            reply = await self.client().call(index, messages.TRUST_LIST({}), timeout=30)
            for (kind, store_type), frame in zip(reply.result["entries"], reply.frames, strict=True):
                entries[(kind, store_type, frame.bytes)] = None
        for index in targets:
            for kind, store_type, data in entries:
                await self._call(index, messages.TRUST_PUT({"kind": kind, "type": store_type}), [data], timeout=30)
        if entries:
            log.info("resize: %d trust entries copied to shards %s", len(entries), targets)

    async def _install(self, shards: list[int], view: ClusterMap) -> None:
        for index in shards:
            try:
                await self._call(index, messages.CLUSTER_MAP_PUT({"view": view.to_wire(), "token": self.token}),
                                 timeout=30)
            except RegistryError as exc:
                if exc.code is not ErrorCode.STALE_MAP:  # already past this epoch: fine
                    raise

    async def _report(self, plan: dict[str, Any], started: float) -> None:
        while True:
            await asyncio.sleep(5)
            progress = self._progress(started)
            names, size = progress["names"], progress["bytes"]
            log.info("resize %s→%s epoch %s: %d/%d names, %.1f/%.1f MiB, %.1f MB/s%s, fence p99 %.0f ms",
                     plan["from"], plan["to"], plan["epoch"], names["done"], names["done"] + names["left"],
                     size["done"] / 2**20, (size["done"] + size["left"]) / 2**20,
                     progress["bytesPerSecond"] / 1e6, f" (limit {self.max_mbps})" if self.max_mbps else "",
                     1000 * progress["fence"]["p99"])
            try:
                current = await self._update(progress=progress)
                self.max_mbps = current.get("maxMbps")
                self.aborting = current.get("state") == "aborting"
            except RegistryError as exc:
                if exc.code is ErrorCode.DENIED:
                    raise LeaseLost() from None

    def _progress(self, started: float) -> dict[str, Any]:
        elapsed = max(0.001, time.monotonic() - started)
        fences = sorted(self._fences) or [0.0]
        rate = self.progress["bytes"]["done"] / elapsed
        left = self.progress["bytes"]["left"]
        return {**{k: v for k, v in self.progress.items() if k != "errors"},
                "errors": self.progress["errors"][-5:], "bytesPerSecond": rate,
                "etaSeconds": left / rate if rate > 0 else None,
                "fence": {"p50": fences[len(fences) // 2], "p99": fences[min(len(fences) - 1, int(len(fences) * .99))]}}

    async def _drain(self, source: int, view: ClusterMap) -> None:
        """Move every name ``source`` lists until it lists none (busy names are tried again)."""
        while not self.aborting:
            try:
                listed = await self._call(source, messages.MOVE_LIST({"after": None, "n": 100000, "token": self.token}),
                                          timeout=60)
            except RegistryError as exc:
                if exc.code is ErrorCode.TRYAGAIN:  # already stable: nothing left here
                    return
                raise
            names = listed["names"]
            if not names:
                return
            self.progress["names"]["left"] = max(self.progress["names"]["left"], len(names))
            self.progress["bytes"]["left"] = sum(int(n[3]) for n in names)
            queue: asyncio.Queue[list[Any]] = asyncio.Queue()
            for entry in names:
                queue.put_nowait(entry)
            await asyncio.gather(*(self._worker(queue, source, view) for _ in range(PER_SOURCE)))

    async def _worker(self, queue: asyncio.Queue[list[Any]], source: int, view: ClusterMap) -> None:
        while not queue.empty() and not self.aborting:
            kind, name, _, size = queue.get_nowait()
            target = view.target(name)
            try:
                moved = await self.move(kind, name, source, target)
            except RegistryError as exc:  # this name waits for the next pass; the others go on
                log.warning("resize: moving %s %s (shard %d → %d) failed: %s; trying again", kind, name, source,
                            target, exc.message)
                self.progress["errors"].append(f"{kind} {name}: {exc.message}")
                del self.progress["errors"][:-20]
                await asyncio.sleep(0.5)
                moved = False
            if moved:
                self.progress["names"]["done"] += 1
                self.progress["names"]["left"] = max(0, self.progress["names"]["left"] - 1)
                self.progress["bytes"]["left"] = max(0, self.progress["bytes"]["left"] - int(size))
            else:
                self.progress["busyRetries"] += 1
                await asyncio.sleep(0.2)

    # -- one name ----------------------------------------------------------------------------------
    def _move_args(self, kind: str, name: str, **extra: Any) -> Any:
        return {"kind": kind, "name": name, "token": self.token, **extra}

    async def move(self, kind: str, name: str, source: int, target: int) -> bool:
        """Move one name; False if it stayed busy (tried again later)."""
        state = (await self._call(source, messages.MOVE_START(self._move_args(kind, name, peer=target))))["state"]
        if state == "SWITCHED":
            await self._call(target, messages.MOVE_DONE(self._move_args(kind, name)))
            return True
        if (await self._call(target, messages.MOVE_REOPEN(self._move_args(kind, name, peer=source))))["state"] == "DONE":
            return True
        last: dict[str, Any] = {}
        for _ in range(ROUNDS):
            copied, last = await self._copy(kind, name, source, target)
            if copied < 8 * FRAME_SIZE:
                break
        for _ in range(3):
            fenced = time.monotonic()  # from before the fence is asked: an upper bound of the writes' pause
            try:
                await self._call(source, messages.MOVE_FENCE(self._move_args(kind, name, budget=FENCE_BUDGET)))
            except RegistryError as exc:
                if exc.code is ErrorCode.TRYAGAIN:
                    await asyncio.sleep(0.1)
                    continue
                raise
            try:
                await self._copy(kind, name, source, target, last)
                await self._call(target, messages.MOVE_ACTIVATE(self._move_args(kind, name)))
                await self._call(source, messages.MOVE_SWITCH(self._move_args(kind, name)))
            except RegistryError as exc:
                await self._undo(kind, name, source, target)
                if exc.code is ErrorCode.TRYAGAIN:
                    continue
                raise
            self._fences.append(time.monotonic() - fenced)
            del self._fences[:-2000]
            await self._call(target, messages.MOVE_DONE(self._move_args(kind, name)))
            return True
        return False

    async def _undo(self, kind: str, name: str, source: int, target: int) -> None:
        for shard, wire in ((target, messages.MOVE_REOPEN), (source, messages.MOVE_UNFENCE)):
            try:
                await self._call(shard, wire(self._move_args(kind, name)))
            except RegistryError:
                pass

    async def _copy(self, kind: str, name: str, source: int, target: int,
                    applied: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        """Bring the target's copy to the source's state; returns the blob bytes copied and the
        state applied. When the source's state equals ``applied`` (what the target was last made
        equal to), nothing changed: no round trip to the target (the common case under the fence)."""
        have = await self._call(source, messages.MOVE_STATE(self._move_args(kind, name)))
        if applied and have == applied:
            return 0, have
        if kind == "user":
            await self._call(target, messages.MOVE_APPLY(self._move_args(
                kind, name, tags={}, manifests=[], links={}, added=[], records=have["records"])))
            return 0, have
        there = await self._call(target, messages.MOVE_STATE(self._move_args(kind, name)))
        copied = 0
        for digest, size in have["links"].items():
            if digest not in there["links"]:
                copied += await self._copy_blob(name, digest, int(size), source, target)
        added = [d for d in have["manifests"] if d not in set(there["manifests"])]
        frames: list[Any] = []
        records: list[dict[str, Any]] = []
        if added:
            reply = await self.client().call(source, messages.MOVE_MANIFESTS(
                {"repo": name, "digests": added, "token": self.token}))
            records, frames = reply.result["records"], [f.bytes for f in reply.frames]
        await self._call(target, messages.MOVE_APPLY(self._move_args(
            kind, name, tags=have["tags"], manifests=have["manifests"], links=have["links"], added=records,
            records={}, **({"search": have["search"]} if "search" in have else {}))), frames)
        return copied, have

    async def _copy_blob(self, repo: str, digest: str, size: int, source: int, target: int) -> int:
        linked = await self._call(target, messages.MOVE_BLOB_LINK({"repo": repo, "digest": digest, "token": self.token}))
        if linked["linked"]:
            return 0
        for attempt in range(2):
            pos = int(linked["offset"]) if attempt == 0 and linked["offset"] <= size else 0
            while pos < size:
                length = min(FRAME_SIZE, size - pos)
                await self._throttle(length)
                data = await self.client().call(source, messages.BLOB_READ({"digest": digest, "offset": pos,
                                                                            "length": length}))
                await self._call(target, messages.MOVE_BLOB_WRITE(
                    {"repo": repo, "digest": digest, "token": self.token, "offset": pos}), [data.frames[0].bytes])
                pos += length
                self.progress["bytes"]["done"] += length
            if size == 0:
                await self._call(target, messages.MOVE_BLOB_WRITE(
                    {"repo": repo, "digest": digest, "token": self.token, "offset": 0}), [])
            try:
                await self._call(target, messages.MOVE_BLOB_COMMIT({"repo": repo, "digest": digest,
                                                                    "token": self.token, "size": size}))
                return size
            except RegistryError as exc:
                if exc.code is not ErrorCode.DIGEST_INVALID or attempt:
                    raise
        return size

    async def _throttle(self, length: int) -> None:
        if not self.max_mbps:
            return
        start, sent = self._bucket
        sent += length
        self._bucket = (start, sent)
        ahead = sent / (self.max_mbps * 1e6) - (time.monotonic() - start)
        if ahead > 0:
            await asyncio.sleep(ahead)


def start_driver(state: Any) -> None:
    """Give a worker its driver and start its watcher (gateway.app, before serving)."""
    config = state.config
    root = None if config.cluster.endpoints else config.storage.root_directory
    state.driver = Driver(lambda: state.client, root)
    state.watcher = asyncio.get_running_loop().create_task(state.driver.watch())


def stop_driver(state: Any) -> None:
    for task in (state.watcher, getattr(state.driver, "running", None)):
        if task is not None:
            task.cancel()
