"""Issue 12: gateways that missed a resize learn the new map on their first request.

A second ``shardreg gateway`` process, started from the cluster's own config, serves requests,
is frozen (SIGSTOP) across a 2→3 resize and thawed; a third one starts only after the resize with
the config's old count (2). Both answer every repository right at once (a shard refuses the old
epoch with STALE_MAP, the gateway installs the home's map and resends: never a misrouted op),
list a complete catalog, and writes through them land on the new owners.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from common.ring import shard_for
from tests.cluster import ROOT, Cluster, free_port
from tests.oci import push_image

pytestmark = pytest.mark.timeout(300)


def start_gateway(cluster: Cluster, log) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "common.cli", "gateway", "--config",
                             str(cluster.data / "effective-config.json"), "--port", str(port), "--workers", "1"],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the second gateway did not start")


def test_gateways_that_missed_the_resize(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SHARDREG_RESHARD_WATCH", "1")
    repos = [f"stale/r{i}" for i in range(24)]
    moved = [r for r in repos if shard_for(r, 2) != shard_for(r, 3)]
    assert moved
    gateways: list[subprocess.Popen] = []
    config = {"extensions": {"metrics": {"enable": True}}}
    with Cluster(tmp_path / "data", shards=2, workers=1, config=config) as cluster, \
            open(tmp_path / "gateways.log", "ab") as log:
        try:
            main = httpx.Client(base_url=cluster.url, timeout=60)
            images = {repo: push_image(main, repo, "v1")[1] for repo in repos}
            frozen, frozen_url = start_gateway(cluster, log)
            gateways.append(frozen)
            assert httpx.get(f"{frozen_url}/v2/{repos[0]}/manifests/v1").status_code == 200
            os.killpg(frozen.pid, signal.SIGSTOP)
            try:
                cluster.resize(3)
            finally:
                os.killpg(frozen.pid, signal.SIGCONT)
            late, late_url = start_gateway(cluster, log)  # its config still says 2 shards
            gateways.append(late)
            for url in (frozen_url, late_url):
                with httpx.Client(base_url=url, timeout=60) as client:
                    for repo, body in images.items():
                        r = client.get(f"/v2/{repo}/manifests/v1")
                        assert r.status_code == 200 and r.content == body, (url, repo, r.status_code)
                    assert client.get("/v2/_catalog").json()["repositories"] == sorted(repos)
                    push_image(client, moved[0], f"via-{url.rsplit(':', 1)[1]}")
            tags = main.get(f"/v2/{moved[0]}/tags/list").json()["tags"]
            assert len(tags) == 3, tags
            status = cluster.status()
            assert status["epoch"] == 3 and [s["owned"] for s in status["shardStates"]] == [
                sum(shard_for(r, 3) == i for r in repos) for i in range(3)]
            metrics = main.get("/metrics").text
            for shard in range(3):
                assert f'shardreg_cluster_epoch{{shard="{shard}"}} 3.0' in metrics, metrics[-3000:]
            fences = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                         if line.startswith("shardreg_reshard_fence_seconds_count"))
            assert fences >= len(moved)  # one fence per switched repository, on the sources
            assert 'shardreg_reshard_redirects_total{kind="stale_map",shard=' in metrics
        finally:
            for proc in gateways:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
