"""Semantic checks on a rendered cluster (Helm chart output or k8s/): do the objects fit together?

Schema validation says each object is well formed; these checks say the set describes one working
registry: selectors find the pods, Services reach named container ports, the config the pods read
agrees with the Services and the StatefulSet, and every pod runs locked down.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from deploy_support import CONFIG_PATH, by_kind, config_of, one

from common.config import parse_config


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: expected one container"
    return containers[0]


def container_ports(workload: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container(workload).get("ports", [])}


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return by_kind(objects, "Deployment") + by_kind(objects, "StatefulSet")


def selected_workloads(objects: list[dict[str, Any]], selector: dict[str, str]) -> list[dict[str, Any]]:
    return [w for w in workloads(objects) if selects(selector, pod_labels(w))]


def gateway_and_shards(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return one(objects, "Deployment"), one(objects, "StatefulSet")


def shard_index_from_hostname(command: list[str], hostname: str) -> list[str]:
    """The argv the shard container's command produces in a pod with this hostname (run with sh)."""
    assert command[:2] == ["sh", "-c"], command
    script = command[2]
    assert script.startswith("exec shardreg "), script
    probe = "exec printf '%s\\n' " + script[len("exec "):]
    out = subprocess.run(["sh", "-c", probe], env={**os.environ, "HOSTNAME": hostname},
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def check_cluster(objects: list[dict[str, Any]], *, existing_secret: str | None = None) -> dict[str, Any]:
    """Assert that the objects form one consistent shardreg cluster; returns the parsed config."""
    gateway, shards = gateway_and_shards(objects)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert len(names) == len(objects), "two objects share a kind and name"

    # Workload selectors match their own pod labels, and only their own.
    for w in workloads(objects):
        sel = w["spec"]["selector"]["matchLabels"]
        assert selects(sel, pod_labels(w)), f"{w['metadata']['name']}: selector misses its pods"
        assert selected_workloads(objects, sel) == [w], f"{w['metadata']['name']}: selector overlaps another workload"

    # Services: each selects exactly one workload and targets ports that workload's container names.
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    for svc in services.values():
        targets = selected_workloads(objects, svc["spec"]["selector"])
        assert len(targets) == 1, f"Service {svc['metadata']['name']} selects {len(targets)} workloads"
        ports = container_ports(targets[0])
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service {svc['metadata']['name']}: no container port {port['targetPort']}"
    gateway_services = [s for s in services.values() if selected_workloads(objects, s["spec"]["selector"]) == [gateway]]
    assert len(gateway_services) == 1, "expected one Service for the gateways"
    gateway_service = gateway_services[0]

    # The headless Service is the StatefulSet's governing service.
    headless = services[shards["spec"]["serviceName"]]
    assert headless["spec"].get("clusterIP") == "None", "the StatefulSet's serviceName is not headless"
    assert selected_workloads(objects, headless["spec"]["selector"]) == [shards]

    # The config the pods read.
    raw = config_of(objects)
    config = parse_config(raw)
    assert config.warnings == (), f"the rendered config has warnings: {config.warnings}"
    auth = [w for w in config.warnings if w.startswith(("http.auth", "http.accessControl", "http.ratelimit"))]
    assert auth == [], f"the rendered auth config has warnings: {auth}"
    assert config.cluster.shards == shards["spec"]["replicas"], "config shards != StatefulSet replicas"
    assert len(config.cluster.endpoints) == config.cluster.shards
    assert config.cluster.shared_storage is False, "shards have separate volumes: sharedStorage must be false"
    shard_ports = container_ports(shards)
    headless_ports = {p["name"]: p["port"] for p in headless["spec"]["ports"]}
    for i, endpoint in enumerate(config.cluster.endpoints):
        host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
        assert host == f"{shards['metadata']['name']}-{i}.{headless['metadata']['name']}", endpoint
        assert int(port) == shard_ports["zmq"] == headless_ports["zmq"], endpoint
        bind = config.shard_bind(i)
        assert bind == f"tcp://0.0.0.0:{shard_ports['zmq']}", f"shard {i} binds {bind}"
    assert config.cluster.shard_metrics_port == shard_ports["metrics"] == headless_ports["metrics"]
    assert config.http.address == "0.0.0.0"
    assert config.http.port == container_ports(gateway)["http"]
    assert {p["targetPort"] for p in gateway_service["spec"]["ports"]} == {"http"}

    # Both roles mount the same ConfigMap at the path their command reads; shards their data volume.
    cm_names = {o["metadata"]["name"] for o in by_kind(objects, "ConfigMap")}
    secret_names = {o["metadata"]["name"] for o in by_kind(objects, "Secret")}
    claim_names = {t["metadata"]["name"] for t in shards["spec"].get("volumeClaimTemplates", [])}
    for w in (gateway, shards):
        pod = w["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        c = container(w)
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        for m in mounts.values():
            assert m["name"] in volumes or (w is shards and m["name"] in claim_names), f"unknown volume {m['name']}"
        config_mount = mounts[CONFIG_PATH]
        assert volumes[config_mount["name"]]["configMap"]["name"] in cm_names
        assert config_mount.get("subPath") == "config.json"
        for v in volumes.values():
            if "secret" in v:
                assert v["secret"]["secretName"] in secret_names | {existing_secret}, v
        # Read-only root filesystem: everything written goes to a volume.
        assert "/tmp" in mounts
        assert str(config.storage.root_directory) in mounts
        if w is shards:
            assert mounts[str(config.storage.root_directory)]["name"] in claim_names
        # Locked down.
        sc, psc = c["securityContext"], pod["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True
        assert sc.get("runAsUser", psc.get("runAsUser", 0)) != 0
        assert "privileged" not in sc or sc["privileged"] is False
        assert pod.get("automountServiceAccountToken") is False
        # Pods roll when the config changes (Helm: checksum annotation; kustomize: hashed name).
        annotations = w["spec"]["template"]["metadata"].get("annotations", {})
        cm_name = volumes[config_mount["name"]]["configMap"]["name"]
        assert "checksum/config" in annotations or cm_name.rsplit("-", 1)[-1] != "config", \
            f"{w['metadata']['name']} does not roll on config changes"

    # Commands: exactly what the product expects.
    g = container(gateway)
    assert g["command"][:4] == ["shardreg", "gateway", "--config", CONFIG_PATH], g["command"]
    for i in (0, 3, 12):
        argv = shard_index_from_hostname(container(shards)["command"], f"{shards['metadata']['name']}-{i}")
        assert argv[:6] == ["shardreg", "shard", "--config", CONFIG_PATH, "--index", str(i)], argv

    # Probes on the health endpoints, by named port.
    sports = container_ports(shards)
    assert (g["livenessProbe"]["httpGet"]["path"], g["livenessProbe"]["httpGet"]["port"]) == ("/livez", "http")
    assert (g["readinessProbe"]["httpGet"]["path"], g["readinessProbe"]["httpGet"]["port"]) == ("/readyz", "http")
    # Startup is about the process: a gateway waiting for shards is not ready, but must not be restarted.
    assert (g["startupProbe"]["httpGet"]["path"], g["startupProbe"]["httpGet"]["port"]) == ("/livez", "http")
    s = container(shards)
    assert (s["livenessProbe"]["httpGet"]["path"], s["livenessProbe"]["httpGet"]["port"]) == ("/livez", "metrics")
    assert (s["readinessProbe"]["httpGet"]["path"], s["readinessProbe"]["httpGet"]["port"]) == ("/readyz", "metrics")
    assert s["startupProbe"]["httpGet"]["port"] in sports

    # Graceful drain: the preStop pause fits inside the grace period with room for in-flight requests.
    pre_stop = g["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert gateway["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + 30
    strategy = gateway["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0

    # PodDisruptionBudgets and autoscalers point at real workloads.
    for pdb in by_kind(objects, "PodDisruptionBudget"):
        assert len(selected_workloads(objects, pdb["spec"]["selector"]["matchLabels"])) == 1
    for hpa in by_kind(objects, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) == ("Deployment", gateway["metadata"]["name"])
        assert "replicas" not in gateway["spec"], "the HPA owns replicas; the Deployment must not set them"
        assert "cpu" in g["resources"]["requests"], "CPU utilisation needs a CPU request"

    # NetworkPolicy: shards take ZeroMQ from the gateway pods only.
    shard_policies = [p for p in by_kind(objects, "NetworkPolicy")
                      if selects(p["spec"]["podSelector"]["matchLabels"], pod_labels(shards))]
    if by_kind(objects, "NetworkPolicy"):
        assert len(shard_policies) == 1
        policy = shard_policies[0]["spec"]
        assert policy["policyTypes"] == ["Ingress"]
        zmq_port_refs = {"zmq", sports["zmq"]}
        for rule in policy["ingress"]:
            ports = {p["port"] for p in rule["ports"]}
            assert ports <= set(sports) | set(sports.values()), f"policy names unknown ports {ports}"
            if ports & zmq_port_refs:
                peers = rule["from"]
                assert peers and all(set(peer) == {"podSelector"} for peer in peers), peers
                assert all(selected_workloads(objects, peer["podSelector"]["matchLabels"]) == [gateway]
                           for peer in peers)
        assert any({p["port"] for p in r["ports"]} & zmq_port_refs for r in policy["ingress"])

    # Ingress and ServiceMonitors reach real Services and ports.
    for ing in by_kind(objects, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                assert backend["name"] == gateway_service["metadata"]["name"]
                assert backend["port"]["name"] in {p["name"] for p in gateway_service["spec"]["ports"]}
    for sm in by_kind(objects, "ServiceMonitor"):
        matched = [svc for svc in services.values() if selects(sm["spec"]["selector"]["matchLabels"],
                                                               svc["metadata"]["labels"])]
        assert len(matched) == 1, f"ServiceMonitor {sm['metadata']['name']} matches {len(matched)} Services"
        for ep in sm["spec"]["endpoints"]:
            assert ep["port"] in {p["name"] for p in matched[0]["spec"]["ports"]}
    return raw

