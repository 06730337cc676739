"""Pull-through from CNCF Distribution: skopeo from an empty cache, single-flight across 2 gateways × 2 workers."""

from __future__ import annotations

import concurrent.futures
import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path

import httpx
import pytest

from tests import oci
from tests.sync.conftest import TwoGateways
from tests.sync.fakeupstream import FakeRegistry
from tests.sync.upstreams import Distribution, push_blob, push_image, wait_for

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
ACCEPT = ", ".join([oci.OCI_MANIFEST, oci.OCI_INDEX])


def push_index(client: httpx.Client, repo: str, tag: str, layer_size: int = 4096) -> dict[str, bytes]:
    """A two-platform index (tagged ``tag``) in the upstream; every manifest and blob, by digest."""
    content: dict[str, bytes] = {}
    children = []
    for arch in ("amd64", "arm64"):
        config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                             "nonce": os.urandom(8).hex()}).encode()
        layers = [os.urandom(layer_size), os.urandom(layer_size)]
        for blob in (config, *layers):
            push_blob(client, repo, blob)
            content[oci.digest(blob)] = blob
        body = oci.image_manifest(config, layers)
        r = client.put(f"/v2/{repo}/manifests/{oci.digest(body)}", content=body,
                       headers={"Content-Type": oci.OCI_MANIFEST})
        assert r.status_code == 201, r.text
        content[oci.digest(body)] = body
        children.append(oci.descriptor(body, oci.OCI_MANIFEST, platform={"architecture": arch, "os": "linux"}))
    index = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": children}).encode()
    r = client.put(f"/v2/{repo}/manifests/{tag}", content=index, headers={"Content-Type": oci.OCI_INDEX})
    assert r.status_code == 201, r.text
    content[oci.digest(index)] = index
    return content


def skopeo(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(tmp), "XDG_RUNTIME_DIR": str(tmp)}
    return subprocess.run([SKOPEO, "--insecure-policy", *args], capture_output=True, text=True, timeout=120, env=env)


def upstream_gets(upstream: Distribution, since: int, repo: str) -> dict[str, int]:
    """Successful GETs of ``repo``'s manifests and blobs in the upstream's access log: path → count."""
    return {path: n for (method, path, status), n in upstream.requests(since).items()
            if method == "GET" and status == 200 and path.startswith(f"/v2/{repo}/")}


def test_skopeo_pulls_a_multi_arch_index_through(upstream: Distribution, pulled: TwoGateways, tmp_path: Path) -> None:
    with httpx.Client(base_url=upstream.url) as client:
        content = push_index(client, "library/multi", "1.0")
    mark = upstream.mark()
    out = tmp_path / "layout"
    result = skopeo(tmp_path, "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
                    f"docker://127.0.0.1:{pulled.cluster.port}/library/multi:1.0", f"oci:{out}:1.0")
    assert result.returncode == 0, result.stderr
    copied = {f"sha256:{p.name}": p.read_bytes() for p in (out / "blobs" / "sha256").iterdir()}
    assert copied == content  # byte for byte: index, both manifests, configs, layers
    gets = upstream_gets(upstream, mark, "library/multi")
    assert all(n == 1 for n in gets.values()), gets
    index = list(content)[-1]  # asked for by tag only
    assert {p.rsplit("/", 1)[1] for p in gets} == {"1.0", *content} - {index}  # the tag once, each digest once
    # now cached: a second pull through the other gateway asks the upstream for nothing
    mark = upstream.mark()
    result = skopeo(tmp_path, "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
                    f"docker://{pulled.second_url.split('//')[1]}/library/multi:1.0", f"oci:{tmp_path / 'again'}:1.0")
    assert result.returncode == 0, result.stderr
    assert upstream_gets(upstream, mark, "library/multi") == {}


def pull_image(url: str, repo: str, tag: str, together: threading.Barrier | None = None) -> dict[str, bytes]:
    """What a client does: the manifest by tag, then every blob it names; returns digest → bytes.
    With ``together``, the clients ask for the blobs at the same moment (their misses overlap)."""
    got: dict[str, bytes] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        r = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT})
        assert r.status_code == 200, r.text
        got[r.headers["Docker-Content-Digest"]] = r.content
        manifest = r.json()
        if together is not None:
            together.wait(timeout=60)
        for descriptor in [manifest["config"], *manifest["layers"]]:
            r = client.get(f"/v2/{repo}/blobs/{descriptor['digest']}")
            assert r.status_code == 200, r.text
            got[descriptor["digest"]] = r.content
    return got


def test_32_clients_through_2_gateways_fetch_each_digest_once(upstream: Distribution, pulled: TwoGateways) -> None:
    with httpx.Client(base_url=upstream.url) as client:
        push_image(client, "team/app", "v1", layers=3, layer_size=3 * 1024 * 1024)
    mark = upstream.mark()
    urls = [pulled.urls[i % 2] for i in range(32)]
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        together = threading.Barrier(len(urls))  # every client misses the blobs at once
        results = list(pool.map(lambda url: pull_image(url, "team/app", "v1", together), urls))
    assert all(r == results[0] for r in results)
    assert all(oci.digest(data) == d for d, data in results[0].items())
    gets = upstream_gets(upstream, mark, "team/app")
    assert len(gets) == 5, gets  # the tag, the config, 3 layers
    assert all(n == 1 for n in gets.values()), gets
    listing = httpx.get(f"{pulled.cluster.url}/v2/_zot/ext/mgmt", params={"resource": "sync"}).json()
    assert listing["enabled"] and listing["shards"] == {"answered": 2, "total": 2}
    counters = listing["counters"]  # whether these requests overlapped is up to the scheduler: see the next test
    assert counters["blob_misses"] >= 4 and counters["downloading"] == 0
    (entry,) = [r for r in listing["registries"] if r["urls"] == [upstream.url] and r["onDemand"]]
    assert entry["state"] == "ok" and entry["bytes"] >= 9 * 1024 * 1024 and entry["requests"]["blob/200"] >= 4
    metrics = httpx.get(f"{pulled.second_url}/metrics").text
    name = entry["name"]  # host:port, with #index when the config names the host more than once
    assert f'shardreg_sync_upstream_requests_total{{kind="blob",outcome="200",registry="{name}"}}' in metrics
    assert 'shardreg_sync_waiters_total{kind="blob"}' in metrics


def test_clients_arriving_mid_download_join_it_through_both_gateways(fake: FakeRegistry, pulled: TwoGateways) -> None:
    """The upstream trickles the blob (~1 s), so the overlap is certain: 8 clients, one upstream GET."""
    repo = "fake/joined"
    _, (_, layer) = fake.add_image(repo, "1", layer_size=1024 * 1024)
    fake.slow[layer] = 0.06  # 16 pieces of 64 KiB
    def counters() -> dict[str, int]:
        return httpx.get(f"{pulled.cluster.url}/v2/_zot/ext/mgmt", params={"resource": "sync"}).json()["counters"]
    before = counters()
    def pull(url: str) -> bytes:
        r = httpx.get(f"{url}/v2/{repo}/blobs/{layer}", timeout=60)
        assert r.status_code == 200, r.text
        return r.content
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        first = pool.submit(pull, pulled.urls[0])
        wait_for(lambda: fake.count(f"/blobs/{layer}") == 1)  # the download has started
        rest = [pool.submit(pull, pulled.urls[i % 2]) for i in range(1, 8)]
        bodies = [first.result(), *(f.result() for f in rest)]
    assert all(oci.digest(body) == layer for body in bodies)
    assert fake.count(f"/blobs/{layer}") == 1
    after = counters()
    assert after["blob_waiters"] - before["blob_waiters"] == 7
    assert after["blob_misses"] - before["blob_misses"] == 1 and after["downloading"] == 0


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_a_miss_the_upstream_lacks_is_a_404_naming_it(upstream: Distribution, pulled: TwoGateways, method: str) -> None:
    r = httpx.request(method, f"{pulled.cluster.url}/v2/nowhere/app/manifests/latest")
    assert r.status_code == 404
    if method == "GET":
        assert r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        assert "upstream" in r.text
    r = httpx.get(f"{pulled.cluster.url}/v2/nowhere/app/blobs/sha256:{'0' * 64}")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


PODMAN = shutil.which("podman") or "/usr/bin/podman"


def real_image(client: httpx.Client, repo: str, arch: str) -> tuple[bytes, list[str]]:
    """An image podman can unpack (a gzip'd tar layer, a config with its diff_id); (manifest, blob digests)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        payload = os.urandom(2048)
        info = tarfile.TarInfo(f"hello-{arch}.bin")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    layer = gzip.compress(raw.getvalue(), mtime=0)
    config = json.dumps({"architecture": arch, "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": [oci.digest(raw.getvalue())]}}).encode()
    for blob in (config, layer):
        push_blob(client, repo, blob)
    body = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_MANIFEST,
                       "config": oci.descriptor(config, oci.OCI_CONFIG),
                       "layers": [oci.descriptor(layer, oci.OCI_LAYER)]}).encode()
    r = client.put(f"/v2/{repo}/manifests/{oci.digest(body)}", content=body, headers={"Content-Type": oci.OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return body, [oci.digest(config), oci.digest(layer)]


def test_podman_pulls_a_multi_arch_index_through(upstream: Distribution, pulled: TwoGateways, tmp_path: Path) -> None:
    repo = "library/podman-multi"
    with httpx.Client(base_url=upstream.url) as client:
        amd64, amd64_blobs = real_image(client, repo, "amd64")
        arm64, arm64_blobs = real_image(client, repo, "arm64")
        index = json.dumps({"schemaVersion": 2, "mediaType": oci.OCI_INDEX, "manifests": [
            oci.descriptor(amd64, oci.OCI_MANIFEST, platform={"architecture": "amd64", "os": "linux"}),
            oci.descriptor(arm64, oci.OCI_MANIFEST, platform={"architecture": "arm64", "os": "linux"})]}).encode()
        r = client.put(f"/v2/{repo}/manifests/2.0", content=index, headers={"Content-Type": oci.OCI_INDEX})
        assert r.status_code == 201, r.text
    mark = upstream.mark()
    run = Path(tempfile.mkdtemp(prefix="podrun-"))  # podman wants a short runroot
    env = {**os.environ, "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(run)}
    storage = ["--root", str(tmp_path / "root"), "--runroot", str(run), "--storage-driver", "vfs"]
    result = subprocess.run([PODMAN, *storage, "pull", "--arch", "amd64", "--tls-verify=false",
                             f"{pulled.second_url.split('//')[1]}/{repo}:2.0"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    listed = subprocess.run([PODMAN, *storage, "images", "--digests", "--format", "{{.Digest}}"],
                            capture_output=True, text=True, timeout=60, env=env)
    shutil.rmtree(run, ignore_errors=True)
    assert oci.digest(index) in listed.stdout
    gets = upstream_gets(upstream, mark, repo)
    assert all(n == 1 for n in gets.values()), gets
    # on demand: the index by tag, the amd64 image podman asked for, and nothing of arm64
    assert {p.rsplit("/", 1)[1] for p in gets} == {"2.0", oci.digest(amd64), *amd64_blobs}
    assert not {oci.digest(arm64), *arm64_blobs} & {p.rsplit("/", 1)[1] for p in gets}
