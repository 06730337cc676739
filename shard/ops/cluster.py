"""Cluster ops: the shard's view of the map, and (on the home, shard 0) the resize plan and lease.

Every decision about a resize is a compare-and-set in one LMDB write transaction on shard 0: begin
a resize (refused while another runs), change its state, take or renew the driver's lease (whose
``token`` only grows; shards refuse move ops with an older one). Each shard keeps its own view and
decides ownership from it alone (:mod:`shard.routing`). A view is accepted only from an epoch at
least the shard's own.

Adopting a transition view also makes sure every name that has data here is *present* (an upload
started for a repository with no record yet gets one; sessions get their per-user index), so that
the ownership check's "absent here → ASK" can never hide data. Adopting a stable view drops the
move records: from then on ownership is the hash alone, and :class:`Cleanup` removes, after a
grace, what this shard holds but no longer owns.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from common import messages as m
from common.clustermap import ClusterMap
from common.errors import ErrorCode, RegistryError
from common.protocol import Answer, Frames
from common.ring import shard_for
from shard.lmdbstore import Txn
from shard.metastore import MetaStore
from shard.ops.registry import handles
from shard.routing import COPYING, SWITCHED, Routing
from shard.service import ShardService
from shard.userdata import delete_user_records, index_sessions, user_names

log = logging.getLogger("shardreg.cluster")
_PLAN = b"cluster/plan"
_LEASE = b"cluster/lease"
_PURGE = b"cluster/purge-files"
#: The epoch whose cleanup finished: nothing foreign is left, so later passes skip the scan (issue 17).
_CLEANED = b"cluster/cleaned-epoch"
#: How long a shard keeps what moved away before deleting it (readers in flight, shared-storage paths).
CLEANUP_DELAY = float(os.environ.get("SHARDREG_RESHARD_CLEANUP_DELAY", "60"))


class ClusterOps:
    def __init__(self, shard: ShardService, routing: Routing) -> None:
        self.shard = shard
        self.meta: MetaStore = shard.meta
        self.routing = routing

    # -- the view --------------------------------------------------------------------------------
    @handles(m.CLUSTER_MAP_GET)
    async def map_get(self, args: m.Empty, frames: Frames) -> Answer[m.MapReply]:
        return {"index": self.shard.index, "view": self.routing.view_wire(), "counts": self.counts()}, []

    def counts(self) -> dict[str, int]:
        view, index = self.routing.view, self.shard.index

        def run(txn: Txn) -> dict[str, int]:
            out = {"owned": 0, "moving": 0, "switched": 0, "imported": 0, "held": self.meta.repo_count(txn),
                   "uploadsRefused": self.routing.uploads_refused, "bytesLeft": self.routing.backlog()["left"]}
            for _kind, _name, record in self.meta.moves(txn):
                if record.get("role") == "out" and record["state"] == SWITCHED:
                    out["switched"] += 1
                elif record.get("role") == "in" and record["state"] == "DONE":
                    out["imported"] += 1
            if view is None:
                return out
            for name in self.meta.repo_names(txn):
                if view.target(name) == index and view.source(name) == index:
                    out["owned"] += 1
                elif view.source(name) == index and view.is_moving(name):
                    out["moving"] += 1
            out["moving"] -= out["switched"]
            return out

        return self.meta.read(run)

    @handles(m.CLUSTER_MAP_PUT)
    async def map_put(self, args: m.MapPutRequest, frames: Frames) -> Answer[m.MapReply]:
        new = ClusterMap.from_wire(args["view"])
        index = self.shard.index

        def run(txn: Txn) -> None:
            current = self.meta.view(txn) or {"index": index, "epoch": 0}
            epoch = int(current.get("epoch", 1))
            if new.epoch < epoch:
                raise RegistryError(ErrorCode.STALE_MAP, detail={"view": ClusterMap.from_wire(current).to_wire()})
            if new.epoch == epoch:
                return
            record = {**current, **new.to_wire(), "index": index, "since": time.time()}
            self.meta.put_view(txn, record)
            if new.phase == "transition":
                self._forget_users(txn, ClusterMap.from_wire(current) if epoch > 1 else None)
                self._make_present(txn, new)
            else:
                for kind, name, _ in list(self.meta.moves(txn)):
                    self.meta.delete_move(txn, kind, name)

        await self.meta.write_async(run)
        self.routing.reload()
        log.info("shard %d: cluster map epoch %d (%s, %d → %d shards)", index, new.epoch, new.phase,
                 new.source_count, new.shards)
        return {"index": index, "view": self.routing.view_wire()}, []

    def _forget_users(self, txn: Txn, previous: ClusterMap | None) -> None:
        """Users this shard held but did not own before this resize (leftovers of the last one, not
        cleaned up yet) go now: a user is not monotonic (its last key can be deleted), so its old
        owner could answer ASK for it, and a leftover here must not answer in its place."""
        if previous is None or previous.phase != "stable":
            return
        for user in user_names(self.meta, txn):
            if previous.owner(user) != self.shard.index:
                delete_user_records(self.meta, txn, user)

    def _make_present(self, txn: Txn, view: ClusterMap) -> None:
        """Names with data here get a record, so that no data hides behind an ASK."""
        for _uuid, record in list(self.meta.uploads(txn)):
            repo = record.get("repo")
            if isinstance(repo, str) and view.source(repo) == self.shard.index:
                self.meta.ensure_repo(txn, repo)
        index_sessions(self.meta, txn)

    # -- the plan and the lease (home) -------------------------------------------------------------
    def _home(self) -> None:
        if self.shard.index != 0:
            raise RegistryError(ErrorCode.BAD_REQUEST, "the resize plan lives on shard 0")

    def _plan_reply(self, txn: Txn) -> m.PlanReply:
        return {"plan": self.meta.system_get(txn, _PLAN), "view": self.meta.view(txn),
                "lease": self.meta.system_get(txn, _LEASE)}

    @handles(m.CLUSTER_PLAN_GET)
    async def plan_get(self, args: m.Empty, frames: Frames) -> Answer[m.PlanReply]:
        self._home()
        return self.meta.read(self._plan_reply), []

    @handles(m.CLUSTER_PLAN_BEGIN)
    async def plan_begin(self, args: m.PlanBeginRequest, frames: Frames) -> Answer[m.PlanReply]:
        """Begin a resize (the commit point of the decision), or change the rate of the running one."""
        self._home()
        shards, rate = int(args["shards"]), args.get("max_mbps")

        def run(txn: Txn) -> m.PlanReply:
            plan = self.meta.system_get(txn, _PLAN)
            view = ClusterMap.from_wire(self.meta.view(txn) or {})
            if plan is not None and plan["state"] in ("running", "aborting"):
                if plan["to"] == shards and plan["state"] == "running":
                    plan["maxMbps"] = rate
                    self.meta.system_put(txn, _PLAN, plan)
                    return self._plan_reply(txn)
                done = plan.get("progress", {}).get("names", {})
                total = (done.get("done", 0) + done.get("left", 0)) or 1
                raise RegistryError(
                    ErrorCode.RESIZE_RUNNING,
                    f"a resize {plan['from']}→{plan['to']} (id {plan['id']}) is running, "
                    f"{100 * done.get('done', 0) // total} % done: wait (`shardreg cluster status`) or abort it",
                    detail={"id": plan["id"], "from": plan["from"], "to": plan["to"]})
            if view.phase != "stable" or shards == view.shards:
                return self._plan_reply(txn)
            self.meta.system_put(txn, _PLAN, {
                "id": args["id"], "from": view.shards, "to": shards, "state": "running", "started": time.time(),
                "finished": None, "maxMbps": rate, "error": None, "epoch": view.epoch + 1, "progress": {}})
            return self._plan_reply(txn)

        return await self.meta.write_async(run), []

    @handles(m.CLUSTER_PLAN_UPDATE)
    async def plan_update(self, args: m.PlanUpdateRequest, frames: Frames) -> Answer[m.PlanReply]:
        self._home()
        token, changes = int(args["token"]), dict(args["changes"])

        def run(txn: Txn) -> m.PlanReply:
            lease = self.meta.system_get(txn, _LEASE) or {}
            if token != -1 and lease.get("token") != token:  # -1: an admin route (abort), not the driver
                raise RegistryError(ErrorCode.DENIED, "the driver's lease was taken over")
            plan = self.meta.system_get(txn, _PLAN)
            if plan is None:
                raise RegistryError(ErrorCode.NO_RESIZE)
            plan.update(changes)
            self.meta.system_put(txn, _PLAN, plan)
            return self._plan_reply(txn)

        return await self.meta.write_async(run), []

    @handles(m.CLUSTER_LEASE)
    async def lease(self, args: m.LeaseRequest, frames: Frames) -> Answer[m.LeaseReply]:
        """Take (token 0) or renew the driver's lease: compare-and-set, the token only grows."""
        self._home()
        holder, ttl, token = str(args["holder"]), float(args["ttl"]), int(args["token"])

        def run(txn: Txn) -> m.LeaseReply:
            now = time.time()
            lease = self.meta.system_get(txn, _LEASE) or {"token": 0, "holder": "", "until": 0.0}
            if (token and token == lease["token"]) or lease["until"] < now:
                if not (token and token == lease["token"]):
                    lease["token"] += 1
                lease.update(holder=holder, until=now + ttl)
                self.meta.system_put(txn, _LEASE, lease)
                return {"granted": True, "token": lease["token"], "holder": lease["holder"], "until": lease["until"]}
            return {"granted": False, "token": lease["token"], "holder": lease["holder"], "until": lease["until"]}

        return await self.meta.write_async(run), []


class Cleanup:
    """After a grace in a stable map, delete what this shard holds but does not own (moved away).

    A purge deletes one name per transaction and notes the blob files it frees in the same
    transaction; the files go after the commit and a restart finishes the list, so nothing is
    orphaned. A retired shard (beyond the count) keeps its data: it is stopped, not emptied."""

    def __init__(self, shard: ShardService, routing: Routing, search: Any = None) -> None:
        self.shard, self.meta, self.routing = shard, shard.meta, routing
        self.search = search
        self.purged = 0

    async def run_once(self, delay: float = CLEANUP_DELAY) -> int:
        await self._remove_noted_files()
        view = self.routing.view
        record = self.meta.read(self.meta.view) or {}
        if view is None or view.phase != "stable" or view.epoch <= 1 or self.shard.index >= view.shards:
            return 0
        if time.time() - float(record.get("since", 0)) < delay:
            return 0
        if self.meta.read(lambda txn: self.meta.system_get(txn, _CLEANED)) == view.epoch:
            return 0  # done for this map: a stable map brings no foreign names, so no scan every 5 s
        index, seed = self.shard.index, view.seed

        def foreign(txn: Txn) -> tuple[list[str], list[str]]:
            repos = [r for r in self.meta.repo_names(txn) if shard_for(r, view.shards, seed) != index]
            users = [u for u in user_names(self.meta, txn) if shard_for(u, view.shards, seed) != index]
            return repos, users

        repos, users = self.meta.read(foreign)
        epoch = view.epoch

        def unchanged(txn: Txn) -> bool:  # a new resize may have begun meanwhile: then leave it be
            return int((self.meta.view(txn) or {}).get("epoch", 0)) == epoch

        for repo in repos:
            def purge(txn: Txn, repo: str = repo) -> None:
                if not unchanged(txn):
                    return
                unused = self.meta.delete_repo(txn, repo)
                noted = self.meta.system_get(txn, _PURGE) or []
                self.meta.system_put(txn, _PURGE, sorted(set(noted) | set(unused)))
            await self.meta.write_async(purge)
            if self.search is not None:  # its search records and index entry, in one transaction
                await self.search.purge_repo(repo)
            await self._remove_noted_files()
            for uuid in [u for u, s in list(self.shard.uploads.sessions.items()) if s.repo == repo]:
                await self.shard.uploads.forget(uuid)
        for user in users:
            def forget(txn: Txn, user: str = user) -> int:
                return delete_user_records(self.meta, txn, user) if unchanged(txn) else 0
            await self.meta.write_async(forget)
        if repos or users:
            log.info("shard %d: removed %d repositories and %d users that moved away", index, len(repos), len(users))

        def cleaned(txn: Txn) -> None:
            if unchanged(txn):
                self.meta.system_put(txn, _CLEANED, epoch)
        await self.meta.write_async(cleaned)
        self.purged += len(repos) + len(users)
        return len(repos) + len(users)

    async def _remove_noted_files(self) -> None:
        noted: list[str] = self.meta.read(lambda txn: self.meta.system_get(txn, _PURGE)) or []
        for digest in noted:
            await self.shard.remove_file_if_unused(digest)
        if noted:
            await self.meta.write_async(lambda txn: self.meta.system_delete(txn, _PURGE))

    async def loop(self, interval: float = 5.0) -> None:
        try:  # a purge a crash interrupted: its noted files go at once
            await self._remove_noted_files()
        except Exception:
            log.exception("removing the files of an interrupted purge failed")
        while True:
            await asyncio.sleep(interval)
            try:
                await self.run_once()
            except Exception:
                log.exception("cleanup after a resize failed")


def plan_error(message: str) -> dict[str, Any]:
    return {"state": "failed", "error": message, "finished": time.time()}


__all__ = ["ClusterOps", "Cleanup", "COPYING"]
