"""Pull-through when the upstream fails: it lies, it is slow and the shard is killed, it moves a tag, it stops."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx

from common.ring import shard_for
from tests import oci
from tests.sync.conftest import FAKE_CONCURRENT, FAKE_PER_SEC, POLL, TwoGateways
from tests.sync.fakeupstream import FakeRegistry
from tests.sync.upstreams import Distribution, push_image, wait_for


def stored_files(cluster_data: Path) -> set[str]:
    return {p.name for p in cluster_data.glob("shard-*/blobs/*/*/*")}


def refused_or_cut(url: str, headers: dict[str, str] | None = None) -> None:
    """The client never gets a complete body for the digest it asked for: a 502, or a body cut short."""
    try:
        r = httpx.get(url, headers=headers, timeout=30)
        assert r.status_code == 502, r.status_code
    except httpx.RemoteProtocolError as exc:
        received = re.search(r"received (\d+) bytes, expected (\d+)", str(exc))
        assert received is not None and int(received.group(1)) < int(received.group(2)), str(exc)


def test_a_blob_with_the_wrong_digest_is_refused_and_nothing_is_stored(fake: FakeRegistry, pulled: TwoGateways) -> None:
    _, (config, layer) = fake.add_image("fake/liar", "1")
    fake.lies[layer] = os.urandom(4096)  # same length, other bytes
    refused_or_cut(f"{pulled.cluster.url}/v2/fake/liar/blobs/{layer}")
    assert layer.split(":")[1] not in stored_files(pulled.cluster.data)
    # a HEAD is answered once the blob is verified: refused again, never stored
    r = httpx.head(f"{pulled.cluster.url}/v2/fake/liar/blobs/{layer}", timeout=30)
    assert r.status_code == 502
    r = httpx.get(f"{pulled.cluster.url}/v2/fake/liar/manifests/1", headers={"Accept": oci.OCI_MANIFEST})
    assert r.status_code == 200  # the manifest was honest
    r = httpx.head(f"{pulled.cluster.url}/v2/fake/liar/blobs/{layer}", timeout=30)
    assert r.status_code == 502
    assert layer.split(":")[1] not in stored_files(pulled.cluster.data)
    del fake.lies[layer]
    r = httpx.get(f"{pulled.cluster.url}/v2/fake/liar/blobs/{layer}", timeout=30)
    assert r.status_code == 200 and oci.digest(r.content) == layer


def test_a_manifest_with_the_wrong_digest_is_refused(fake: FakeRegistry, pulled: TwoGateways) -> None:
    digest, _ = fake.add_image("fake/liar2", "1")
    fake.lies[digest] = fake.manifests["fake/liar2"][digest].replace(b"amd64", b"arm64") + b" "
    r = httpx.get(f"{pulled.cluster.url}/v2/fake/liar2/manifests/{digest}", headers={"Accept": oci.OCI_MANIFEST})
    assert r.status_code == 502
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert httpx.get(f"{pulled.cluster.url}/v2/fake/liar2/tags/list").status_code == 404  # nothing stored
    del fake.lies[digest]
    r = httpx.get(f"{pulled.cluster.url}/v2/fake/liar2/manifests/{digest}", headers={"Accept": oci.OCI_MANIFEST})
    assert r.status_code == 200 and oci.digest(r.content) == digest


def test_kill_9_of_the_shard_mid_download_leaves_no_partial_blob(fake: FakeRegistry, pulled: TwoGateways) -> None:
    repo = "fake/slow"
    _, (_, layer) = fake.add_image(repo, "1", layer_size=4 * 1024 * 1024)
    fake.slow[layer] = 0.05  # 64 KiB every 50 ms: ~3 s for the blob
    cluster = pulled.cluster
    index = shard_for(repo, cluster.shards)
    shard_dir = cluster.data / f"shard-{index}"
    outcome: dict[str, object] = {}

    def pull() -> None:
        try:
            outcome["response"] = httpx.get(f"{cluster.url}/v2/{repo}/blobs/{layer}", timeout=60)
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    client = threading.Thread(target=pull)
    client.start()
    wait_for(lambda: any(p.stat().st_size > 256 * 1024 for p in (shard_dir / "sync-tmp").glob("*")), timeout=20)
    old = cluster.kill_child(f"shard-{index}", signal.SIGKILL)
    client.join(60)
    response = outcome.get("response")
    assert response is None or response.status_code != 200 or len(response.content) < 4 * 1024 * 1024
    cluster.wait_restarted(f"shard-{index}", old)
    assert layer.split(":")[1] not in stored_files(cluster.data)
    assert list((shard_dir / "sync-tmp").iterdir()) == []  # the cut download is gone
    fake.slow.pop(layer)
    r = httpx.get(f"{cluster.url}/v2/{repo}/blobs/{layer}", timeout=60)
    assert r.status_code == 200 and oci.digest(r.content) == layer
    assert layer.split(":")[1] in stored_files(cluster.data)


def test_a_moved_tag_is_seen_after_the_poll_interval(upstream: Distribution, pulled: TwoGateways) -> None:
    with httpx.Client(base_url=upstream.url) as client:
        first, _, _ = push_image(client, "moving/app", "stable")
        r = httpx.get(f"{pulled.cluster.url}/v2/moving/app/manifests/stable", headers={"Accept": oci.OCI_MANIFEST})
        assert r.headers["Docker-Content-Digest"] == first
        second, _, _ = push_image(client, "moving/app", "stable")
    assert second != first
    time.sleep(POLL + 0.2)
    for url in pulled.urls:
        r = httpx.get(f"{url}/v2/moving/app/manifests/stable", headers={"Accept": oci.OCI_MANIFEST})
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == second
    # the old digest stays pullable by digest
    r = httpx.get(f"{pulled.cluster.url}/v2/moving/app/manifests/{first}", headers={"Accept": oci.OCI_MANIFEST})
    assert r.status_code == 200


def test_upstream_stopped_cached_images_pull_uncached_fail_fast(upstream: Distribution, pulled: TwoGateways) -> None:
    with httpx.Client(base_url=upstream.url) as client:
        digest, _, blobs = push_image(client, "down/cached", "1")
        push_image(client, "down/uncached", "1")
    base = pulled.cluster.url
    assert httpx.get(f"{base}/v2/down/cached/manifests/1", headers={"Accept": oci.OCI_MANIFEST}).status_code == 200
    for blob in blobs:
        assert httpx.get(f"{base}/v2/down/cached/blobs/{oci.digest(blob)}").status_code == 200
    upstream.stop()
    try:
        time.sleep(POLL + 0.2)  # the cached tag is due for a re-check, which fails: served from the cache
        r = httpx.get(f"{base}/v2/down/cached/manifests/1", headers={"Accept": oci.OCI_MANIFEST}, timeout=30)
        assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
        for blob in blobs:
            r = httpx.get(f"{base}/v2/down/cached/blobs/{oci.digest(blob)}", timeout=30)
            assert r.status_code == 200 and r.content == blob
        r = httpx.get(f"{base}/v2/down/uncached/manifests/1", headers={"Accept": oci.OCI_MANIFEST}, timeout=30)
        assert r.status_code == 503
        error = r.json()["errors"][0]
        assert error["code"] == "UNAVAILABLE" and "cannot be reached" in error["message"]
        assert error["detail"]["upstream"].startswith(f"127.0.0.1:{upstream.port}") and error["detail"]["reason"]
        r = httpx.get(f"{base}/v2/down/uncached/blobs/{oci.digest(b'x')}", timeout=30)
        assert r.status_code == 503 and "cannot be reached" in r.text
    finally:
        upstream.start()


def _fetch_all(pulled: TwoGateways, fake: FakeRegistry, layers: list[tuple[str, str]]) -> list[float]:
    """Every blob at once through the cluster; the upstream's start times of those requests."""
    with fake.lock:
        fake.max_inflight, first = 0, len(fake.starts)
    threads = [threading.Thread(target=lambda r=repo, d=layer: httpx.get(f"{pulled.cluster.url}/v2/{r}/blobs/{d}",
                                                                         timeout=60)) for repo, layer in layers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for repo, layer in layers:
        r = httpx.get(f"{pulled.cluster.url}/v2/{repo}/blobs/{layer}")
        assert r.status_code == 200 and oci.digest(r.content) == layer
    with fake.lock:
        return sorted(fake.starts[first:])


def test_request_limits_per_registry(fake: FakeRegistry, pulled: TwoGateways) -> None:
    shards = pulled.cluster.shards
    repos = [r for r in (f"fake/limited{i}" for i in range(200)) if shard_for(r, shards) == 0][:10]
    slow, fast = [], []
    for n, repo in enumerate(repos):  # all on shard 0: one limiter
        _, (_, layer) = fake.add_image(repo, "1", layer_size=256 * 1024 if n < 4 else 4096)
        if n < 4:
            fake.slow[layer] = 0.05  # each takes ≥ 0.2 s
            slow.append((repo, layer))
        else:
            fast.append((repo, layer))
    assert len(_fetch_all(pulled, fake, slow)) == 4
    assert 1 <= fake.max_inflight <= FAKE_CONCURRENT  # reqConcurrent
    starts = _fetch_all(pulled, fake, fast)  # answered at once: only reqPerSec spaces them
    assert len(starts) == 6
    # 6 starts at reqPerSec span ≥ 5 intervals at the shard; the margin is for the network's jitter
    assert starts[-1] - starts[0] >= 3.5 / FAKE_PER_SEC, starts
