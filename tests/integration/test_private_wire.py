"""Issue 10 items 1 and 2: nobody but the registry's own processes can send shards ops or read its files.

* On the host: a local user (the test drops to ``nobody``) finds no shard socket it can connect to,
  even with a data path too long for a socket path (once an abstract socket anyone could use), and
  cannot read ``data.mdb`` or ``effective-config.json``; everything under the data directory is
  0700/0600, and the effective config shows secrets as ``"***"``.
* On the network: tcp shards speak CURVE and admit only the configured gateway key; a shard (or
  gateway) on tcp without keys refuses to start unless ``cluster.insecure`` is set.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zmq

from common import curvekeys
from tests.cluster import ROOT, Cluster, free_port
from tests.integration.wire_attacks import as_nobody, ping, try_everything, unix_sockets
from tests.oci import push_image

SESSION_SECRET = "do-not-show-this-0123456789"


@pytest.fixture(scope="module")
def long_path_cluster() -> Iterator[Cluster]:
    """A cluster whose data path is too long for socket paths, under world-enterable directories
    (/tmp/<0755 dir>/...): only the registry's own permissions can keep a local user out."""
    assert os.geteuid() == 0, "these tests drop to an unprivileged uid: run them as root"
    base = Path(tempfile.mkdtemp(prefix="wire-", dir="/tmp"))
    base.chmod(0o755)
    data = base / ("d" * 100)
    config = {"http": {"auth": {"sessionSecret": SESSION_SECRET}}}
    cluster = Cluster(data, config=config)
    cluster.config_path.chmod(0o600)  # the test's own input file, not the registry's
    cluster.start()
    try:
        with httpx.Client(base_url=cluster.url, timeout=30) as client:
            push_image(client, "team/app", "v1", layers=2, layer_size=200_000)
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def _effective(cluster: Cluster) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((cluster.data / "effective-config.json").read_text())
    return data


def test_a_local_user_cannot_reach_the_shards_or_read_the_data(long_path_cluster: Cluster) -> None:
    data = long_path_cluster.data
    shards = [pid for name, pid in long_path_cluster.children().items() if name.startswith("shard-")]
    sockets = unix_sockets(shards)
    assert len(sockets) >= 2, f"the shards' sockets are not listed: {sockets}"
    mdbs = sorted(data.glob("shard-*/meta/data.mdb"))
    assert len(mdbs) == 2
    files = [*mdbs, data / "effective-config.json", *sorted(data.glob("shard-*/blobs/sha256/*/*"))[:2]]
    outcome = as_nobody(lambda: try_everything(sockets, files))
    assert outcome["connected"] == [] and outcome["answered"] == [], outcome
    assert outcome["read"] == [], outcome
    assert not any(s.startswith("@") for s in sockets), f"abstract sockets have no permissions: {sockets}"
    # the registry itself still works over them
    assert all(ping(f"ipc://{s}") for s in sockets if s.endswith(".sock"))


def test_everything_under_the_data_directory_is_owner_only(long_path_cluster: Cluster) -> None:
    runtime = _effective(long_path_cluster)["cluster"].get("socketDirectory")
    wrong = []
    for top in (long_path_cluster.data, *([Path(runtime)] if runtime else [])):
        for path in [top, *top.rglob("*")]:
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode) and mode != 0o700 or stat.S_ISREG(st.st_mode) and mode != 0o600 \
                    or stat.S_ISSOCK(st.st_mode) and mode & 0o077:
                wrong.append(f"{oct(mode)} {path}")
    assert wrong == []
    assert (long_path_cluster.data / "shard-0" / "meta" / "data.mdb").is_file()
    # the sockets are in a short private runtime directory, recorded for every process of the cluster
    assert runtime and len(runtime) < 60 and not runtime.startswith(str(long_path_cluster.data))


def test_effective_config_hides_secrets(long_path_cluster: Cluster) -> None:
    text = (long_path_cluster.data / "effective-config.json").read_text()
    assert SESSION_SECRET not in text
    assert json.loads(text)["http"]["auth"]["sessionSecret"] == "***"


# --- tcp: CURVE -------------------------------------------------------------------------------------------


class TcpCluster(Cluster):
    """``shardreg serve`` with tcp endpoints from its config (no --shards, which would drop them)."""

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "common.cli", "serve", "--port", str(self.port), "--data", str(self.data),
                "--workers", "1", "--config", str(self.config_path)]


def test_embedded_tcp_cluster_makes_its_keys_and_admits_only_its_gateways(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    endpoints = [f"tcp://127.0.0.1:{p}" for p in ports]
    cluster = TcpCluster(tmp_path / "data", config={"cluster": {"shards": 2, "endpoints": endpoints}})
    with cluster:
        with httpx.Client(base_url=cluster.url, timeout=30) as client:
            digest, body = push_image(client, "team/app", "v1", layers=1, layer_size=300_000)
            r = client.get("/v2/team/app/manifests/v1", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 200 and r.content == body
        keys = tmp_path / "data" / "keys"
        assert stat.S_IMODE(keys.stat().st_mode) == 0o700
        assert {p.name for p in keys.iterdir()} == {"shard.key", "shard.key_secret", "gateway.key", "gateway.key_secret"}
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in keys.iterdir())
        shard = curvekeys.load(keys / "shard.key")
        gateway = curvekeys.load(keys / "gateway.key_secret")
        stranger = curvekeys.generate()
        assert gateway.secret is not None and stranger.secret is not None
        for endpoint in endpoints:
            assert not ping(endpoint), "a client without CURVE got an answer"
            assert not ping(endpoint, server_key=shard.public, client_pair=(stranger.public, stranger.secret))
            assert ping(endpoint, server_key=shard.public, client_pair=(gateway.public, gateway.secret))
        effective = _effective(cluster)["cluster"]
        assert effective["shardKey"] == str(keys / "shard.key_secret")


def _shard_config(tmp_path: Path, **cluster: Any) -> Path:
    path = tmp_path / "shard.json"
    path.write_text(json.dumps({"storage": {"rootDirectory": str(tmp_path / "data")},
                                "cluster": {"shards": 1, "endpoints": [f"tcp://127.0.0.1:{free_port()}"], **cluster}}))
    return path


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "common.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_tcp_without_keys_refuses_to_start(tmp_path: Path) -> None:
    config = _shard_config(tmp_path)
    for argv in (["shard", "--config", str(config), "--index", "0"], ["gateway", "--config", str(config)]):
        proc = _run(*argv)
        assert proc.returncode == 2, proc.stderr
        assert "without CURVE keys" in proc.stderr and "cluster.insecure" in proc.stderr
    assert not (tmp_path / "data" / "shard-0").exists(), "the shard opened its data before refusing"


def test_insecure_tcp_starts_with_a_warning(tmp_path: Path) -> None:
    config = _shard_config(tmp_path, insecure=True)
    endpoint = json.loads(config.read_text())["cluster"]["endpoints"][0]
    log = tmp_path / "shard.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "common.cli", "shard", "--config", str(config), "--index", "0"],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not ping(endpoint, timeout=0.5):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        assert "insecure" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_a_standalone_tcp_shard_admits_only_configured_gateway_keys(tmp_path: Path) -> None:
    """Keys from `shardreg keys generate`, one pair per shard; an old gateway key stays admitted during a
    rotation (authorizedGatewayKeys), a key nobody configured is refused."""
    keys = tmp_path / "keys"
    proc = _run("keys", "generate", "--dir", str(keys), "--shards", "1")
    assert proc.returncode == 0, proc.stderr
    old = curvekeys.generate()
    curvekeys.write_pair(tmp_path / "old-gateway.key", curvekeys.KeyPair(old.public))
    config = _shard_config(tmp_path, shardKey=str(keys / "shard-{index}.key_secret"),
                           gatewayKey=str(keys / "gateway.key"),
                           authorizedGatewayKeys=[str(tmp_path / "old-gateway.key")])
    endpoint = json.loads(config.read_text())["cluster"]["endpoints"][0]
    log = tmp_path / "shard.log"
    with open(log, "wb") as out:
        shard = subprocess.Popen([sys.executable, "-m", "common.cli", "shard", "--config", str(config), "--index", "0"],
                                 cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        server = curvekeys.load(keys / "shard-0.key").public
        gateway = curvekeys.load(keys / "gateway.key_secret")
        stranger = curvekeys.generate()
        assert gateway.secret and stranger.secret and old.secret
        deadline = time.monotonic() + 20
        while not ping(endpoint, server_key=server, client_pair=(gateway.public, gateway.secret), timeout=0.5):
            assert shard.poll() is None and time.monotonic() < deadline, log.read_text()
        assert ping(endpoint, server_key=server, client_pair=(old.public, old.secret))
        assert not ping(endpoint, server_key=server, client_pair=(stranger.public, stranger.secret))
        assert not ping(endpoint)
        assert "unknown client key" in log.read_text()
        # a whole gateway with a key the shard does not know: 503, and its log says why
        curvekeys.write_pair(tmp_path / "stranger.key_secret", stranger)
        gateway_config = json.loads(config.read_text())
        gateway_config["cluster"].update(shardKey=str(keys / "shard-{index}.key"),
                                         gatewayKey=str(tmp_path / "stranger.key_secret"), authorizedGatewayKeys=[])
        gateway_config["http"] = {"address": "127.0.0.1", "port": free_port()}
        (tmp_path / "gateway.json").write_text(json.dumps(gateway_config))
        gateway_log = tmp_path / "gateway.log"
        with open(gateway_log, "wb") as out:
            gateway = subprocess.Popen([sys.executable, "-m", "common.cli", "gateway", "--config",
                                        str(tmp_path / "gateway.json"), "--workers", "1"],
                                       cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{gateway_config['http']['port']}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    if httpx.get(f"{url}/livez", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert gateway.poll() is None and time.monotonic() < deadline, gateway_log.read_text()
                time.sleep(0.2)
            assert httpx.get(f"{url}/v2/_catalog", timeout=10).status_code == 503
            assert "refused the CURVE handshake" in gateway_log.read_text()
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(20)
    finally:
        shard.send_signal(signal.SIGTERM)
        shard.wait(20)


def test_zmq_has_curve() -> None:
    assert zmq.has("curve")
