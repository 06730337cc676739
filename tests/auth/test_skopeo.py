"""skopeo pushes and pulls with --creds: against Basic auth and against the built-in token flow."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.auth.conftest import USERS
from tests.cluster import Cluster

SKOPEO = shutil.which("skopeo") or "/usr/bin/skopeo"
pytestmark = pytest.mark.skipif(not os.path.exists(SKOPEO), reason="skopeo not installed")


def _blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def oci_layout(path: Path, tag: str, payload_size: int = 256) -> Path:
    """A one-layer OCI image layout built by hand (the layer: a tar of ``payload_size`` random bytes)."""
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        payload = os.urandom(payload_size)
        info = tarfile.TarInfo("hello.bin")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    raw = tar_bytes.getvalue()
    layer = _blob(path, gzip.compress(raw, compresslevel=1, mtime=0))
    config = _blob(path, json.dumps({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(raw).hexdigest()}"]}}).encode())
    manifest = _blob(path, json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}]}).encode())
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return path


def skopeo(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(home)}
    return subprocess.run([SKOPEO, "--insecure-policy", *args], capture_output=True, text=True, timeout=120, env=env)


def push_pull(cluster: Cluster, tmp_path: Path, user: str, repo: str) -> None:
    port = cluster.port
    src = oci_layout(tmp_path / "src", "v1")
    creds = f"{user}:{USERS[user]}"
    r = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", creds, f"oci:{src}:v1",
               f"docker://127.0.0.1:{port}/{repo}:v1", home=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    r = skopeo("copy", "--src-tls-verify=false", "--src-creds", creds, f"docker://127.0.0.1:{port}/{repo}:v1",
               f"oci:{out}:v1", home=tmp_path)
    assert r.returncode == 0, r.stderr
    pulled = json.loads((out / "index.json").read_text())["manifests"][0]["digest"]
    assert pulled == json.loads((src / "index.json").read_text())["manifests"][0]["digest"]
    # a user without create on the repository is refused
    r = skopeo("copy", "--dest-tls-verify=false", "--dest-creds", f"dave:{USERS['dave']}", f"oci:{src}:v1",
               f"docker://127.0.0.1:{port}/{repo}:v2", home=tmp_path)
    assert r.returncode != 0
    r = skopeo("copy", "--src-tls-verify=false", "--src-creds", f"{user}:wrong-password",
               f"docker://127.0.0.1:{port}/{repo}:v1", f"oci:{tmp_path / 'denied'}:v1", home=tmp_path)
    assert r.returncode != 0


def test_skopeo_basic_auth(basic_cluster: Cluster, tmp_path: Path) -> None:
    push_pull(basic_cluster, tmp_path, "alice", "public/skopeo")


def test_skopeo_token_flow(token_cluster: Cluster, tmp_path: Path) -> None:
    push_pull(token_cluster, tmp_path, "bob", "team-a/skopeo")
