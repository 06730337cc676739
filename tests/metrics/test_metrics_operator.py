"""What an operator expects on ``/metrics`` (issue 11 items 5 and 9), from a real ``serve`` cluster
without extra ports: the gateway's endpoint alone covers every process (CPU, RSS, open files per
gateway worker, the gateway parent and each shard), the build, and each shard's storage and free
disk. A shard's own listener (``cluster.shardMetricsPort``) has its op latency as a histogram, its
disk free space, the build and its process; the gateway then leaves the shards' series to it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.metrics.cluster import cluster_text
from shard.health import OpLatency, metrics_text
from shard.service import ShardService
from tests.cluster import Cluster
from tests.metrics.test_metrics_cluster import samples, scrape
from tests.oci import push_image


@pytest.fixture(scope="module")
def operated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    config = {"extensions": {"metrics": {"enable": True}}}
    old = os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        with Cluster(tmp_path_factory.mktemp("operator") / "data", shards=1, workers=2, config=config) as cluster:
            with httpx.Client(base_url=cluster.url, timeout=30) as client:
                push_image(client, "operated/app", "v1", layers=1, layer_size=50_000)
            yield cluster
    finally:
        if old is not None:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = old


def _labelled(text: str, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample, labels) in samples(text) if sample == name]


def _scrape_once_workers_started(url: str, workers: int, timeout: float = 20.0) -> str:
    """A scrape once every worker has started: a cluster answers as soon as its first worker does,
    and a worker appears on /metrics once its metric files exist."""
    deadline = time.monotonic() + timeout
    while True:
        text = scrape(url)
        started = {labels["pid"] for labels in _labelled(text, "process_resident_memory_bytes")
                   if labels["role"] == "gateway-worker"}
        if len(started) >= workers or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def test_gateway_metrics_cover_every_process(operated: Cluster) -> None:
    text = _scrape_once_workers_started(operated.url, 2)
    children = operated.children()
    rss = _labelled(text, "process_resident_memory_bytes")
    roles = {(labels["role"], labels["pid"]) for labels in rss}
    assert ("gateway", str(children["gateway"])) in roles
    assert ("supervisor", str(operated.process.pid)) in roles  # type: ignore[union-attr]
    assert ("shard", str(children["shard-0"])) in roles
    assert len([r for r in roles if r[0] == "gateway-worker"]) == 2
    for name in ("process_cpu_seconds_total", "process_open_fds"):
        assert len(_labelled(text, name)) == len(rss)
    values = samples(text)
    assert all(values[("process_resident_memory_bytes", tuple(sorted(labels.items())))] > 1_000_000 for labels in rss)


def test_gateway_metrics_have_build_and_shard_storage(operated: Cluster) -> None:
    text = scrape(operated.url)
    values = samples(text)
    build = _labelled(text, "shardreg_build_info")
    assert len(build) == 1 and build[0]["version"] == "0.1.0" and build[0]["revision"]
    shard = (("shard", "0"),)
    assert values[("shardreg_shard_up", shard)] == 1 and values[("shardreg_shard_ready", shard)] == 1
    assert values[("shardreg_shard_disk_free_bytes", shard)] > 0
    assert values[("shardreg_shard_blob_bytes", shard)] >= 50_000
    assert values[("shardreg_shard_blob_count", shard)] >= 2


def test_shard_listener_has_op_histograms_disk_free_and_its_process(tmp_path: Path) -> None:
    service = ShardService(tmp_path / "shard-0", 0, 1)
    latency = OpLatency(0)
    try:
        for seconds in (0.0004, 0.003, 0.2):
            latency.observe("manifest.put", seconds)
        text = metrics_text(service, latency).decode()
    finally:
        service.close()
    values = samples(text)
    op = (("op", "manifest.put"), ("shard", "0"))
    assert values[("shardreg_shard_op_seconds_bucket", (("le", "0.0005"), *op))] == 1
    assert values[("shardreg_shard_op_seconds_bucket", (("le", "0.005"), *op))] == 2
    assert values[("shardreg_shard_op_seconds_count", op)] == 3
    assert values[("shardreg_shard_disk_free_bytes", (("shard", "0"),))] > 0
    assert values[("process_resident_memory_bytes", ())] > 1_000_000
    assert _labelled(text, "shardreg_build_info")


def test_the_gateway_leaves_shard_series_to_shard_listeners(tmp_path: Path) -> None:
    statuses = [{"lmdb_bytes": 1, "blob_bytes": 2, "blob_count": 3, "disk_free": 4, "uploads": 0, "damaged": [],
                 "ready": True, "pid": os.getpid()}, None]
    text = cluster_text(False, statuses, []).decode()
    values = samples(text)
    assert values[("shardreg_shard_up", (("shard", "0"),))] == 1 and values[("shardreg_shard_up", (("shard", "1"),))] == 0
    assert not _labelled(text, "shardreg_shard_disk_free_bytes")
    assert not [labels for labels in _labelled(text, "process_open_fds") if labels["role"] == "shard"]
    text = cluster_text(True, statuses, []).decode()
    assert samples(text)[("shardreg_shard_disk_free_bytes", (("shard", "0"),))] == 4
    assert [labels for labels in _labelled(text, "process_open_fds") if labels["role"] == "shard"]
