"""Crash and outage behaviour: kill -9 of shards and gateway, a frozen shard, restarts."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from common.ring import shard_for
from tests.cluster import Cluster
from tests.oci import OCI_MANIFEST, digest, push_image


def _ppid(pid: int) -> int:
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _status(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/status").read().lower()
    except OSError:
        return "zombie"


def repo_on(shard: int, prefix: str) -> str:
    return next(f"{prefix}{i}" for i in range(1000) if shard_for(f"{prefix}{i}", 2) == shard)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    config = {"cluster": {"requestTimeout": "5s"}}
    with Cluster(tmp_path_factory.mktemp("faults") / "data", config=config) as c:
        yield c


def test_kill_shard_during_chunked_upload(faulty):
    repo = repo_on(0, "faults/chunked")
    client = httpx.Client(base_url=faulty.url, timeout=30)
    acknowledged, acknowledged_body = push_image(client, repo, "before")
    data = os.urandom(4 * 1024 * 1024)
    loc = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    r = client.patch(loc, content=data[:1024 * 1024], headers={"Content-Range": f"0-{1024 * 1024 - 1}"})
    assert r.status_code == 202
    old = faulty.kill_child("shard-0")
    faulty.wait_restarted("shard-0", old)
    # the upload survived with exactly the acknowledged bytes, and can be finished
    r = client.get(loc)
    assert r.status_code == 204 and r.headers["Range"] == f"0-{1024 * 1024 - 1}"
    r = client.patch(loc, content=data[1024 * 1024:], headers={"Content-Range": f"{1024 * 1024}-{len(data) - 1}"})
    assert r.status_code == 202
    assert client.put(r.headers["Location"], params={"digest": digest(data)}).status_code == 201
    assert client.get(f"/v2/{repo}/blobs/{digest(data)}").content == data
    # what was acknowledged before the crash is intact
    r = client.get(f"/v2/{repo}/manifests/before", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200 and r.content == acknowledged_body
    # and a whole push can be redone
    push_image(client, repo, "after")


def test_kill_shard_in_the_middle_of_a_streamed_push(faulty):
    repo = repo_on(1, "faults/stream")
    client = httpx.Client(base_url=faulty.url, timeout=30)
    loc = client.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    killed: list[int] = []

    def body():
        for i in range(64):
            if i == 8:
                killed.append(faulty.kill_child("shard-1"))
            yield os.urandom(256 * 1024)

    try:
        r = client.patch(loc, content=body())
        assert r.status_code >= 400  # never a false acknowledgement
    except httpx.HTTPError:
        pass
    faulty.wait_restarted("shard-1", killed[0])
    # consistent after restart: the upload holds only whole acknowledged PATCHes (none), blobs are whole
    r = client.get(loc)
    assert r.status_code in (204, 404)
    if r.status_code == 204:
        assert r.headers["Range"] == "0-0"
    d, body_bytes = push_image(client, repo, "redo")
    assert client.get(f"/v2/{repo}/manifests/redo").content == body_bytes


def test_frozen_shard_gives_503_with_retry_after_and_recovers(faulty):
    repo = repo_on(0, "faults/frozen")
    other = repo_on(1, "faults/alive")
    client = httpx.Client(base_url=faulty.url, timeout=30)
    push_image(client, repo, "v1")
    push_image(client, other, "v1")
    pid = faulty.children()["shard-0"]
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        r = client.get(f"/v2/{repo}/tags/list")  # an op only the shard answers
        assert r.status_code == 503
        assert r.headers["Retry-After"]
        assert r.json()["errors"]
        assert time.monotonic() - started < 15
        # what it stored is still read in place (gateway/local_reads.py); a push waits for it
        assert client.get(f"/v2/{repo}/manifests/v1").status_code == 200
        # the other shard's repositories are unaffected
        assert client.get(f"/v2/{other}/tags/list").status_code == 200
        assert client.get("/readyz").status_code == 503
    finally:
        os.kill(pid, signal.SIGCONT)
    faulty.wait_ready()
    assert client.get(f"/v2/{repo}/manifests/v1").status_code == 200


def test_gateway_kill_and_restart(faulty):
    client = httpx.Client(base_url=faulty.url, timeout=30)
    d, body = push_image(client, "faults/gw", "v1")
    gateway = faulty.children()["gateway"]
    workers = [int(p) for p in os.listdir("/proc") if p.isdigit() and _ppid(int(p)) == gateway]
    assert workers
    old = faulty.kill_child("gateway")
    faulty.wait_restarted("gateway", old)
    # the killed gateway's workers did not survive it (they would keep serving with stale state)
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{w}") and _ppid(w) != 0 for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if os.path.exists(f"/proc/{w}") and "zombie" not in _status(w)]
    with httpx.Client(base_url=faulty.url, timeout=30) as fresh:
        assert fresh.get("/v2/faults/gw/manifests/v1").content == body


def test_gateway_reconnects_after_shard_restart_without_losing_acknowledged_data(faulty):
    client = httpx.Client(base_url=faulty.url, timeout=30)
    pushed = {}
    for i in range(6):
        repo = f"faults/many{i}"
        pushed[repo] = push_image(client, repo, "v1")[1]
    for name in ("shard-0", "shard-1"):
        old = faulty.kill_child(name)
        faulty.wait_restarted(name, old)
    for repo, body in pushed.items():
        r = client.get(f"/v2/{repo}/manifests/v1")
        assert r.status_code == 200 and r.content == body


def test_a_different_configured_size_does_not_reroute(tmp_path):
    """Issue 12: the shard count is the cluster map's, changed only by `shardreg cluster resize`.
    Restarting with another cluster.shards used to refuse to start (exit 3); now the map decides
    (a warning names both counts) and every repository stays where it is."""
    data = tmp_path / "data"
    names = [f"resize/app{i}" for i in range(12)]
    with Cluster(data, shards=2) as c:
        for name in names:
            push_image(httpx.Client(base_url=c.url), name, "v1")
    with Cluster(data, shards=3) as c3:
        # first the names a 3-shard count would send to shard 2 (new, without a map): each gateway
        # worker's first request goes by the configured count until a shard tells it the map
        for name in sorted(names, key=lambda n: shard_for(n, 3) != 2):
            assert httpx.get(f"{c3.url}/v2/{name}/tags/list").json()["tags"] == ["v1"], name
        assert "cluster.shards is 3 but the cluster map (epoch 1) has 2 shards" in c3.logs()
        assert c3.status()["shards"] == 2


def test_gateway_sigterm_finishes_requests_in_flight(faulty):
    """Rolling updates: a gateway told to stop (2 workers) completes the uploads it is serving."""
    import threading

    client = httpx.Client(base_url=faulty.url, timeout=60)
    loc = client.post("/v2/faults/drain/blobs/uploads/").headers["Location"]
    chunks = [os.urandom(256 * 1024) for _ in range(12)]
    pid: list[int] = []

    def body():
        for i, chunk in enumerate(chunks):
            if i == 2:
                pid.append(faulty.kill_child("gateway", signal.SIGTERM))
            time.sleep(0.1)
            yield chunk

    result: dict = {}

    def push():
        try:
            result["response"] = client.patch(loc, content=body())
        except httpx.HTTPError as exc:
            result["error"] = exc

    thread = threading.Thread(target=push)
    thread.start()
    thread.join(60)
    assert "error" not in result, result
    r = result["response"]
    assert r.status_code == 202 and r.headers["Range"] == f"0-{12 * 256 * 1024 - 1}"
    faulty.wait_restarted("gateway", pid[0])
    data = b"".join(chunks)
    with httpx.Client(base_url=faulty.url, timeout=60) as fresh:
        assert fresh.put(loc, params={"digest": digest(data)}).status_code == 201


def test_requests_in_flight_to_a_crashed_shard_fail_at_once(faulty):
    """A shard that dies with requests in flight: they get 503 'connection lost', not a timeout."""
    import threading

    repo = repo_on(1, "faults/inflight")
    client = httpx.Client(base_url=faulty.url, timeout=60)
    push_image(client, repo, "v1")
    pid = faulty.children()["shard-1"]
    os.kill(pid, signal.SIGSTOP)  # the request reaches the shard's socket but gets no answer
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(r=client.get(f"/v2/{repo}/tags/list")))
    thread.start()
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    thread.join(30)
    r = result["r"]
    assert r.status_code == 503 and r.headers["Retry-After"]
    message = r.json()["errors"][0]["message"]
    # "connection lost" when the request was in flight at the kill; "not connected" if a loaded
    # machine sent it only after: either way at once, never after the request timeout
    assert "connection lost" in message or "not connected" in message, message
    faulty.wait_restarted("shard-1", pid)
    assert client.get(f"/v2/{repo}/manifests/v1").status_code == 200


def test_serve_stops_every_child_cleanly_on_sigterm(tmp_path):
    c = Cluster(tmp_path / "data").start()
    children = list(c.children().values())
    assert c.stop() == 0
    for pid in children:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
    assert not (tmp_path / "data" / "supervisor.json").exists()


def test_shard_down_answers_503_at_once(faulty):
    """While a shard is down (and not yet restarted) its repositories answer 503 quickly."""
    repo = repo_on(0, "faults/down")
    client = httpx.Client(base_url=faulty.url, timeout=60)
    push_image(client, repo, "v1")
    supervisor = faulty.process.pid
    os.kill(supervisor, signal.SIGSTOP)  # hold the restart
    try:
        old = faulty.kill_child("shard-0")
        time.sleep(0.5)
        r = client.get(f"/v2/{repo}/tags/list")  # an op only the shard answers
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert "not connected" in r.json()["errors"][0]["message"] or "connection lost" in r.text
        assert client.get(f"/v2/{repo}/manifests/v1").status_code == 200  # read in place meanwhile
    finally:
        os.kill(supervisor, signal.SIGCONT)
    faulty.wait_restarted("shard-0", old)
    assert client.get(f"/v2/{repo}/manifests/v1").status_code == 200


def test_a_killed_gateway_leaves_no_file_behind(tmp_path, monkeypatch):
    """The gateway hands its workers the config without a temporary file, and the next gateway
    removes the metrics directory of one killed before its clean-up: a kill -9 of the gateway, then a
    stop, leave the temporary directory as they found it."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with Cluster(tmp_path / "data", workers=1, config={"extensions": {"metrics": {"enable": True}}}) as c:
        assert [p.name.startswith("shardreg-metrics-") for p in scratch.iterdir()] == [True]
        old = c.kill_child("gateway")
        c.wait_restarted("gateway", old)
        c.wait_ready()
        assert httpx.get(f"{c.url}/v2/", timeout=10).status_code == 200  # the new workers read the config
    assert sorted(os.listdir(scratch)) == []
