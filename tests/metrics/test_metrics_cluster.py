"""Gateway /metrics against a real cluster with two Hypercorn workers (prometheus-client multiprocess mode).

Every request opens its own connection, so requests (and scrapes) land on both workers; the figures
must add up whichever worker answers the scrape.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import Cluster
from tests.oci import OCI_MANIFEST, digest, push_blob, push_image

MANIFEST_ROUTE = "/v2/{name}/manifests/{reference}"
BLOB_ROUTE = "/v2/{name}/blobs/{digest}"
PULLS = 7


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def scrape(url: str) -> str:
    r = httpx.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


@pytest.fixture(scope="module")
def prom_parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prom")


@pytest.fixture(scope="module")
def metrics_cluster(tmp_path_factory: pytest.TempPathFactory, prom_parent: Path) -> Iterator[Cluster]:
    """Metrics on, 2 workers. PROMETHEUS_MULTIPROC_DIR set as the Helm chart sets it: the gateway makes
    its own fresh directory inside it (and removes it at exit)."""
    old = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom_parent)
    try:
        cluster = Cluster(tmp_path_factory.mktemp("metrics") / "data", workers=2,
                          config={"extensions": {"metrics": {"enable": True}}}).start()
    finally:
        if old is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR")
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = old
    yield cluster
    cluster.stop()


def test_counters_add_up_across_workers(metrics_cluster: Cluster, prom_parent: Path) -> None:
    url = metrics_cluster.url
    before = scrape(url)
    repo = "metrics/app"
    with httpx.Client(base_url=url, timeout=30) as client:
        manifest_digest, manifest = push_image(client, repo, "v1", layers=1, layer_size=50_000)
    layer_digest = digest(b"")  # unknown blob: a 404 to count
    for _ in range(PULLS):  # one connection per request: both workers serve some
        r = httpx.get(f"{url}/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST, "Connection": "close"})
        assert r.status_code == 200 and r.content == manifest
    r = httpx.head(f"{url}/v2/{repo}/manifests/{manifest_digest}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    assert httpx.get(f"{url}/v2/{repo}/blobs/{layer_digest}").status_code == 404
    assert httpx.get(f"{url}/no/such/path/{os.urandom(4).hex()}").status_code == 404

    texts = [scrape(url) for _ in range(6)]
    for text in texts:
        get_200 = dict(method="GET", route=MANIFEST_ROUTE, code="200")
        assert value(text, "zot_http_requests_total", **get_200) - value(before, "zot_http_requests_total",
                                                                         **get_200) == PULLS
        assert value(text, "zot_http_requests_total", method="PUT", route=MANIFEST_ROUTE, code="201") == 1
        assert value(text, "zot_http_requests_total", method="HEAD", route=MANIFEST_ROUTE, code="200") == 1
        assert value(text, "zot_http_requests_total", method="GET", route=BLOB_ROUTE, code="404") == 1
        # uploads: POST + PUT per blob (config and one layer), counted on the raw ASGI path
        assert value(text, "zot_http_requests_total", method="POST", route="/v2/{name}/blobs/uploads/",
                     code="202") == 2
        assert value(text, "zot_http_requests_total", method="PUT", route="/v2/{name}/blobs/uploads/{uuid}",
                     code="201") == 2
        assert value(text, "zot_http_requests_total", method="GET", route="other", code="404") == 1
        # per repository, as zot reports them
        assert value(text, "zot_repo_downloads_total", repo=repo) == PULLS
        assert value(text, "zot_repo_uploads_total", repo=repo) == 1
        # histograms: buckets, +Inf bucket equal to the count
        count = value(text, "zot_http_method_latency_seconds_count", method="GET", route=MANIFEST_ROUTE)
        assert count == PULLS
        assert value(text, "zot_http_method_latency_seconds_bucket", method="GET", route=MANIFEST_ROUTE,
                     le="+Inf") == count
        assert value(text, "zot_http_method_latency_seconds_bucket", method="GET", route=MANIFEST_ROUTE,
                     le="0.005") <= count
        # each GET asked the shard or was read in place from its metadata (gateway/local_reads.py)
        assert value(text, "shardreg_shard_request_seconds_count", op="manifest.get") + \
            value(text, "shardreg_gateway_local_reads_total", kind="manifest") >= PULLS
        assert value(text, "shardreg_shard_request_seconds_bucket", op="manifest.put", le="+Inf") == 1
        # each small blob's closing PUT is one op (upload.chunk: begin, write, end, commit)
        assert value(text, "shardreg_shard_request_seconds_count", op="upload.chunk") == 2
        assert value(text, "shardreg_shard_request_seconds_count", op="upload.commit") == 0
        # bytes: the layer went in, the manifest came out PULLS times
        put_blob = dict(method="PUT", route="/v2/{name}/blobs/uploads/{uuid}")
        assert value(text, "shardreg_http_received_bytes_total", **put_blob) >= 50_000
        assert value(text, "shardreg_http_sent_bytes_total", method="GET", route=MANIFEST_ROUTE) == \
            PULLS * len(manifest)
        assert value(text, "shardreg_http_uploads_in_progress") == 0
        assert "path" not in text and "/no/such" not in text  # raw paths never become labels
    # The scrapes themselves are counted too; a later scrape sees the earlier ones.
    assert value(texts[-1], "zot_http_requests_total", method="GET", route="/metrics", code="200") >= 6

    # Both workers recorded: each writes its own files into the one multiprocess directory.
    dirs = list(prom_parent.glob("shardreg-metrics-*"))
    assert len(dirs) == 1, dirs
    pids = {p.name.rsplit("_", 1)[1] for p in dirs[0].glob("counter_*.db")}
    assert len(pids) == 2, f"expected files of 2 workers, got {sorted(pids)}"


def test_uploads_in_progress_and_blob_bytes(metrics_cluster: Cluster) -> None:
    url = metrics_cluster.url
    repo = "metrics/slow"
    with httpx.Client(base_url=url, timeout=30) as client:
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202
        location = r.headers["Location"]
        started, release = threading.Event(), threading.Event()
        chunk = os.urandom(64 * 1024)

        def body() -> Iterator[bytes]:
            yield chunk
            started.set()
            release.wait(10)
            yield chunk

        result: dict[str, int] = {}
        worker = threading.Thread(target=lambda: result.setdefault("status", client.patch(
            location, content=body(), headers={"Content-Type": "application/octet-stream"}).status_code))
        worker.start()
        assert started.wait(10)
        deadline = time.monotonic() + 5
        while value(scrape(url), "shardreg_http_uploads_in_progress") != 1:
            assert time.monotonic() < deadline, "the streaming PATCH is not counted as in progress"
            time.sleep(0.05)
        release.set()
        worker.join(10)
        assert result["status"] == 202
        layer_digest = push_blob(client, repo, chunk * 3)
    text = scrape(url)
    assert value(text, "shardreg_http_uploads_in_progress") == 0
    assert value(text, "shardreg_http_received_bytes_total", method="PATCH",
                 route="/v2/{name}/blobs/uploads/{uuid}") == 2 * len(chunk)
    before = value(text, "shardreg_http_sent_bytes_total", method="GET", route=BLOB_ROUTE)
    r = httpx.get(f"{url}/v2/{repo}/blobs/{layer_digest}")
    assert r.status_code == 200 and len(r.content) == 3 * len(chunk)
    after = value(scrape(url), "shardreg_http_sent_bytes_total", method="GET", route=BLOB_ROUTE)
    assert after - before == 3 * len(chunk)


def test_multiprocess_directory_removed_at_exit(metrics_cluster: Cluster, prom_parent: Path) -> None:
    """Runs last in this module: the gateway stops cleanly and takes its directory with it."""
    assert len(list(prom_parent.glob("shardreg-metrics-*"))) == 1
    assert metrics_cluster.stop() == 0
    assert not list(prom_parent.glob("shardreg-metrics-*"))


def test_disabled_metrics_answer_404(cluster: Cluster) -> None:
    """The session cluster runs the embedded defaults: no extensions.metrics, no /metrics."""
    r = httpx.get(f"{cluster.url}/metrics")
    assert r.status_code == 404
    assert "errors" in r.json()
