"""The chart's CURVE keys: a Secret generated at install (kept on upgrade), mounted in every pod,
named by the config; `curve.existingSecret` and `curve.insecure` replace it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from deploy_checks import gateway_and_shards
from deploy_support import CHART, by_kind, generated_secrets, helm_template, one

from common import curvekeys
from common.config import parse_config


def _mounts(workload: dict) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in workload["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}


def test_generated_keys_are_mounted_and_usable(helm: Path, tmp_path: Path) -> None:
    objects = helm_template(helm, {"shard": {"count": 3}})
    (secret,) = generated_secrets(objects)
    assert sorted(secret["data"]) == ["gateway.key_secret", "shard-0.key_secret", "shard-1.key_secret",
                                      "shard-2.key_secret"]
    for name, value in secret["data"].items():
        (tmp_path / name).write_bytes(base64.b64decode(value))
    publics = {curvekeys.load(tmp_path / name).public for name in secret["data"]}
    assert len(publics) == 4, "every shard and the gateways have their own key pair"
    text = one(objects, "ConfigMap")["data"]["config.json"].replace("/etc/shardreg/curve", str(tmp_path))
    config = parse_config(json.loads(text))
    client = curvekeys.client_keys(config)
    assert client is not None and len(client.servers) == 3
    for i in range(3):
        server = curvekeys.server_keys(config, i)
        assert server is not None and server.pair.public == client.servers[i]
        assert server.admitted == {client.pair.public}
    for workload in gateway_and_shards(objects):
        assert _mounts(workload)["curve"] == "/etc/shardreg/curve"
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        assert volumes["curve"]["secret"]["secretName"] == secret["metadata"]["name"]


def test_keys_do_not_roll_pods_and_are_kept_on_upgrade(helm: Path) -> None:
    """`helm template` has no cluster, so every rendering generates new keys; the pod templates must not
    depend on them (an upgrade keeps the Secret through `lookup` and must not restart every pod)."""
    first, second = helm_template(helm), helm_template(helm)
    assert generated_secrets(first)[0]["data"] != generated_secrets(second)[0]["data"]
    assert gateway_and_shards(first) == gateway_and_shards(second)
    template = (CHART / "templates" / "curve-secret.yaml").read_text()
    assert '(lookup "v1" "Secret" .Release.Namespace $name)' in template
    assert "index $old $key | default (randBytes 32)" in template


def test_existing_secret_and_insecure(helm: Path) -> None:
    objects = helm_template(helm, {"curve": {"existingSecret": "wire-keys", "authorizedGatewayKeys": ["old.key"]}})
    assert generated_secrets(objects) == []
    for workload in gateway_and_shards(objects):
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        assert volumes["curve"]["secret"]["secretName"] == "wire-keys"
    cluster = json.loads(one(objects, "ConfigMap")["data"]["config.json"])["cluster"]
    assert cluster["authorizedGatewayKeys"] == ["/etc/shardreg/curve/old.key"]

    objects = helm_template(helm, {"curve": {"insecure": True}})
    assert by_kind(objects, "Secret") == []
    cluster = json.loads(one(objects, "ConfigMap")["data"]["config.json"])["cluster"]
    assert cluster["insecure"] is True and "shardKey" not in cluster
    for workload in gateway_and_shards(objects):
        assert "curve" not in _mounts(workload)
