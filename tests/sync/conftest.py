"""Fixtures of the sync tests: a real upstream (CNCF Distribution) and shardreg clusters pulling through it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import ROOT, Cluster, free_port
from tests.sync.fakeupstream import FakeRegistry
from tests.sync.upstreams import Distribution, sync_config


@pytest.fixture(scope="package")
def upstream() -> Iterator[Distribution]:
    registry = Distribution().start()
    try:
        yield registry
    finally:
        registry.close()


@dataclass
class TwoGateways:
    cluster: Cluster
    second: subprocess.Popen[bytes]
    second_url: str
    log_path: Path

    @property
    def urls(self) -> list[str]:
        return [self.cluster.url, self.second_url]


def start_second_gateway(cluster: Cluster, config: dict[str, Any], tmp: Path) -> TwoGateways:
    """A second ``shardreg gateway`` process (2 workers) on the same shards."""
    port = free_port()
    second_config = json.loads(json.dumps(config))
    second_config["storage"] = {"rootDirectory": str(cluster.data)}
    second_config["cluster"] = {"shards": cluster.shards}
    second_config["http"] = {**second_config.get("http", {}), "address": "127.0.0.1", "port": port}
    path = tmp / "gateway-b.json"
    path.write_text(json.dumps(second_config))
    log_path = tmp / "gateway-b.log"
    with log_path.open("ab") as log:
        second = subprocess.Popen([sys.executable, "-m", "common.cli", "gateway", "--config", str(path),
                                   "--workers", "2"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    setup = TwoGateways(cluster, second, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + 30
    while True:
        assert second.poll() is None, log_path.read_text()[-3000:]
        try:
            if httpx.get(f"{setup.second_url}/readyz", timeout=3).status_code == 200:
                return setup
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.1)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="package")
def fake() -> Iterator[FakeRegistry]:
    registry = FakeRegistry()
    try:
        yield registry
    finally:
        registry.close()


#: How often the test clusters re-check a tag they hold.
POLL = 1.0
#: The fake registry's request limits.
FAKE_CONCURRENT, FAKE_PER_SEC = 2, 10.0


@pytest.fixture(scope="package")
def pulled(upstream: Distribution, fake: FakeRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoGateways]:
    """2 gateways × 2 workers, 2 shards, pulling through on demand: ``fake/**`` from the fake registry,
    everything else from ``upstream``."""
    tmp = tmp_path_factory.mktemp("pullthrough")
    config = sync_config(upstream.url, pollInterval=f"{POLL:g}s")
    config.pop("storage")
    config.pop("http")
    registries = config["extensions"]["sync"]["registries"]  # type: ignore[index]
    registries.insert(0, {"urls": [fake.url], "onDemand": True, "content": [{"prefix": "fake/**"}],
                         "reqConcurrent": FAKE_CONCURRENT, "reqPerSec": FAKE_PER_SEC})
    registries += [  # periodic mirroring (each repository on its own shard)
        {"urls": [upstream.url], "onDemand": False, "pollInterval": "1s", "tlsVerify": False, "content": [
            {"prefix": "mirror/src/**", "destination": "/copies", "stripPrefix": True,
             "tags": {"regex": "^v", "excludeRegex": "-rc$", "semver": True}},
            {"prefix": "mirror/plain/*"}]},
        {"urls": [upstream.url], "onDemand": False, "pollInterval": "1s", "tlsVerify": False, "onlySigned": True,
         "content": [{"prefix": "mirror/signed/**"}]}]
    config["extensions"].update({"metrics": {"enable": True}, "mgmt": {"enable": True}})  # type: ignore[attr-defined]
    with Cluster(tmp / "data", shards=2, workers=2, config=config) as cluster:
        setup = start_second_gateway(cluster, config, tmp)
        try:
            yield setup
        finally:
            stop_process(setup.second)
