"""What the gateway's ``/metrics`` adds at scrape time, so that ``serve`` mode needs no other port:
each shard's storage (asked with the ``status`` op, short timeout), the build, and process figures
(CPU, memory, open files) of every process of this host's cluster — each gateway worker, the
gateway parent, the supervisor (``shardreg serve``) and, when the shards run beside the gateway (embedded mode) without a metrics
listener of their own (``cluster.shardMetricsPort``), each shard. Shards that have one export their
storage and process there; the gateway then reports only ``shardreg_shard_up``/``_ready``, so
that no series is scraped twice.

Process figures come from ``/proc/<pid>`` (prometheus-client's process collector pointed at each
pid), labelled ``role`` and ``pid`` (and ``shard`` for shards).
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric

from common import messages
from common.buildinfo import BuildInfoCollector
from common.errors import RegistryError
from gateway.metrics.lifecycle import LifecycleCollector
from gateway.shard_client import ShardClient

#: A scrape never waits longer than this for a shard.
STATUS_TIMEOUT = 2.0

#: (series, help, StatusReply key) of the per-shard gauges.
SHARD_GAUGES = (
    ("shardreg_shard_lmdb_bytes", "Size of the LMDB metadata", "lmdb_bytes"),
    ("shardreg_shard_blob_bytes", "Bytes of blob files", "blob_bytes"),
    ("shardreg_shard_blob_count", "Number of blob files", "blob_count"),
    ("shardreg_shard_disk_free_bytes", "Free bytes on the shard's filesystem", "disk_free"),
    ("shardreg_shard_uploads_in_progress", "Upload sessions in memory", "uploads"),
)

#: One process to report: its labels and pid.
Process = tuple[dict[str, str], int]


async def shard_statuses(client: ShardClient) -> list[dict[str, Any] | None]:
    async def one(index: int) -> dict[str, Any] | None:
        try:
            return dict((await client.call(index, messages.STATUS({}), timeout=STATUS_TIMEOUT)).result)
        except RegistryError:
            return None

    return list(await asyncio.gather(*(one(i) for i in range(client.count))))


class ShardCollector:
    """The shards' gauges from their ``status`` replies (``None``: the shard did not answer).

    ``storage``: also the storage gauges the shards' own listeners export — only when they have
    none (``cluster.shardMetricsPort`` 0), so that no series is scraped twice."""

    def __init__(self, statuses: list[dict[str, Any] | None], storage: bool) -> None:
        self.statuses = statuses
        self.storage = storage

    def collect(self) -> Iterable[Metric]:
        up = Metric("shardreg_shard_up", "Whether the shard answered the gateway's status request", "gauge")
        ready = Metric("shardreg_shard_ready", "Whether the shard can serve writes (its readiness)", "gauge")
        damaged = Metric("shardreg_shard_damaged_objects", "Blobs and manifests the last scrub found damaged",
                         "gauge")
        gauges = [(Metric(name, doc, "gauge"), key) for name, doc, key in SHARD_GAUGES]
        for index, status in enumerate(self.statuses):
            labels = {"shard": str(index)}
            up.add_sample("shardreg_shard_up", labels, 0 if status is None else 1)
            if status is None:
                continue
            ready.add_sample("shardreg_shard_ready", labels, 1 if status.get("ready", True) else 0)
            damaged.add_sample("shardreg_shard_damaged_objects", labels, len(status.get("damaged") or ()))
            for metric, key in gauges:
                if key in status:
                    metric.add_sample(metric.name, labels, status[key])
        reshard = list(self._reshard())
        if not self.storage:
            return [up, ready, *reshard]
        return [up, ready, damaged, *(metric for metric, _ in gauges), *reshard]

    def _reshard(self) -> Iterable[Metric]:
        """Resharding (issue 12): each shard's map epoch, its move records by state, the redirects
        it answered, the fences it held (histogram) and the uploads refused by a switch."""
        epoch = Metric("shardreg_cluster_epoch", "The cluster map version the shard routes by", "gauge")
        names = Metric("shardreg_reshard_names", "Move records on the shard, by role and state", "gauge")
        redirects = Metric("shardreg_reshard_redirects", "Redirects the shard answered (MOVED, ASK, STALE_MAP)",
                           "counter")
        fence = Metric("shardreg_reshard_fence_seconds", "How long a switching name's writes were held", "histogram")
        refused = Metric("shardreg_reshard_uploads_refused", "Uploads in progress refused by a switch", "counter")
        nbytes = Metric("shardreg_reshard_bytes", "In a resize, the linked bytes of the repositories the shard "
                        "still has to move out (state=left) and of those it switched (state=moved)", "gauge")
        pending = Metric("shardreg_reshard_pending_names", "In a resize, repositories the shard still has to move out",
                         "gauge")
        for index, status in enumerate(self.statuses):
            info = (status or {}).get("reshard")
            if not info:
                continue
            labels = {"shard": str(index)}
            epoch.add_sample("shardreg_cluster_epoch", labels, info["epoch"])
            for key, count in sorted(info.get("moves", {}).items()):
                role, state = key.split(":", 1)
                names.add_sample("shardreg_reshard_names", {**labels, "role": role, "state": state}, count)
            for kind, count in sorted(info.get("redirects", {}).items()):
                redirects.add_sample("shardreg_reshard_redirects_total", {**labels, "kind": kind}, count)
            buckets = info.get("fence") or {}
            for bound, count in buckets.get("buckets", []):
                fence.add_sample("shardreg_reshard_fence_seconds_bucket", {**labels, "le": str(bound)}, count)
            fence.add_sample("shardreg_reshard_fence_seconds_bucket", {**labels, "le": "+Inf"}, buckets.get("count", 0))
            fence.add_sample("shardreg_reshard_fence_seconds_sum", labels, buckets.get("sum", 0.0))
            fence.add_sample("shardreg_reshard_fence_seconds_count", labels, buckets.get("count", 0))
            refused.add_sample("shardreg_reshard_uploads_refused_total", labels, info.get("uploadsRefused", 0))
            backlog = info.get("backlog") or {}
            for state in ("left", "moved"):
                nbytes.add_sample("shardreg_reshard_bytes", {**labels, "state": state}, backlog.get(state, 0))
            pending.add_sample("shardreg_reshard_pending_names", labels, backlog.get("names", 0))
        return [epoch, names, redirects, fence, refused, nbytes, pending]


class ProcessesCollector:
    """prometheus-client's process figures for several processes, one labelled sample each."""

    def __init__(self, processes: list[Process]) -> None:
        self.processes = processes

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for labels, pid in self.processes:
            if not os.path.isdir(f"/proc/{pid}"):
                continue
            for family in ProcessCollector(pid=functools.partial(int, pid), registry=None).collect():
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    merged.add_sample(sample.name, {**labels, "pid": str(pid)}, sample.value)
        return list(families.values())


def gateway_processes(worker_pids: Iterable[int]) -> list[Process]:
    """This gateway's workers (every pid that writes metric files, and this one) and its parent."""
    pids = sorted({os.getpid(), *worker_pids})
    processes: list[Process] = [({"role": "gateway-worker", "shard": ""}, pid) for pid in pids]
    parent = os.getppid()
    if parent > 1 and _is_shardreg(parent):
        processes.append(({"role": "gateway", "shard": ""}, parent))
        supervisor = _parent_of(parent)
        if supervisor > 1 and _is_shardreg(supervisor):  # shardreg serve
            processes.append(({"role": "supervisor", "shard": ""}, supervisor))
    return processes


def _parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return int(fh.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _is_shardreg(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except OSError:
        return False
    return b"shardreg" in cmdline or b"common.cli" in cmdline


def cluster_text(shards_here: bool, statuses: list[dict[str, Any] | None], worker_pids: Iterable[int]) -> bytes:
    """The exposition text of the shards' gauges, the build and the processes (run in a thread: /proc reads).

    ``shards_here``: the shards run on this host (embedded) without a metrics listener of their own:
    the gateway reports their storage and their processes."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShardCollector(statuses, storage=shards_here))
    registry.register(BuildInfoCollector())
    registry.register(LifecycleCollector(statuses))  # retention and event delivery (gateway/metrics/lifecycle.py)
    processes = gateway_processes(worker_pids)
    if shards_here:  # their pids are ours to read
        processes += [({"role": "shard", "shard": str(index)}, int(status["pid"]))
                      for index, status in enumerate(statuses) if status and status.get("pid")]
    registry.register(ProcessesCollector(processes))
    return generate_latest(registry)
