"""Whether this shard serves an op for a name: the ownership check every routed op passes.

Each request carries the epoch of the map the gateway routed with (``ShardClient`` adds it). The
shard answers, before any handler runs:

1. the request's epoch is older than the shard's view → ``STALE_MAP`` (the gateway refreshes its
   map from the home, shard 0, and retries);
2. the name is not this shard's under its view → ``MOVED`` (final for this epoch) or ``ASK`` (the
   name is absent here: ask the target) with the shard to try, or ``TRYAGAIN`` (being imported);
3. a write for a name that is fenced (its move is switching owner) → held until the fence ends
   (≤ 1 s, the source enforces it), then decided again.

In a transition (``docs/architecture.md``, "Resharding"), for a moving name:

* on its source: a ``SWITCHED`` move record → ``MOVED`` to the target; the name absent here → ``ASK``
  (a source never creates a moving name it does not hold); otherwise serve;
* on its target: an ``IMPORTING`` record → ``TRYAGAIN``; ``ACTIVE``/``DONE`` with ``via`` → serve;
  no record: serve if the gateway was sent here (``via``), else ``TRYAGAIN`` (data without a record
  may be a leftover of an earlier resize, not yet cleaned up: never served as the owner's).

A request without an epoch (a caller of an older release, or an in-process test calling a shard
directly) is served as before while the cluster was never resized, and refused (503) after.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.clustermap import ClusterMap
from common.errors import ErrorCode, RegistryError
from common.messages import ROUTE_REPO, ROUTE_USER, WRITES
from common.protocol import Op
from shard.lmdbstore import Txn
from shard.metastore import MetaStore
from shard.userdata import user_present

#: Move states (``moves`` records): out = on the source, in = on the target.
COPYING, SWITCHED = "COPYING", "SWITCHED"
IMPORTING, ACTIVE, DONE = "IMPORTING", "ACTIVE", "DONE"
#: Ops whose shard is fixed by an earlier routed op (the PATCH's begin): never redirected.
PINNED = frozenset({Op.UPLOAD_WRITE, Op.UPLOAD_END, Op.UPLOAD_ABORT})
#: Fan-outs: asked of every shard; each lists only what it owns, so they must agree on the map.
FANOUT = frozenset({Op.CATALOG, Op.REPO_COUNT, Op.SEARCH_IMAGES, Op.SEARCH_REPOS, Op.SEARCH_PAGE})
#: Histogram buckets of the fence's duration (seconds), /metrics.
FENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Longest a fence may hold writes: the source refuses the switch after it.
FENCE_LIMIT = 1.0
Name = tuple[str, str]


def _nothing() -> None:
    return None


def check_upload_start(meta: MetaStore, txn: Txn, repo: str, index: int) -> None:
    """In ``upload.start``'s write: refuse (TRYAGAIN) an upload admitted under the stable map whose
    record would land after the transition view did, for a moving repository that holds nothing
    here. Installing the view makes such repositories present (``cluster.map.put``) so that their
    uploads move with them; one recorded after it would be left behind, unlisted, and every later
    request of it would be ASKed to the target, which does not know it (the bench's closing-PUT 404).
    The gateway retries the first hop, which now ASKs: the upload begins on the target."""
    record = meta.view(txn)
    if record is None or int(record.get("epoch", 1)) <= 1:
        return
    view = ClusterMap.from_wire(record)
    if view.phase == "transition" and view.source(repo) == index and view.is_moving(repo) and not meta.repo_exists(txn, repo):
        raise RegistryError(ErrorCode.TRYAGAIN, "the cluster map changed while this upload began",
                            detail={"shard": view.target(repo)})


@dataclass
class Fence:
    deadline: float
    released: asyncio.Event = field(default_factory=asyncio.Event)


class Routing:
    """The shard's view of the map, and the ownership check (see the module docstring)."""

    def __init__(self, meta: MetaStore, index: int, upload_busy: Callable[[str], bool]) -> None:
        self.meta = meta
        self.index = index
        self.upload_busy = upload_busy
        self.fences: dict[Name, Fence] = {}
        #: Names whose switch is being committed: writes wait for the commit, even past the fence's
        #: deadline (else a write could slip in between the switch's check and its commit).
        self.switching: set[Name] = set()
        self.inflight: Counter[Name] = Counter()
        #: Redirects answered, by kind (status, metrics).
        self.redirects: Counter[str] = Counter()
        self.fence_seconds: list[float] = []
        #: Every fence's duration, as a cumulative histogram (FENCE_BUCKETS, then +Inf), and its sum.
        self.fence_buckets = [0] * (len(FENCE_BUCKETS) + 1)
        self.fence_sum = 0.0
        #: Uploads in progress when their repository switched (their clients restart them).
        self.uploads_refused = 0
        self.reload()

    # -- the view ------------------------------------------------------------------------------
    def reload(self) -> None:
        record = self.meta.read(self.meta.view)
        self.view: ClusterMap | None = None
        if record is not None and int(record.get("epoch", 1)) > 0:
            self.view = ClusterMap.from_wire(record)

    @property
    def epoch(self) -> int:
        return self.view.epoch if self.view else 0

    def view_wire(self) -> dict[str, Any] | None:
        return self.view.to_wire() if self.view else None

    # -- the check -----------------------------------------------------------------------------
    def name_of(self, op: Op, args: dict[str, Any]) -> Name | None:
        if op in ROUTE_REPO or (op is Op.REPO_COUNT and args.get("repo")):
            return ("repo", args["repo"])
        if op in ROUTE_USER or (op in (Op.APIKEY_LOOKUP, Op.SESSION_GET, Op.SESSION_DELETE) and args.get("user")):
            return ("user", str(args["user"]))
        return None

    def check(self, op: Op, args: dict[str, Any]) -> Name | None:
        """Refuse (raise) what this shard must not serve; the routed name of an op it serves."""
        epoch = args.get("epoch")
        if epoch is None:  # a caller of an older release (or a test calling the shard directly)
            if self.epoch > 1 and op not in PINNED and (op in FANOUT or self.name_of(op, args) is not None):
                raise RegistryError(ErrorCode.UNAVAILABLE, "this cluster was resized: the caller routes with an "
                                    "older release's map", headers={"Retry-After": "5"})
            return None
        if op in PINNED or (name := self.name_of(op, args)) is None:
            if op in FANOUT and self.view is not None and epoch < self.view.epoch:
                raise self._stale()
            return None
        view = self.view
        if view is None:
            raise RegistryError(ErrorCode.TRYAGAIN, "this shard has no cluster map yet", detail={"view": None})
        if epoch < view.epoch:
            raise self._stale()
        self._decide(view, name, args.get("via"))
        return name

    def _stale(self) -> RegistryError:
        self.redirects["stale_map"] += 1
        return RegistryError(ErrorCode.STALE_MAP, detail={"view": self.view_wire()})

    def _redirect(self, code: ErrorCode, shard: int) -> RegistryError:
        self.redirects[code.name.lower()] += 1
        return RegistryError(code, detail={"shard": shard, "epoch": self.epoch})

    def _decide(self, view: ClusterMap, name: Name, via: str | None) -> None:
        kind, value = name
        source, target = view.source(value), view.target(value)
        if source == target:
            if source != self.index:
                raise self._redirect(ErrorCode.MOVED, source)
            return
        if self.index == source:
            record, present = self.meta.read(lambda txn: self._state(txn, kind, value))
            if record is not None and record.get("role") == "out" and record["state"] != COPYING:
                raise self._redirect(ErrorCode.MOVED, target)
            if not present:
                raise self._redirect(ErrorCode.ASK, target)
            return
        if self.index == target:
            record, present = self.meta.read(lambda txn: self._state(txn, kind, value))
            state = record["state"] if record is not None and record.get("role") == "in" else None
            if state == IMPORTING:
                raise RegistryError(ErrorCode.TRYAGAIN, "being imported", detail={"shard": source})
            if state in (ACTIVE, DONE) and via:
                return
            if state is None and via:  # born here (ASK), or asked again after an ASK
                return
            raise RegistryError(ErrorCode.TRYAGAIN, "not switched yet", detail={"shard": source})
        raise self._redirect(ErrorCode.MOVED, source)

    def _state(self, txn: Txn, kind: str, name: str) -> tuple[dict[str, Any] | None, bool]:
        record = self.meta.move_of(txn, kind, name)
        present = self.meta.repo_exists(txn, name) if kind == "repo" else user_present(self.meta, txn, name)
        return record, present

    async def admit(self, op: Op, args: dict[str, Any]) -> Callable[[], None]:
        """The check, and for a write: wait out a fence, count it in flight until released."""
        name = self.check(op, args)
        if name is None or op not in WRITES:
            return _nothing
        while (fence := self.fences.get(name)) is not None or name in self.switching:
            if fence is None:
                await asyncio.sleep(0.005)
            else:
                try:
                    await asyncio.wait_for(fence.released.wait(),
                                           max(0.01, fence.deadline - time.monotonic()) + 0.05)
                except TimeoutError:
                    if name not in self.switching:  # the source bounds the pause: lift it
                        self.unfence(name)
            name = self.check(op, args)  # decided again: it may have switched meanwhile
            if name is None:
                return _nothing
        self.inflight[name] += 1

        def release() -> None:
            self.inflight[name] -= 1
            if self.inflight[name] <= 0:
                del self.inflight[name]

        return release

    def status(self) -> dict[str, Any]:
        """For ``status`` and the gateway's /metrics: cheap (the move records are few)."""
        states: Counter[str] = Counter()

        def count(txn: Txn) -> None:
            for _kind, _name, record in self.meta.moves(txn):
                states[f"{record.get('role')}:{record['state']}"] += 1

        self.meta.read(count)
        return {"epoch": self.epoch, "phase": self.view.phase if self.view else "none",
                "moves": dict(states), "redirects": dict(self.redirects),
                "fence": {"buckets": list(zip(FENCE_BUCKETS, self.fence_buckets, strict=False)),
                          "sum": self.fence_sum, "count": self.fence_buckets[-1]},
                "uploadsRefused": self.uploads_refused, "backlog": self.backlog()}

    def backlog(self) -> dict[str, int]:
        """In a transition, what this shard still has to move out (repositories and their linked
        bytes) and the linked bytes of those it switched; zeros otherwise (status, /metrics)."""
        view, out = self.view, {"names": 0, "left": 0, "moved": 0}
        if view is None or view.phase != "transition" or view.source_count <= self.index:
            return out

        def run(txn: Txn) -> None:
            for name in self.meta.repo_names(txn):
                if view.source(name) != self.index or not view.is_moving(name):
                    continue
                size = sum(int(link["size"]) for _, link in self.meta.links(txn, name))
                record = self.meta.move_of(txn, "repo", name)
                if record is not None and record.get("role") == "out" and record["state"] == SWITCHED:
                    out["moved"] += size
                else:
                    out["names"] += 1
                    out["left"] += size

        self.meta.read(run)
        return out

    def serves(self, repo: str, epoch: int | None) -> bool:
        """Whether a read of repository ``repo`` routed with map ``epoch`` would be served here:
        the check of each name a notice carries (``manifest.pulls``), which is routed by none."""
        try:
            self.check(Op.MANIFEST_GET, {"repo": repo} if epoch is None else {"repo": repo, "epoch": epoch})
        except RegistryError:
            return False
        return True

    def owns_stably(self, name: str) -> bool:
        """Whether this shard owns repository ``name`` and it is not moving: what a shard's own
        background writers (sync's periodic mirroring) may write to, without a routed op."""
        view = self.view
        if view is None:
            return False
        if view.phase != "stable" and view.is_moving(name):
            return False
        return view.owner(name) == self.index

    def lists(self, name: str) -> bool:
        """Whether a listing on this shard shows repository ``name`` (no gaps, no duplicates once
        the gateway merges: during a switch both sides may list it, and the gateway drops repeats)."""
        view = self.view
        if view is None or view.epoch <= 1:
            return True
        source, target = view.source(name), view.target(name)
        if source == target or view.phase == "stable":
            return target == self.index
        record = self.meta.read(lambda txn: self.meta.move_of(txn, "repo", name))
        if self.index == source:
            return record is None or record.get("role") != "out" or record["state"] == COPYING
        if self.index == target:
            return record is None or record.get("role") != "in" or record["state"] in (ACTIVE, DONE)
        return False

    # -- fences --------------------------------------------------------------------------------
    async def fence(self, name: Name, budget: float) -> Fence:
        """Stop admitting writes for ``name`` and wait (≤ ``budget``) for those admitted to end.

        Raises TRYAGAIN (busy) if they do not: the fence is lifted again."""
        started = time.monotonic()
        fence = self.fences.get(name)
        if fence is None:
            fence = self.fences[name] = Fence(started + FENCE_LIMIT)
        while self.inflight.get(name) or (name[0] == "repo" and self.upload_busy(name[1])):
            if time.monotonic() - started >= min(budget, FENCE_LIMIT):
                self.unfence(name)
                raise RegistryError(ErrorCode.TRYAGAIN, "busy: writes in progress", detail={"busy": True})
            await asyncio.sleep(0.005)
        return fence

    def fenced(self, name: Name) -> bool:
        fence = self.fences.get(name)
        return fence is not None and time.monotonic() < fence.deadline

    def unfence(self, name: Name) -> None:
        fence = self.fences.pop(name, None)
        if fence is not None:
            seconds = time.monotonic() - (fence.deadline - FENCE_LIMIT)
            self.fence_seconds.append(seconds)
            del self.fence_seconds[:-1000]
            self.fence_sum += seconds
            for i, bound in enumerate((*FENCE_BUCKETS, float("inf"))):
                if seconds <= bound:
                    self.fence_buckets[i] += 1
            fence.released.set()
