"""The Helm chart: lints, renders for several value sets, validates, and describes a consistent cluster."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from deploy_checks import check_cluster, container, gateway_and_shards
from deploy_support import (
    CHART,
    NAMESPACE,
    by_kind,
    generated_secrets,
    helm_template,
    one,
    run,
    validate_objects,
)

from common.config import parse_config
from gateway.auth.htpasswd import HtpasswdFile
from gateway.auth.sessions import configured_key

HTPASSWD = "alice:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode() + "\n"

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "ingress-monitoring-hpa": {
        "ingress": {"enabled": True, "hosts": [{"host": "registry.example.test", "paths": [{"path": "/"}]}],
                    "tls": [{"secretName": "registry-tls", "hosts": ["registry.example.test"]}]},
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "gateway": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12}},
        "auth": {"htpasswd": {"enabled": True, "users": HTPASSWD}, "apikey": True},
        "config": {"http": {"externalUrl": "https://registry.example.test",
                            "accessControl": {"repositories": {"**": {"anonymousPolicy": ["read"],
                                                                      "defaultPolicy": ["read", "create"]}}}}},
    },
    "existing-secret": {
        "auth": {"existingSecret": "registry-auth", "htpasswd": {"enabled": True},
                 "bearer": {"enabled": True, "realm": "https://auth.example.test/token", "service": "registry"}},
    },
    "four-shards": {
        "fullnameOverride": "reg",
        "shard": {"count": 4, "zmqPort": 6000, "metricsPort": 9200,
                  "persistence": {"storageClass": "fast-ssd", "size": "200Gi"}},
        "gateway": {"port": 8080, "workers": 4, "replicas": 3, "service": {"type": "LoadBalancer", "port": 443}},
        "networkPolicy": {"metricsFrom": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}]},
        "config": {"storage": {"rootDirectory": "/data"}, "log": {"level": "debug"}},
    },
}


def values_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    return path


def test_lint_strict(helm: Path, tmp_path: Path) -> None:
    for name, values in VALUE_SETS.items():
        out = run([helm, "lint", "--strict", CHART, "--values", values_file(tmp_path, values)]).stdout
        assert "0 chart(s) failed" in out, f"{name}: {out}"
        assert "[WARNING]" not in out and "[ERROR]" not in out, f"{name}: {out}"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_renders_valid_objects(helm: Path, name: str) -> None:
    objects = helm_template(helm, VALUE_SETS[name])
    assert validate_objects(objects) == []
    for obj in objects:
        assert obj["metadata"]["namespace"] == NAMESPACE, obj["metadata"]["name"]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_renders_a_consistent_cluster(helm: Path, name: str) -> None:
    values = VALUE_SETS[name]
    objects = helm_template(helm, values)
    check_cluster(objects, existing_secret=values.get("auth", {}).get("existingSecret"))


def test_defaults(helm: Path) -> None:
    objects = helm_template(helm)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["ConfigMap", "Deployment", "NetworkPolicy", "NetworkPolicy", "PodDisruptionBudget",
                            "PodDisruptionBudget", "Secret", "Service", "Service", "ServiceAccount", "StatefulSet"])
    gateway, shards = gateway_and_shards(objects)
    assert gateway["metadata"]["name"] == "shardreg-gateway" and gateway["spec"]["replicas"] == 2
    assert shards["metadata"]["name"] == "shardreg-shard" and shards["spec"]["replicas"] == 2
    assert shards["spec"]["podManagementPolicy"] == "Parallel"
    claim = shards["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    assert "storageClassName" not in claim["spec"]
    assert shards["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert container(gateway)["image"] == "localhost/shardreg:0.1.0"
    config = json.loads(one(objects, "ConfigMap")["data"]["config.json"])
    assert config["cluster"]["endpoints"] == [
        "tcp://shardreg-shard-0.shardreg-shard-headless:5555", "tcp://shardreg-shard-1.shardreg-shard-headless:5555"]
    assert "auth" not in config["http"]
    assert config["extensions"]["metrics"]["enable"] is True
    # No auth configured: no auth Secret and nothing mounted from one; the one Secret holds the wire's keys.
    assert [o["metadata"]["name"] for o in by_kind(objects, "Secret")] == ["shardreg-curve"]
    for workload in gateway_and_shards(objects):
        assert "secrets" not in {v["name"] for v in workload["spec"]["template"]["spec"]["volumes"]}


def test_ingress_monitoring_and_autoscaling(helm: Path) -> None:
    objects = helm_template(helm, VALUE_SETS["ingress-monitoring-hpa"])
    ingress = one(objects, "Ingress")
    ann = ingress["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/proxy-body-size"] == "0"
    assert int(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    assert int(ann["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 600
    assert ann["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"][0]["secretName"] == "registry-tls"
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    monitors = {m["metadata"]["name"]: m for m in by_kind(objects, "ServiceMonitor")}
    assert set(monitors) == {"shardreg-gateway", "shardreg-shard"}
    assert all(m["metadata"]["labels"]["release"] == "prometheus" for m in monitors.values())
    assert monitors["shardreg-gateway"]["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitors["shardreg-shard"]["spec"]["endpoints"][0]["port"] == "metrics"
    # The chart-made Secret holds what the config points at.
    secret = one(objects, "Secret", "shardreg-auth")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["htpasswd"] == HTPASSWD
    keys = json.loads(data["session-keys.json"])
    assert len(keys["hashKey"]) == 64 and len(keys["encryptKey"]) == 32
    config = json.loads(one(objects, "ConfigMap")["data"]["config.json"])
    auth = config["http"]["auth"]
    assert auth["htpasswd"]["path"] == "/etc/shardreg/secrets/htpasswd"
    assert auth["sessionKeysFile"] == "/etc/shardreg/secrets/session-keys.json"
    assert auth["apikey"] is True
    assert config["http"]["externalUrl"] == "https://registry.example.test"
    assert config["http"]["accessControl"]["repositories"]["**"]["anonymousPolicy"] == ["read"]
    for workload in gateway_and_shards(objects):
        mounts = {m["name"]: m["mountPath"] for m in container(workload)["volumeMounts"]}
        assert mounts["secrets"] == "/etc/shardreg/secrets"
        assert "checksum/secret" in workload["spec"]["template"]["metadata"]["annotations"]


def test_created_secret_works_with_the_gateway(helm: Path, tmp_path: Path) -> None:
    """Mount the chart-made Secret as the kubelet would and let the gateway's auth code read it."""
    objects = helm_template(helm, VALUE_SETS["ingress-monitoring-hpa"])
    gateway, _ = gateway_and_shards(objects)
    mounts = {m["name"]: m["mountPath"] for m in container(gateway)["volumeMounts"]}
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    for key, value in one(objects, "Secret", "shardreg-auth")["data"].items():
        (secret_dir / key).write_bytes(base64.b64decode(value))
    text = one(objects, "ConfigMap")["data"]["config.json"].replace(mounts["secrets"], str(secret_dir))
    config = parse_config(json.loads(text))
    settings = config.http.auth
    assert config.warnings == () and settings.apikey is True
    assert asyncio.run(HtpasswdFile(settings.htpasswd).verify("alice", "s3cret")) is True
    assert asyncio.run(HtpasswdFile(settings.htpasswd).verify("alice", "wrong")) is False
    assert configured_key(settings) is not None


def test_existing_secret(helm: Path) -> None:
    objects = helm_template(helm, VALUE_SETS["existing-secret"])
    assert [o for o in by_kind(objects, "Secret") if o not in generated_secrets(objects)] == []
    for workload in gateway_and_shards(objects):
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        assert volumes["secrets"]["secret"]["secretName"] == "registry-auth"
    auth = json.loads(one(objects, "ConfigMap")["data"]["config.json"])["http"]["auth"]
    assert auth["bearer"] == {"realm": "https://auth.example.test/token", "service": "registry",
                              "cert": "/etc/shardreg/secrets/bearer.crt"}
    assert auth["htpasswd"]["path"] == "/etc/shardreg/secrets/htpasswd"


def test_four_shards(helm: Path) -> None:
    objects = helm_template(helm, VALUE_SETS["four-shards"])
    gateway, shards = gateway_and_shards(objects)
    assert shards["metadata"]["name"] == "reg-shard" and shards["spec"]["replicas"] == 4
    config = json.loads(one(objects, "ConfigMap")["data"]["config.json"])
    assert config["cluster"]["endpoints"] == [f"tcp://reg-shard-{i}.reg-shard-headless:6000" for i in range(4)]
    assert config["cluster"]["shards"] == 4 and config["cluster"]["gatewayWorkers"] == 4
    assert config["http"]["port"] == 8080 and config["storage"]["rootDirectory"] == "/data"
    svc = one(objects, "Service", "reg-gateway")
    assert svc["spec"]["type"] == "LoadBalancer" and svc["spec"]["ports"][0]["port"] == 443
    assert shards["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast-ssd"
    policy = one(objects, "NetworkPolicy", "reg-shard")
    metrics_rule = next(r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "metrics")
    assert metrics_rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}


def test_config_change_rolls_pods(helm: Path) -> None:
    def checksums(values: dict[str, Any]) -> list[str]:
        return [w["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
                for w in gateway_and_shards(helm_template(helm, values))]

    base = checksums({})
    assert base == checksums({}), "the checksum must be stable between renderings"
    # The shard pods' checksum leaves out the shard count and endpoints (a grow must not restart the
    # shards: tests/deploy/test_deploy_resize_chart.py); each is stable and follows every other change.
    assert len(set(base)) == 2
    changed = checksums({"config": {"log": {"level": "debug"}}})
    assert all(a != b for a, b in zip(base, changed, strict=True))


def test_refuses_incomplete_auth(helm: Path) -> None:
    with pytest.raises(AssertionError, match="auth.htpasswd.users"):
        helm_template(helm, {"auth": {"htpasswd": {"enabled": True}}})
    with pytest.raises(AssertionError, match="auth.bearer.cert"):
        helm_template(helm, {"auth": {"bearer": {"enabled": True, "realm": "https://auth.example.test/token"}}})
    with pytest.raises(AssertionError, match="auth.bearer.realm"):
        helm_template(helm, {"auth": {"bearer": {"enabled": True, "cert": "PEM"}}})


def undocumented_values(text: str) -> list[str]:
    """Keys of a values file with no comment above them or above any of their parent keys."""
    missing, stack = [], []  # stack: (indent, key, documented)
    previous = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            previous = stripped
            continue
        indent = len(line) - len(line.lstrip())
        key_line = not stripped.startswith("-") and ":" in stripped
        if key_line:
            while stack and stack[-1][0] >= indent:
                stack.pop()
            key = stripped.split(":", 1)[0].strip('"')
            documented = previous.startswith("#") or any(doc for _, _, doc in stack)
            stack.append((indent, key, documented))
            if not documented and stripped.split(":", 1)[1].strip():  # a leaf with a value
                missing.append(".".join(k for _, k, _ in stack))
        previous = stripped
    return missing


def test_values_are_documented() -> None:
    assert undocumented_values((CHART / "values.yaml").read_text()) == []
    assert undocumented_values("a:\n  b: 1\n# -- c\nc: 2\n") == ["a.b"]


def test_notes_explain_first_push(helm: Path) -> None:
    out = run([helm, "install", "shardreg", CHART, "--dry-run=client", "--namespace", NAMESPACE]).stdout
    assert "skopeo copy" in out and "port-forward service/shardreg-gateway" in out
    assert "The shard count (2) changes\nonline with `helm upgrade --wait --set shard.count=N`" in out
