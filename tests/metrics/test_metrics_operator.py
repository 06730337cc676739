"""What an operator expects on ``/metrics`` (issue 11 items 5 and 9), from a real ``serve`` cluster:
the gateway's endpoint alone covers every process (CPU, RSS, open files per gateway worker, the
gateway parent and each shard), the build, and each shard's storage and free disk; a shard's own
listener has its op latency as a histogram, its disk free space, the build and its process."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster import Cluster, free_port
from tests.metrics.test_metrics_cluster import samples, scrape
from tests.oci import push_image


@pytest.fixture(scope="module")
def operated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    shard_port = free_port()
    config = {"extensions": {"metrics": {"enable": True}}, "cluster": {"shardMetricsPort": shard_port}}
    old = os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        with Cluster(tmp_path_factory.mktemp("operator") / "data", shards=1, workers=2, config=config) as cluster:
            cluster.shard_port = shard_port  # type: ignore[attr-defined]
            with httpx.Client(base_url=cluster.url, timeout=30) as client:
                push_image(client, "operated/app", "v1", layers=1, layer_size=50_000)
                for _ in range(6):  # new connections: both workers serve some
                    httpx.get(f"{cluster.url}/v2/", headers={"Connection": "close"})
            yield cluster
    finally:
        if old is not None:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = old


def _labelled(text: str, name: str) -> list[dict[str, str]]:
    return [dict(labels) for (sample, labels) in samples(text) if sample == name]


def test_gateway_metrics_cover_every_process(operated: Cluster) -> None:
    text = scrape(operated.url)
    children = operated.children()
    rss = _labelled(text, "process_resident_memory_bytes")
    roles = {(labels["role"], labels["pid"]) for labels in rss}
    assert ("gateway", str(children["gateway"])) in roles
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


def test_shard_listener_has_op_histograms_disk_free_and_its_process(operated: Cluster) -> None:
    port = operated.shard_port  # type: ignore[attr-defined]
    r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert r.status_code == 200
    values = samples(r.text)
    buckets = [labels for (name, labels) in values if name == "shardreg_shard_op_seconds_bucket"]
    assert (("le", "+Inf"), ("op", "manifest.put"), ("shard", "0")) in buckets
    assert values[("shardreg_shard_op_seconds_count", (("op", "manifest.put"), ("shard", "0")))] >= 1
    assert values[("shardreg_shard_disk_free_bytes", (("shard", "0"),))] > 0
    assert values[("process_resident_memory_bytes", ())] > 1_000_000
    assert _labelled(r.text, "shardreg_build_info")
