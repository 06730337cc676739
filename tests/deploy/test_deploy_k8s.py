"""The plain manifests in k8s/: valid, consistent, and the same cluster as the chart's defaults."""

from __future__ import annotations

import json
from pathlib import Path

from deploy_checks import check_cluster
from deploy_support import (
    K8S,
    RELEASE,
    generated_secrets,
    helm_template,
    kustomize,
    load_documents,
    normalize,
    validate_objects,
)

from common.config import parse_config


def test_every_file_is_valid() -> None:
    files = sorted(p for p in K8S.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"kustomization.yaml", "config.json", "gateway.yaml", "shard.yaml"}
    kustomization = load_documents((K8S / "kustomization.yaml").read_text())[0]
    assert kustomization["kind"] == "Kustomization"
    manifests = [p for p in files if p.suffix == ".yaml" and p.name != "kustomization.yaml"]
    # Every manifest is used, and every file is either a manifest, the kustomization or generator input.
    assert sorted(kustomization["resources"]) == [p.name for p in manifests]
    generated = {f for gen in kustomization.get("configMapGenerator", []) for f in gen["files"]}
    assert {p.name for p in files} == {"kustomization.yaml", *generated, *(p.name for p in manifests)}
    for path in manifests:
        objects = load_documents(path.read_text())
        assert objects, f"{path.name} holds no object"
        assert validate_objects(objects) == [], path.name
    config = parse_config(json.loads((K8S / "config.json").read_text()))
    assert config.warnings == ()


def test_kustomize_output_is_a_valid_consistent_cluster(kubectl: Path) -> None:
    objects = kustomize(kubectl)
    assert validate_objects(objects) == []
    check_cluster(objects, existing_secret="shardreg-curve")  # the operator creates it (keys stay out of git)
    # The generator's hashed ConfigMap name replaces the plain one in the pods.
    cm_name = next(o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap")
    assert cm_name.startswith("shardreg-config-")
    for w in objects:
        if w["kind"] in ("Deployment", "StatefulSet"):
            vols = {v["name"]: v for v in w["spec"]["template"]["spec"]["volumes"]}
            assert vols["config"]["configMap"]["name"] == cm_name


def test_same_cluster_as_the_chart(helm: Path, kubectl: Path) -> None:
    def keyed(objects: list[dict]) -> dict[tuple[str, str], dict]:
        normalized = [normalize(o) for o in objects]
        return {(o["kind"], o["metadata"]["name"]): o for o in normalized}

    rendered = helm_template(helm, release=RELEASE)
    # the CURVE key Secret holds generated keys: k8s/ has none, docs/kubernetes.md creates it
    curve = generated_secrets(rendered)
    assert [o["metadata"]["name"] for o in curve] == ["shardreg-curve"]
    chart = keyed([o for o in rendered if o not in curve])
    plain = keyed(kustomize(kubectl))
    assert sorted(plain) == sorted(chart), "k8s/ and the chart differ; run: python tests/deploy/deploy_support.py --write-k8s"
    for key, obj in chart.items():
        assert plain[key] == obj, f"{key} differs; run: python tests/deploy/deploy_support.py --write-k8s"
