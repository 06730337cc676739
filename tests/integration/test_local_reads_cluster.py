"""A real cluster's gateway reads each shard's metadata in place, read-only, from its own process
(gateway/local_reads.py, issue 17): HEADs, blob lookups and manifest GETs never wait for the shard,
and the reader follows a shard that was killed and restarted under it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import Cluster
from tests.oci import digest, push_image

METRICS = {"extensions": {"metrics": {"enable": True, "prometheus": {"path": "/metrics"}}, "search": {"enable": True}}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("local-reads") / "data", shards=2, workers=1, config=METRICS) as c:
        yield c


def series(client: httpx.Client, name: str, **labels: str) -> float:
    text = client.get("/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def shard_reads(client: httpx.Client) -> float:
    return sum(series(client, "shardreg_shard_request_seconds_count", op=op) for op in ("blob.stat", "manifest.get"))


def heads(client: httpx.Client, repo: str, manifest: bytes) -> int:
    """HEAD every blob and the manifest of ``repo``:v1, and GET the manifest; the number of requests."""
    blobs = [json.loads(manifest)["config"]["digest"], *(layer["digest"] for layer in json.loads(manifest)["layers"])]
    for blob in blobs:
        r = client.head(f"/v2/{repo}/blobs/{blob}")
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == blob
    r = client.head(f"/v2/{repo}/manifests/v1")
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest(manifest)
    r = client.get(f"/v2/{repo}/manifests/v1")
    assert r.status_code == 200 and r.content == manifest
    return len(blobs) + 2


def test_heads_are_read_in_place_across_a_shard_restart(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        _, manifest = push_image(client, "inplace/app", "v1")
        heads(client, "inplace/app", manifest)  # the worker learns the map from the shards first
        asked, answered = shard_reads(client), series(client, "shardreg_gateway_local_reads_total")
        count = heads(client, "inplace/app", manifest)
        assert series(client, "shardreg_gateway_local_reads_total") - answered == count
        assert shard_reads(client) == asked  # no blob.stat / manifest.get reached a shard
        # the GETs' pulls reach the shard as notices, after the answers: both counted
        query = '{ ImageList(repo: "inplace/app") { Results { DownloadCount } } }'
        r = client.post("/v2/_zot/ext/search", json={"query": query})
        assert r.json()["data"]["ImageList"]["Results"] == [{"DownloadCount": 2}], r.text

        for name in ("shard-0", "shard-1"):  # the writers restart under the worker's open read-only views
            cluster.wait_restarted(name, cluster.kill_child(name))
        _, second = push_image(client, "inplace/after", "v1")  # written by the new shard processes
        answered = series(client, "shardreg_gateway_local_reads_total")
        count = heads(client, "inplace/after", second) + heads(client, "inplace/app", manifest)
        assert series(client, "shardreg_gateway_local_reads_total") - answered == count
        unknown = digest(b"not here")
        assert client.head(f"/v2/inplace/app/blobs/{unknown}").status_code == 404  # a miss: the shard answers
