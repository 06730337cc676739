"""Open uploads cannot exhaust a shard's file descriptors, and readiness says when it is out of them.

Issue 10, item 10: each open upload kept a descriptor until it expired; ~1,100 POSTs under a
1,024 limit made other pushes on the shard fail with 500 while ``/readyz`` said 200. Here a real
shard process gets a low ``RLIMIT_NOFILE`` (``prlimit`` on its pid) and many uploads are opened.
"""

from __future__ import annotations

import os
import resource
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster import Cluster, free_port
from tests.oci import digest, push_image

#: The soft descriptor limit the shard gets: far fewer than the uploads opened below.
LOW_LIMIT = 192
UPLOADS = 400


@pytest.fixture()
def one_shard(tmp_path) -> Iterator[tuple[Cluster, int]]:
    health = free_port()
    with Cluster(tmp_path / "data", shards=1, workers=1,
                 config={"cluster": {"shards": 1, "shardMetricsPort": health}}) as cluster:
        yield cluster, health


def _set_soft_limit(pid: int, soft: int) -> None:
    hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)[1]
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_idle_uploads_hold_no_descriptor_and_other_pushes_go_on(one_shard):
    cluster, _ = one_shard
    pid = cluster.children()["shard-0"]
    _set_soft_limit(pid, LOW_LIMIT)
    with httpx.Client(base_url=cluster.url, timeout=60) as client:
        statuses: Counter[int] = Counter()
        locations = []
        for _ in range(UPLOADS):
            r = client.post("/v2/fd/idle/blobs/uploads/")
            statuses[r.status_code] += 1
            if r.status_code == 202:
                locations.append(r.headers["Location"])
        assert set(statuses) <= {202, 429}, statuses
        assert statuses[202] == UPLOADS  # under the default caps, every one is taken
        assert _open_fds(pid) < LOW_LIMIT // 2, "idle uploads must not keep their files open"
        # other pushes on the same shard still work, chunked ones included
        push_image(client, "fd/other", "v1", layers=2, layer_size=256 * 1024)
        data = os.urandom(3 * 1024 * 1024)
        r = client.patch(locations[0], content=data, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        r = client.put(r.headers["Location"], params={"digest": digest(data)})
        assert r.status_code == 201, r.text
        assert client.get(f"/v2/fd/idle/blobs/{digest(data)}").content == data
    assert "Traceback" not in cluster.logs()


def _wait_status(url: str, status: int, timeout: float = 10) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = httpx.get(url, timeout=5)
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_readiness_reports_a_shard_out_of_descriptors(one_shard):
    cluster, health = one_shard
    pid = cluster.children()["shard-0"]
    shard_ready = f"http://127.0.0.1:{health}/readyz"
    assert httpx.get(shard_ready, timeout=5).status_code == 200
    assert httpx.get(f"{cluster.url}/readyz", timeout=5).status_code == 200
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    try:
        # almost out: both readiness endpoints say so
        _set_soft_limit(pid, _open_fds(pid) + 8)
        r = _wait_status(shard_ready, 503)
        assert r.status_code == 503 and "file descriptors" in r.text, r.text
        r = _wait_status(f"{cluster.url}/readyz", 503)
        assert r.status_code == 503 and "file descriptors" in r.text, r.text
        # out: a push is refused with 429 (retry later), never a 500
        _set_soft_limit(pid, _open_fds(pid))
        with httpx.Client(base_url=cluster.url, timeout=60) as client:
            r = client.post("/v2/fd/full/blobs/uploads/", params={"digest": digest(b"x")}, content=b"x")
            assert r.status_code in (201, 429), r.text
            if r.status_code == 429:
                assert r.headers.get("Retry-After")
        r = _wait_status(f"{cluster.url}/readyz", 503)
        assert r.status_code == 503, r.text
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert _wait_status(f"{cluster.url}/readyz", 200, timeout=20).status_code == 200
    assert _wait_status(shard_ready, 200, timeout=20).status_code == 200
    with httpx.Client(base_url=cluster.url, timeout=60) as client:
        push_image(client, "fd/after", "v1")
    assert "Traceback" not in cluster.logs()
