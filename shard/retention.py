"""Retention passes (``storage.retention``): each shard cleans its own repositories.

A pass runs every ``storage.gcInterval`` (with gc, from the shard's maintenance loop) or on
demand (``retention.run``: ``shardreg retention --dry-run``). For each repository a policy
matches, it reads a snapshot in a read transaction (readers never block writers in LMDB),
plans with :func:`shard.retention_plan.plan`, and applies the plan in write transactions of at
most :data:`CHUNK` deletions each, going through the shard's group-committed writer like any
push: a push or pull never waits for more than one short chunk. There is no lock.

Each deletion is checked again in its transaction: the tag still names the planned
manifest, no tag outside the plan points to it, no index still present lists it, and it was
neither pushed nor pulled since the pass started (``note``, from the ``on_write`` and
``on_pull`` hooks) — so a manifest pushed or pulled while a pass runs is never deleted by it.
Work is bounded: at most :data:`MAX_PER_REPO` deletions per repository and
:data:`MAX_PER_PASS` per pass; the next pass resumes after the last repository reached.
Deleted manifests leave their blobs linked but unreferenced: the existing gc unlinks them
after ``gcDelay``. With ``dryRun`` nothing is deleted; the report (logged, kept for
``status``/metrics and returned to ``retention.run``) is the same.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from typing import Any

from common.clustermap import ClusterMap
from common.config.lifecycle import LifecycleConfig, retention_policy
from shard import clock, faults
from shard.hooks import Deleted, Hooks
from shard.lmdbstore import Txn
from shard.metastore import MetaStore
from shard.pushpolicy import PushPolicy
from shard.retention_plan import Action, Snapshot, plan
from shard.search_meta import SearchMeta

log = logging.getLogger("shardreg.retention")
CHUNK = 32
MAX_PER_REPO = 2000
MAX_PER_PASS = 20000


def retention_allowed(meta: MetaStore, txn: Txn, repo: str) -> bool:
    """May retention delete in ``repo`` now? Checked in every deleting transaction.

    Not while the repository is being moved by a resize (a ``moves`` record on either side, the
    check gc makes), and never on a shard that does not own it under its map (a leftover that a
    finished move's cleanup has not purged yet)."""
    if meta.move_of(txn, "repo", repo) is not None:
        return False
    record = meta.view(txn)
    if record is None or int(record.get("epoch", 1)) <= 1:
        return True  # never resized: every repository on a shard is its own
    view = ClusterMap.from_wire(record)
    return view.phase == "stable" and view.owner(repo) == int(record.get("index", -1))


class RetentionRunner:
    def __init__(self, meta: MetaStore, search: SearchMeta, config: LifecycleConfig, hooks: Hooks,
                 policy: PushPolicy | None, gc_delay: float) -> None:
        self.meta = meta
        self.search = search
        self.config = config
        self.hooks = hooks
        self.policy = policy
        self.gc_delay = gc_delay
        self._touched: set[tuple[str, str]] | None = None
        self._lock = asyncio.Lock()
        self._resume_after: str | None = None
        self.last_report: dict[str, Any] = {}
        self.totals = {"passes": 0, "deleted_tags": 0, "deleted_manifests": 0, "planned": 0, "skipped": 0}
        hooks.on_write.append(self.note)
        hooks.on_pull.append(self.note)

    def note(self, repo: str, digest: str) -> None:
        """A manifest was pushed or pulled: no running pass may delete it."""
        if self._touched is not None:
            self._touched.add((repo, digest))

    @property
    def configured(self) -> bool:
        return bool(self.config.retention.policies)

    # -- a pass ------------------------------------------------------------------------------
    async def run_pass(self, dry_run: bool | None = None, gc: bool = False) -> dict[str, Any]:
        async with self._lock:  # one pass at a time on this shard (not a lock on the data)
            return await self._pass(self.config.retention.dry_run if dry_run is None else dry_run, gc)

    async def _pass(self, dry_run: bool, gc: bool) -> dict[str, Any]:
        started = clock.now()
        self._touched = set()
        report: dict[str, Any] = {"started": started, "dryRun": dry_run, "repos": {}, "deleted": 0, "skipped": 0}
        budget = MAX_PER_PASS
        try:
            repos = self.meta.read(lambda txn: list(self.meta.repo_names(txn)))
            if self._resume_after is not None:
                later = [r for r in repos if r > self._resume_after]
                repos = later + [r for r in repos if r <= self._resume_after]
            self._resume_after = None
            for repo in repos:
                if budget <= 0:
                    report["incomplete"] = True
                    break
                policy = retention_policy(self.config.retention, repo)
                if policy is None:
                    continue
                actions = plan(self._snapshot(repo), policy, self.config.immutable, started,
                               self.config.retention.delay)[:min(MAX_PER_REPO, budget)]
                if not actions:
                    continue
                budget -= len(actions)
                self._resume_after = repo
                done = actions if dry_run else await self._apply(repo, actions)
                for action in done:
                    log.info("retention%s: %s %s %s@%s (%s)", " (dry run)" if dry_run else "",
                             "would delete" if dry_run else "deleted", "tag" if action.kind == "tag" else "manifest",
                             repo, action.reference, action.reason)
                report["repos"][repo] = [a.as_dict() for a in done]
                report["deleted"] += len(done)
                report["skipped"] += len(actions) - len(done)
                await asyncio.sleep(0)
            if budget > 0:
                self._resume_after = None
            if gc:
                report["blobs"] = self._gc_plan()
        finally:
            self._touched = None
        report["finished"] = clock.now()
        self._count(report, dry_run)
        self.last_report = report
        log.info("retention%s: pass done, %d %s, %d left alone (pushed or pulled meanwhile)",
                 " (dry run)" if dry_run else "", report["deleted"], "to delete" if dry_run else "deleted",
                 report["skipped"])
        return report

    def _count(self, report: dict[str, Any], dry_run: bool) -> None:
        self.totals["passes"] += 1
        self.totals["skipped"] += report["skipped"]
        for actions in report["repos"].values():
            for action in actions:
                if dry_run:
                    self.totals["planned"] += 1
                elif action["action"] == "deleteTag":
                    self.totals["deleted_tags"] += 1
                else:
                    self.totals["deleted_manifests"] += 1

    def _snapshot(self, repo: str) -> Snapshot:
        def run(txn: Txn) -> Snapshot:
            tags = dict(self.meta.tags(txn, repo))
            manifests = {d: {"mediaType": r.get("mediaType", ""), "subject": r.get("subject"),
                             "children": r.get("children") or [], "created": r.get("created", 0.0)}
                         for d, r in self.meta.manifest_items(txn, repo)}
            return Snapshot(repo, tags, manifests, {})
        snap = self.meta.read(run)
        with self.search.store.begin_read() as stxn:
            for digest in snap.manifests:
                pushed = self.search.store.push(stxn, repo, digest).get("at")
                snap.stats[digest] = (pushed, 0.0)
        for digest, (pushed, _) in snap.stats.items():
            snap.stats[digest] = (pushed, self.search.read_stats(repo, digest)[1])
        return snap

    async def _apply(self, repo: str, actions: list[Action]) -> list[Action]:
        """Delete in chunks, each deletion checked again in its transaction; returns what was deleted."""
        planned_tags = {a.reference for a in actions if a.kind == "tag"}
        done: list[Action] = []
        for start in range(0, len(actions), CHUNK):
            chunk = actions[start:start + CHUNK]
            deleted = await self.meta.write_async(functools.partial(self._delete, repo=repo, chunk=chunk,
                                                                    planned_tags=planned_tags))
            faults.hit("retention.chunk", repo)  # tests: a kill between two chunks of a pass
            if self.policy is not None and deleted:
                self.policy.committed()
            for action in deleted:
                tags = [a.reference for a in deleted if a.kind == "tag" and a.digest == action.digest]
                if action.kind == "manifest":
                    await self.hooks.deleted(Deleted(repo=repo, digest=action.digest, tags=tags))
                elif not any(a.kind == "manifest" and a.digest == action.digest for a in deleted):
                    await self.hooks.deleted(Deleted(repo=repo, digest=None, tags=[action.reference]))
            done += deleted
        return done

    def _delete(self, txn: Txn, *, repo: str, chunk: list[Action], planned_tags: set[str]) -> list[Action]:
        if not retention_allowed(self.meta, txn, repo):
            return []
        touched = self._touched or set()
        listed: Counter[str] | None = None  # how many indexes still present list each digest
        deleted: list[Action] = []
        for action in chunk:
            if (repo, action.digest) in touched:
                continue
            if action.kind == "tag":
                if self.meta.tag_digest(txn, repo, action.reference) != action.digest:
                    continue
                self.meta.delete_tag(txn, repo, action.reference)
            else:
                record = self.meta.get_manifest(txn, repo, action.digest)
                if record is None or set(self.meta.tags_pointing_to(txn, repo, action.digest)) - planned_tags:
                    continue
                if listed is None:
                    listed = Counter(c for _, r in self.meta.manifest_items(txn, repo) for c in r.get("children") or [])
                if listed[action.digest] > 0:
                    continue
                listed.subtract(record.get("children") or [])
                for tag in self.meta.tags_pointing_to(txn, repo, action.digest):
                    self.meta.delete_tag(txn, repo, tag)
                self.meta.delete_manifest(txn, repo, action.digest)
                if record.get("subject"):
                    self.meta.delete_referrer(txn, repo, record["subject"], action.digest)
            if self.policy is not None:
                self.policy.record_delete(txn, repo, action.reference, action.digest, action.media_type,
                                          {"actor": "retention"})
            deleted.append(action)
        return deleted

    def _gc_plan(self) -> dict[str, list[str]]:
        """The blobs the next gc would unlink now (unreferenced, older than gcDelay), per repository."""
        cutoff = time.time() - self.gc_delay  # link times are wall-clock times (shard.maintenance)

        def run(txn: Txn) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            for repo in self.meta.repo_names(txn):
                used = {b for r in self.meta.manifests(txn, repo) for b in r.get("blobs") or []}
                doomed = [d for d, link in self.meta.links(txn, repo) if d not in used and link.get("at", 0) < cutoff]
                if doomed:
                    out[repo] = doomed
            return out
        return self.meta.read(run)

    def status(self) -> dict[str, Any]:
        last = self.last_report
        return {**self.totals, "last_started": last.get("started", 0.0), "last_finished": last.get("finished", 0.0),
                "last_dry_run": bool(last.get("dryRun")), "last_count": last.get("deleted", 0)}
