"""Handler-level pull-through behaviour on the in-process registry, with a real (tiny) upstream on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests import oci
from tests.cluster import free_port
from tests.inprocess import InProcessRegistry
from tests.sync.fakeupstream import FakeRegistry
from tests.sync.upstreams import wait_for

pytestmark = pytest.mark.inprocess


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeRegistry]:
    registry = FakeRegistry()
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture(scope="module")
def http(fake: FakeRegistry) -> Iterator[httpx.Client]:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = {"storage": {"maxRepos": 5}, "cluster": {"requestTimeout": "2s"}, "extensions": {"sync": {"registries": [
        {"urls": [closed], "onDemand": True, "content": [{"prefix": "down/**"}]},
        {"urls": [fake.url], "onDemand": True, "reqConcurrent": 1, "content": [{"prefix": "queue/**"}]},
        {"urls": [fake.url], "onDemand": True, "pollInterval": "200ms"}]}}}
    with InProcessRegistry(shards=2, config=config) as registry, registry.client(timeout=60) as client:
        yield client


def test_pull_through_then_a_range_from_the_cache(fake: FakeRegistry, http: httpx.Client) -> None:
    digest, (config, layer) = fake.add_image("ip/app", "1", layer_size=10000)
    r = http.head("/v2/ip/app/manifests/1", headers={"Accept": oci.OCI_MANIFEST})
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest and r.content == b""
    r = http.get(f"/v2/ip/app/blobs/{layer}", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == fake.blobs[layer][100:200]
    r = http.get(f"/v2/ip/app/blobs/{layer}", headers={"Range": "bytes=9000-"})
    assert r.status_code == 206 and r.content == fake.blobs[layer][9000:]
    r = http.get("/v2/ip/app/manifests/1", headers={"Accept": oci.OCI_INDEX})
    assert r.status_code == 404  # the stored media type is not in Accept, as for pushed content


def test_an_unreachable_upstream_is_a_clear_503(http: httpx.Client) -> None:
    r = http.get("/v2/down/app/manifests/1", headers={"Accept": oci.OCI_MANIFEST})
    assert r.status_code == 503 and r.headers.get("Retry-After")
    error = r.json()["errors"][0]
    assert error["code"] == "UNAVAILABLE" and "cannot be reached" in error["message"]
    assert "ConnectError" in error["detail"]["reason"]


def test_a_locally_pushed_tag_is_served_when_its_recheck_fails(fake: FakeRegistry, http: httpx.Client) -> None:
    digest, _ = oci.push_image(http, "ip/mine", tag="7")  # not upstream at all
    time.sleep(0.3)  # past pollInterval: the GET re-checks the tag, the upstream has none, the cache answers
    before = fake.count("/ip/mine/")
    r = http.get("/v2/ip/mine/manifests/7", headers={"Accept": oci.OCI_MANIFEST})
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
    assert fake.count("/ip/mine/manifests/7") > before  # it was asked


def test_a_blob_waiting_for_a_request_slot_keeps_its_client_waiting(fake: FakeRegistry, http: httpx.Client) -> None:
    """reqConcurrent 1 and a download longer than the shard's bound (0.8 × requestTimeout 2s): the second
    blob's client waits for the slot instead of getting a 503."""
    _, (_, slow) = fake.add_image("queue/app", "1", layer_size=2 * 1024 * 1024)
    _, (_, quick) = fake.add_image("queue/app", "2")
    fake.slow[slow] = 0.1  # 32 pieces: about 3 s
    first: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: first.setdefault("r", http.get(f"/v2/queue/app/blobs/{slow}")))
    thread.start()
    wait_for(lambda: fake.count(f"/blobs/{slow}") == 1)
    r = http.get(f"/v2/queue/app/blobs/{quick}")
    assert r.status_code == 200 and oci.digest(r.content) == quick
    thread.join(60)
    assert first["r"].status_code == 200 and oci.digest(first["r"].content) == slow


def test_max_repos_applies_to_pull_through(fake: FakeRegistry, http: httpx.Client) -> None:
    """Last in this module: it fills the registry up to maxRepos."""
    for i in range(4):
        fake.add_image(f"quota/r{i}", "1")
    statuses = [http.get(f"/v2/quota/r{i}/manifests/1", headers={"Accept": oci.OCI_MANIFEST}).status_code
                for i in range(4)]
    assert 429 in statuses and statuses.count(200) >= 1
    refused = statuses.index(429)
    assert fake.count(f"/quota/r{refused}/") == 0  # refused before the upstream was asked
