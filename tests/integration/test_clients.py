"""Real clients: skopeo (Debian package) and oras (the OCI library client from PyPI)."""

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

import httpx
import oras.client
import oras.oci

from tests.oci import OCI_CONFIG, OCI_MANIFEST

LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_oci_layout(path: Path, tag: str, layers: int = 3) -> str:
    """Write an OCI image layout with real tar+gzip layers; returns the manifest digest."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def store(data: bytes) -> str:
        d = _sha(data)
        (blobs / d.split(":")[1]).write_bytes(data)
        return d

    layer_descs, diff_ids = [], []
    for i in range(layers):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            content = os.urandom(200_000 + i * 1000)
            info = tarfile.TarInfo(f"file{i}.bin")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        tar_bytes = raw.getvalue()
        diff_ids.append(_sha(tar_bytes))
        gz = gzip.compress(tar_bytes)
        layer_descs.append({"mediaType": LAYER_GZIP, "digest": store(gz), "size": len(gz)})
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": store(config), "size": len(config)},
                           "layers": layer_descs}).encode()
    md = store(manifest)
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": md, "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return md


def skopeo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    policy = tmp_path / "policy.json"
    if not policy.exists():
        policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}')
    assert shutil.which("skopeo"), "skopeo is required (apt-get install skopeo)"
    result = subprocess.run(["skopeo", "--policy", str(policy), *args], capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    return result


def test_skopeo_copy_in_and_out(cluster, tmp_path):
    src = tmp_path / "src"
    md = make_oci_layout(src, "v1", layers=3)
    host = cluster.url.removeprefix("http://")
    skopeo(tmp_path, "copy", "--dest-tls-verify=false", f"oci:{src}:v1", f"docker://{host}/clients/skopeo:v1")
    raw = skopeo(tmp_path, "inspect", "--raw", "--tls-verify=false", f"docker://{host}/clients/skopeo:v1").stdout
    assert _sha(raw.encode()) == md
    out = tmp_path / "out"
    skopeo(tmp_path, "copy", "--src-tls-verify=false", f"docker://{host}/clients/skopeo:v1", f"oci:{out}:v1")
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == md
    for blob in (src / "blobs" / "sha256").iterdir():
        copied = out / "blobs" / "sha256" / blob.name
        assert copied.read_bytes() == blob.read_bytes()
    # and registry to registry (mount or copy across repositories, maybe across shards)
    skopeo(tmp_path, "copy", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{host}/clients/skopeo:v1", f"docker://{host}/clients/elsewhere/copy:v2")
    r = httpx.get(f"{cluster.url}/v2/clients/elsewhere/copy/manifests/v2", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200 and _sha(r.content) == md


def test_oras_artifact_and_referrer(cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    host = cluster.url.removeprefix("http://")
    client = oras.client.OrasClient(hostname=host, insecure=True)
    Path("artifact.txt").write_bytes(b"artifact payload " + os.urandom(64))
    client.push(files=["artifact.txt"], target=f"{host}/clients/oras:v1")
    r = httpx.get(f"{cluster.url}/v2/clients/oras/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200
    subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=_sha(r.content), size=len(r.content))
    Path("signature.txt").write_bytes(b"a signature")
    client.push(files=["signature.txt"], target=f"{host}/clients/oras:sig", subject=subject,
                manifest_annotations={"org.example.kind": "signature"})
    referrers = httpx.get(f"{cluster.url}/v2/clients/oras/referrers/{subject.digest}").json()
    assert len(referrers["manifests"]) == 1
    assert referrers["manifests"][0]["annotations"]["org.example.kind"] == "signature"
    out = tmp_path / "pulled"
    files = client.pull(target=f"{host}/clients/oras:v1", outdir=str(out))
    assert Path(files[0]).read_bytes() == Path("artifact.txt").read_bytes()


def test_oras_chunked_upload(cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    host = cluster.url.removeprefix("http://")
    client = oras.client.OrasClient(hostname=host, insecure=True)
    payload = os.urandom(300_000)
    Path("big.bin").write_bytes(payload)
    client.push(files=["big.bin"], target=f"{host}/clients/oras-chunked:v1", do_chunked=True, chunk_size=65_536)
    files = client.pull(target=f"{host}/clients/oras-chunked:v1", outdir=str(tmp_path / "out"))
    assert Path(files[0]).read_bytes() == payload
