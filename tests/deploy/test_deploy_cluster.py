"""The chart describes a *working* cluster: run the exact commands its pods run and push/pull through them.

From the chart's default rendering this takes the ConfigMap's config and the container commands of the
gateway Deployment and the shard StatefulSet, changes only what differs between a pod network and one
machine (shard endpoints → loopback ports, each process's own data directory as its volume, a port per
shard health listener, the gateway's listen port) and starts two shards and one gateway as the pods
would (a shard gets HOSTNAME=<statefulset>-<i>, its command derives the index from it). Then the
probes the pods use must answer, and an image pushed through the gateway must pull back intact.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_checks import container, gateway_and_shards
from deploy_support import CONFIG_PATH, config_of, generated_secrets, helm_template
from prometheus_client.parser import text_string_to_metric_families

from common.ring import shard_for

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Pod:
    """One process started with a pod's command, its output kept in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self.terminated = False
        self.out = log.open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def logs(self) -> str:
        if not self.out.closed:
            self.out.flush()
        return f"--- {self.name} (exit {self.proc.poll()}) ---\n" + self.log.read_text(errors="replace")[-4000:]

    def terminate(self) -> None:
        """SIGTERM, once, as the kubelet sends it."""
        if self.proc.poll() is None and not self.terminated:
            self.terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float) -> int | None:
        """Terminate and wait; returns the exit code, None if it had to be killed."""
        self.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None
        finally:
            self.out.close()
        return self.proc.returncode


def wait_http(url: str, pods: list[Pod], timeout: float = START_TIMEOUT) -> httpx.Response:
    """Poll until the URL answers 200; fail with the processes' output when it does not."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for pod in pods:
            if pod.proc.poll() is not None:
                pytest.fail(f"{pod.name} exited while waiting for {url}\n" + "\n".join(p.logs() for p in pods))
        try:
            last = httpx.get(url, timeout=3)
            if last.status_code == 200:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    pytest.fail(f"{url} never answered 200 (last: {last!r})\n" + "\n".join(p.logs() for p in pods))


def pod_argv(command: list[str], config_file: Path) -> list[str]:
    """The container command with the config path pointing at this machine's copy."""
    return [part.replace(CONFIG_PATH, str(config_file)) for part in command]


class Cluster:
    def __init__(self, helm: Path, tmp: Path) -> None:
        objects = helm_template(helm)
        self.base = config_of(objects)
        self.gateway_obj, self.shard_obj = gateway_and_shards(objects)
        self.shards = self.base["cluster"]["shards"]
        self.tmp = tmp
        self.curve_dir = self._mount_curve_keys(objects)
        self.zmq_ports = [free_port() for _ in range(self.shards)]
        self.health_ports = [free_port() for _ in range(self.shards)]
        self.http_port = free_port()
        self.volumes = [tmp / f"pvc-data-shard-{i}" for i in range(self.shards)]
        self.pods: list[Pod] = []
        bin_dir = Path(sys.executable).parent
        assert (bin_dir / "shardreg").exists(), f"the shardreg console script is not installed in {bin_dir}"
        self.env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)

    def _mount_curve_keys(self, objects: list[dict[str, Any]]) -> Path:
        """The chart's generated CURVE key Secret, as its volume would show it in the pods."""
        (secret,) = generated_secrets(objects)
        directory = self.tmp / "curve"
        directory.mkdir(mode=0o700)
        for name, value in secret["data"].items():
            (directory / name).write_bytes(base64.b64decode(value))
        return directory

    def config_for(self, role: str, **cluster_changes: Any) -> dict[str, Any]:
        """The ConfigMap's config with only the single-machine differences applied."""
        config = json.loads(json.dumps(self.base))
        config["cluster"]["endpoints"] = [f"tcp://127.0.0.1:{p}" for p in self.zmq_ports]
        for key in ("shardKey", "gatewayKey"):  # the Secret's mount point → this machine's copy
            config["cluster"][key] = config["cluster"][key].replace("/etc/shardreg/curve", str(self.curve_dir))
        config["cluster"].update(cluster_changes)
        if role == "gateway":
            config["http"]["address"], config["http"]["port"] = "127.0.0.1", self.http_port
            config["storage"]["rootDirectory"] = str(self.tmp / "gateway-emptydir")
        else:
            index = int(role.rsplit("-", 1)[1])
            config["storage"]["rootDirectory"] = str(self.volumes[index])
            config["cluster"]["shardMetricsPort"] = self.health_ports[index]
        return config

    def write_config(self, role: str, config: dict[str, Any]) -> Path:
        path = self.tmp / f"config-{role}.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def pod_env(self, workload: dict[str, Any], hostname: str) -> dict[str, str]:
        """The container's environment (its /tmp is this test's directory) on top of ours."""
        env = {**self.env, "HOSTNAME": hostname}
        for var in container(workload).get("env", []):
            value = var["value"]
            env[var["name"]] = str(self.tmp / value.removeprefix("/tmp").lstrip("/")) if value.startswith("/tmp") else value
        return env

    def start_shard(self, index: int, **cluster_changes: Any) -> Pod:
        self.volumes[index].mkdir(exist_ok=True)
        role = f"shard-{index}"
        path = self.write_config(role, self.config_for(role, **cluster_changes))
        hostname = f"{self.shard_obj['metadata']['name']}-{index}"
        argv = pod_argv(container(self.shard_obj)["command"], path)
        pod = Pod(hostname, argv, self.pod_env(self.shard_obj, hostname), self.tmp / f"{hostname}-{len(self.pods)}.log")
        self.pods.append(pod)
        return pod

    def start_gateway(self) -> Pod:
        argv = pod_argv(container(self.gateway_obj)["command"],
                        self.write_config("gateway", self.config_for("gateway")))
        name = f"{self.gateway_obj['metadata']['name']}-0"
        pod = Pod(name, argv, self.pod_env(self.gateway_obj, name), self.tmp / f"{name}.log")
        self.pods.append(pod)
        return pod

    def logs(self) -> str:
        return "\n".join(p.logs() for p in self.pods)


@pytest.fixture()
def cluster(helm: Path, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(helm, tmp_path)
    yield c
    for pod in c.pods:
        pod.stop(5)


def push_image(client: httpx.Client, repo: str, tag: str, layer: bytes) -> tuple[bytes, str]:
    """Push a config, a layer (chunked PATCH + PUT) and a manifest; returns (manifest bytes, digest)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers",
                                                                              "diff_ids": [digest_of(layer)]}}).encode()
    # Monolithic upload: POST then PUT with the body.
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    r = client.put(r.headers["Location"], params={"digest": digest_of(config)}, content=config,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    # Chunked upload: two PATCHes then the closing PUT.
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location, half = r.headers["Location"], len(layer) // 2
    for start, chunk in ((0, layer[:half]), (half, layer[half:])):
        r = client.patch(location, content=chunk, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(chunk) - 1}", "Content-Length": str(len(chunk))})
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
    r = client.put(location, params={"digest": digest_of(layer)})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest_of(layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": digest_of(layer), "size": len(layer)}],
    }).encode()
    r = client.put(f"/v2/{repo}/manifests/{tag}", content=manifest, headers={"Content-Type": MANIFEST_TYPE})
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest_of(manifest)
    return manifest, digest_of(manifest)


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one metric in Prometheus text format: (labels, value) pairs."""
    return [(sample.labels, sample.value) for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    found = [value for sample_labels, value in samples(text, name) if labels.items() <= sample_labels.items()]
    assert found, f"no {name}{labels} in the metrics:\n{text[:3000]}"
    return sum(found)


def test_pods_commands_form_a_working_registry(cluster: Cluster) -> None:
    assert cluster.shards == 2
    shard_pods = [cluster.start_shard(i) for i in range(cluster.shards)]
    gateway = cluster.start_gateway()
    pods = cluster.pods

    # The probes the StatefulSet declares.
    for port in cluster.health_ports:
        assert wait_http(f"http://127.0.0.1:{port}/livez", pods).status_code == 200
        assert wait_http(f"http://127.0.0.1:{port}/readyz", pods).status_code == 200
    # The probes the Deployment declares: ready means every shard answers over ZeroMQ.
    base = f"http://127.0.0.1:{cluster.http_port}"
    for path in ("/livez", "/startupz", "/readyz"):
        assert wait_http(base + path, pods).status_code == 200

    # One repository on each shard, so both ZeroMQ endpoints and both volumes are used.
    repos: dict[int, str] = {}  # shard index → a repository it owns
    n = 0
    while len(repos) < cluster.shards:
        name = f"team/app-{n}"
        repos.setdefault(shard_for(name, cluster.shards, cluster.base["cluster"]["hashSeed"]), name)
        n += 1
    pushed = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/v2/").status_code == 200
        for repo in repos.values():
            layer = os.urandom(3 * 1024 * 1024 + 123) + repo.encode()
            pushed[repo] = (layer, *push_image(client, repo, "v1", layer))
        for repo, (layer, manifest, manifest_digest) in pushed.items():
            r = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": MANIFEST_TYPE})
            assert r.status_code == 200, cluster.logs()
            assert r.content == manifest and r.headers["Docker-Content-Digest"] == manifest_digest
            r = client.head(f"/v2/{repo}/blobs/{digest_of(layer)}")
            assert r.status_code == 200 and int(r.headers["Content-Length"]) == len(layer)
            r = client.get(f"/v2/{repo}/blobs/{digest_of(layer)}")
            assert r.status_code == 200 and r.content == layer
            assert client.get(f"/v2/{repo}/tags/list").json() == {"name": repo, "tags": ["v1"]}
        catalog = client.get("/v2/_catalog").json()["repositories"]
        assert sorted(catalog) == sorted(repos.values())
        # Metrics enabled in the ConfigMap: the gateway serves them (what the gateway ServiceMonitor scrapes).
        r = client.get("/metrics")
        assert r.status_code == 200, r.text[:500]
        for repo in pushed:
            assert metric_value(r.text, "zot_repo_uploads_total", repo=repo) == 1
            assert metric_value(r.text, "zot_repo_downloads_total", repo=repo) >= 1
        # 3 PUTs answered 201 per image: the config blob, the layer, the manifest.
        assert metric_value(r.text, "zot_http_requests_total", method="PUT", code="201") >= 3 * len(pushed)
        layer_bytes = sum(len(layer) for layer, _, _ in pushed.values())
        assert metric_value(r.text, "shardreg_http_received_bytes_total") >= layer_bytes
        assert metric_value(r.text, "shardreg_http_sent_bytes_total") >= layer_bytes
        assert metric_value(r.text, "shardreg_shard_request_seconds_count") > 0

    # Each shard kept its repository's data on its own volume, under <root>/shard-<i>/.
    for index in range(cluster.shards):
        assert (cluster.volumes[index] / f"shard-{index}").is_dir()
        other = cluster.volumes[1 - index] / f"shard-{index}"
        assert not other.exists(), f"shard {index} wrote into another shard's volume"
        text = httpx.get(f"http://127.0.0.1:{cluster.health_ports[index]}/metrics", timeout=5).text
        assert metric_value(text, "shardreg_shard_blob_count", shard=str(index)) >= 2

    # Rolling update / scale-in: a gateway told to stop (SIGTERM, after the preStop pause) finishes the
    # request in flight, a slow streamed PATCH here, then exits cleanly within its grace period.
    with httpx.Client(base_url=base, timeout=30) as client:
        repo = repos[0]
        r = client.post(f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        sent = threading.Event()
        chunk = os.urandom(256 * 1024)

        def slow_body() -> Iterator[bytes]:
            for i in range(12):
                yield chunk
                if i == 2:
                    sent.set()
                time.sleep(0.15)

        result: dict[str, Any] = {}

        def patch() -> None:
            try:
                result["response"] = client.patch(location, content=slow_body(),
                                                   headers={"Content-Type": "application/octet-stream"})
            except httpx.HTTPError as exc:
                result["error"] = exc

        worker = threading.Thread(target=patch)
        worker.start()
        assert sent.wait(10)
        gateway.terminate()
        worker.join(30)
        assert "response" in result, f"in-flight PATCH broken by SIGTERM: {result}\n{gateway.logs()}"
        assert result["response"].status_code == 202, result["response"].text
        assert result["response"].headers["Range"] == f"0-{12 * len(chunk) - 1}"
    stop_cleanly([gateway], cluster.gateway_obj)
    stop_cleanly(shard_pods, cluster.shard_obj)


def stop_cleanly(pods: list[Pod], workload: dict[str, Any]) -> None:
    """SIGTERM all, as the kubelet does; each must exit 0 within the pod's grace period."""
    period = min(workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 40)
    for pod in pods:
        pod.terminate()
    for pod in pods:
        code = pod.stop(period)
        assert code == 0, f"{pod.name} did not stop cleanly on SIGTERM (exit {code})\n{pod.logs()}"
