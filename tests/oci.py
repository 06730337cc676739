"""A tiny OCI client for tests: push blobs and images, build manifests."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY_JSON = b"{}"


def digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def descriptor(data: bytes, media_type: str, algorithm: str = "sha256", **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest(data, algorithm), "size": len(data), **extra}


def push_blob(client: httpx.Client, repo: str, data: bytes, algorithm: str = "sha256") -> str:
    d = digest(data, algorithm)
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    r = client.put(r.headers["Location"], params={"digest": d}, content=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return d


def image_manifest(config: bytes, layers: list[bytes], algorithm: str = "sha256", **extra: Any) -> bytes:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": descriptor(config, OCI_CONFIG, algorithm),
           "layers": [descriptor(layer, OCI_LAYER, algorithm) for layer in layers], **extra}
    return json.dumps(doc).encode()


def push_image(client: httpx.Client, repo: str, tag: str | None = "latest", layers: int = 2,
               layer_size: int = 1024, algorithm: str = "sha256", **extra: Any) -> tuple[str, bytes]:
    """Push config + random layers + manifest; returns (manifest digest, manifest bytes)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "nonce": os.urandom(8).hex()}).encode()
    blobs = [os.urandom(layer_size) for _ in range(layers)]
    for blob in [config, *blobs]:
        push_blob(client, repo, blob, algorithm)
    body = image_manifest(config, blobs, algorithm, **extra)
    d = digest(body, algorithm)
    r = client.put(f"/v2/{repo}/manifests/{tag or d}", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return d, body
