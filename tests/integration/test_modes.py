"""Configurations other than the embedded default: no shared filesystem, deletes off, warnings, bad config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.cluster import ROOT, Cluster
from tests.oci import push_blob, push_image


@pytest.fixture(scope="module")
def separate(tmp_path_factory):
    """Gateways that cannot see the shards' files: blobs stream over ZeroMQ; deletes disabled; 3 shards."""
    config = {"cluster": {"sharedStorage": False}, "storage": {"allowDelete": False, "dedupe": False},
              "http": {"compat": ["docker2s2"]}, "surprise": 1}
    with Cluster(tmp_path_factory.mktemp("modes") / "data", shards=3, config=config) as c:
        yield c


def test_pull_over_zeromq(separate):
    with httpx.Client(base_url=separate.url, timeout=60) as client:
        data = os.urandom(20 * 1024 * 1024 + 5)
        d = push_blob(client, "modes/zmq", data)
        r = client.get(f"/v2/modes/zmq/blobs/{d}")
        assert r.status_code == 200 and r.content == data
        r = client.get(f"/v2/modes/zmq/blobs/{d}", headers={"Range": "bytes=1048570-3145740"})
        assert r.status_code == 206 and r.content == data[1048570:3145741]
        r = client.get(f"/v2/modes/zmq/blobs/{d}", headers={"Range": "bytes=0-3, 2097150-2097153"})
        assert r.status_code == 206 and r.headers["Content-Type"].startswith("multipart/byteranges")
        assert data[:4] in r.content and data[2097150:2097154] in r.content


def test_cross_shard_mount_over_zeromq(separate):
    from common.ring import shard_for

    with httpx.Client(base_url=separate.url, timeout=60) as client:
        src = next(f"modes/src{i}" for i in range(100) if shard_for(f"modes/src{i}", 3) == 0)
        dst = next(f"modes/dst{i}" for i in range(100) if shard_for(f"modes/dst{i}", 3) == 2)
        data = os.urandom(5 * 1024 * 1024)
        d = push_blob(client, src, data)
        r = client.post(f"/v2/{dst}/blobs/uploads/", params={"mount": d, "from": src})
        assert r.status_code == 201
        assert client.get(f"/v2/{dst}/blobs/{d}").content == data


def test_deletes_disabled(separate):
    with httpx.Client(base_url=separate.url, timeout=60) as client:
        md, _ = push_image(client, "modes/nodelete", "v1")
        d = push_blob(client, "modes/nodelete", b"keep me")
        for url in (f"/v2/modes/nodelete/manifests/{md}", "/v2/modes/nodelete/manifests/v1",
                    f"/v2/modes/nodelete/blobs/{d}"):
            r = client.delete(url)
            assert r.status_code == 405
            assert r.json()["errors"][0]["code"] == "UNSUPPORTED"
        assert client.get("/v2/modes/nodelete/manifests/v1").status_code == 200
        assert client.get(f"/v2/modes/nodelete/blobs/{d}").content == b"keep me"


def test_unknown_and_unsupported_keys_are_named_in_warnings(separate):
    logs = separate.log_path.read_text(errors="replace")  # the whole log: access lines follow the warnings
    assert "surprise: unknown option, ignored" in logs
    assert "storage.dedupe: shardreg always stores one file per digest" in logs
    assert "http.compat: zot option not supported" in logs


@pytest.mark.parametrize("config, message", [
    ({"http": {"port": 70000}}, "http.port"),
    ({"cluster": {"shards": 0}}, "cluster.shards"),
    ({"storage": {"gcDelay": "soon"}}, "storage.gcDelay"),
    ({"log": {"level": "loud"}}, "log.level"),
    ({"cluster": {"endpoints": ["tcp://a:1"], "shards": 2}}, "cluster.endpoints"),
    ({"http": {"auth": {"apikey": "yes"}}}, "http.auth.apikey"),
    ({"extensions": {"search": {"enable": "x"}}}, "extensions.search.enable"),
])
def test_invalid_config_stops_start_up(tmp_path, config, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = subprocess.run([sys.executable, "-m", "common.cli", "serve", "--config", str(path),
                             "--data", str(tmp_path / "data")], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert message in result.stderr


def test_not_json_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{nope")
    result = subprocess.run([sys.executable, "-m", "common.cli", "serve", "--config", str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "not valid JSON" in result.stderr


def test_garbage_collection_runs_on_its_interval(tmp_path):
    config = {"storage": {"gc": True, "gcDelay": "1s", "gcInterval": "1s"}}
    with Cluster(tmp_path / "data", config=config) as c, httpx.Client(base_url=c.url, timeout=30) as client:
        md, body = push_image(client, "gc/app", "v1")
        layers = [layer["digest"] for layer in json.loads(body)["layers"]]
        orphan = push_blob(client, "gc/app", os.urandom(1000))
        deadline = time.monotonic() + 20
        while client.head(f"/v2/gc/app/blobs/{orphan}").status_code == 200:
            assert time.monotonic() < deadline, "orphan blob never collected"
            time.sleep(0.3)
        for layer in layers:
            assert client.head(f"/v2/gc/app/blobs/{layer}").status_code == 200
        assert client.get("/v2/gc/app/manifests/v1").content == body


def test_deep_data_directory(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "data"
    deep.parent.mkdir(parents=True)
    with Cluster(deep) as c, httpx.Client(base_url=c.url, timeout=30) as client:
        push_image(client, "deep/app", "v1")
        assert client.get("/v2/deep/app/tags/list").json()["tags"] == ["v1"]


def test_repository_quota(tmp_path):
    with Cluster(tmp_path / "data", config={"storage": {"maxRepos": 3}}) as c, \
            httpx.Client(base_url=c.url, timeout=30) as client:
        for i in range(3):
            push_image(client, f"quota/r{i}", "v1")
        push_image(client, "quota/r0", "v2")  # existing repositories keep working
        r = client.post("/v2/quota/r3/blobs/uploads/")
        assert r.status_code == 429 and r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert r.headers["Retry-After"]
        body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": []}).encode()
        r = client.put("/v2/quota/r4/manifests/v1", content=body,
                       headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
        assert r.status_code == 429
        assert len(client.get("/v2/_catalog").json()["repositories"]) == 3
