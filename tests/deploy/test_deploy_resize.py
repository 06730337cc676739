"""The pods' exact commands through a 2→3 resize, as ``helm upgrade --set shard.count=3`` runs it (issue 12).

From the chart: the install rendering (2 shards) gives the shard and gateway commands and config; the
upgrade rendering (deployed StatefulSet of 2, ``shard.count=3``) gives the new config, the new shard's
pod (same template) and the post-upgrade hook Job. The test then does what Kubernetes and Helm do:
the existing shard processes keep running untouched with the config they started with, a third shard
starts on an empty volume, the gateway rolls onto the new config, and the Job's command runs
``shardreg cluster resize`` against the gateway. It must exit 0 with every image still pullable byte
for byte and the repositories that jump hash gives to shard 2 now on shard 2's volume.

This needs the resharding core (branch i12-core: the cluster map, the driver and the admin routes of
/work/wt/RESHARD-API.md, the ``shardreg cluster`` CLI) and runs once both branches are merged.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_checks import container, gateway_and_shards
from deploy_support import config_of, generated_secrets, helm_upgrade_template
from test_deploy_cluster import (
    MANIFEST_TYPE,
    Cluster,
    digest_of,
    free_port,
    push_image,
    stop_cleanly,
    wait_http,
)

from common.ring import shard_for

REPOS = 24
RESIZE_TIMEOUT = 120.0


@pytest.fixture()
def cluster(helm: Path, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(helm, tmp_path)
    yield c
    for pod in c.pods:
        pod.stop(5)


def run_hook_job(job: dict[str, Any], cluster: Cluster, gateway_url: str) -> subprocess.CompletedProcess[str]:
    """The Job's container command as its pod runs it; only the Service URL becomes this machine's."""
    command = container(job)["command"]
    assert command[:2] == ["sh", "-c"], command
    script = command[2]
    service = f"http://{cluster.gateway_obj['metadata']['name']}.registry.svc:5000"
    assert service in script, script
    env = cluster.pod_env(job, "shardreg-resize-x7k2p")
    return subprocess.run([*command[:2], script.replace(service, gateway_url)], env=env, capture_output=True,
                          text=True, timeout=RESIZE_TIMEOUT, stdin=subprocess.DEVNULL)


def cluster_status(cluster: Cluster, gateway_url: str) -> dict[str, Any]:
    """``shardreg cluster status --json``, the CLI an operator runs (docs/kubernetes.md)."""
    proc = subprocess.run(["shardreg", "cluster", "status", "--url", gateway_url, "--json"], env=cluster.env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_pods_commands_through_a_grow_from_2_to_3(cluster: Cluster, helm: Path, tmp_path: Path) -> None:
    seed = cluster.base["cluster"]["hashSeed"]
    shard_pods = [cluster.start_shard(i) for i in range(2)]
    gateway = cluster.start_gateway()
    base = f"http://127.0.0.1:{cluster.http_port}"
    wait_http(base + "/readyz", cluster.pods)

    pushed: dict[str, tuple[bytes, bytes, str]] = {}
    with httpx.Client(base_url=base, timeout=30) as client:
        for n in range(REPOS):
            repo = f"team/app-{n}"
            layer = os.urandom(64 * 1024 + n) + repo.encode()
            pushed[repo] = (layer, *push_image(client, repo, "v1", layer))
    movers = sorted(r for r in pushed if shard_for(r, 3, seed) != shard_for(r, 2, seed))
    assert movers and all(shard_for(r, 3, seed) == 2 for r in movers)

    # helm upgrade --set shard.count=3: what the release renders against a StatefulSet of 2 pods.
    upgrade = helm_upgrade_template(helm, 2, {"shard": {"count": 3}}, tmp_path)
    new_gateway_obj, new_shard_obj = gateway_and_shards(upgrade)
    assert new_shard_obj["spec"]["template"] == cluster.shard_obj["spec"]["template"], \
        "the shard pod template changed with shard.count: the existing shards would restart"
    assert new_shard_obj["spec"]["replicas"] == 3
    (job,) = [o for o in upgrade if o["kind"] == "Job"]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-upgrade"
    # The CURVE Secret keeps its keys on upgrade (the chart's lookup) and gains shard 2's.
    (secret,) = generated_secrets(upgrade)
    new_key = base64.b64decode(secret["data"]["shard-2.key_secret"])
    (cluster.curve_dir / "shard-2.key_secret").write_bytes(new_key)
    cluster.base = config_of(upgrade)
    assert cluster.base["cluster"]["shards"] == 3
    cluster.shards = 3
    cluster.zmq_ports.append(free_port())
    cluster.health_ports.append(free_port())
    cluster.volumes.append(tmp_path / "pvc-data-shard-2")
    cluster.shard_obj, cluster.gateway_obj = new_shard_obj, new_gateway_obj

    # The StatefulSet adds shard-2 on an empty volume; the gateway Deployment rolls onto the new config.
    new_shard = cluster.start_shard(2)
    wait_http(f"http://127.0.0.1:{cluster.health_ports[2]}/livez", cluster.pods)
    stop_cleanly([gateway], cluster.gateway_obj)
    cluster.pods.remove(gateway)
    gateway = cluster.start_gateway()
    wait_http(base + "/readyz", cluster.pods)
    assert all(p.proc.poll() is None for p in shard_pods), "an existing shard stopped during the upgrade"

    # The post-upgrade hook Job.
    done = run_hook_job(job, cluster, base)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{cluster.logs()}"
    status = cluster_status(cluster, base)
    assert status["phase"] == "stable" and status["shards"] == 3, status
    assert status["resize"]["state"] == "done", status
    owned = {s["index"]: s["owned"] for s in status["shardStates"]}
    assert owned[2] >= len(movers), status

    with httpx.Client(base_url=base, timeout=30) as client:
        for repo, (layer, manifest, manifest_digest) in pushed.items():
            r = client.get(f"/v2/{repo}/manifests/v1", headers={"Accept": MANIFEST_TYPE})
            assert r.status_code == 200 and r.content == manifest, (repo, r.status_code)
            assert r.headers["Docker-Content-Digest"] == manifest_digest
            r = client.get(f"/v2/{repo}/blobs/{digest_of(layer)}")
            assert r.status_code == 200 and r.content == layer, (repo, r.status_code)
        assert sorted(client.get("/v2/_catalog").json()["repositories"]) == sorted(pushed)
        # A push after the resize lands on the new owner and pulls back.
        extra = next(f"team/new-{n}" for n in range(1000) if shard_for(f"team/new-{n}", 3, seed) == 2)
        layer = os.urandom(32 * 1024)
        manifest, _ = push_image(client, extra, "v1", layer)
        assert client.get(f"/v2/{extra}/manifests/v1", headers={"Accept": MANIFEST_TYPE}).content == manifest
    assert (cluster.volumes[2] / "shard-2").is_dir()

    # A shard pod re-created after the upgrade gets the new config (3 shards) on its old data: it
    # starts and serves what it owns (the shard map, not the config's count, decides).
    stop_cleanly([shard_pods[0]], cluster.shard_obj)
    cluster.pods.remove(shard_pods[0])
    restarted = cluster.start_shard(0)
    wait_http(f"http://127.0.0.1:{cluster.health_ports[0]}/readyz", cluster.pods)
    with httpx.Client(base_url=base, timeout=30) as client:
        for repo in [r for r in pushed if shard_for(r, 3, seed) == 0][:3]:
            layer = pushed[repo][0]
            r = client.get(f"/v2/{repo}/blobs/{digest_of(layer)}")
            assert r.status_code == 200 and r.content == layer
    stop_cleanly([gateway], cluster.gateway_obj)
    stop_cleanly([restarted, shard_pods[1], new_shard], cluster.shard_obj)
