"""Images pushed for the extension tests: plain, annotated, multi-arch, signed, with referrers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.extensions import signing
from tests.oci import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, descriptor, digest, push_blob

FULL_EXTENSIONS = {
    "search": {"enable": True}, "ui": {"enable": True}, "mgmt": {"enable": True},
    "trust": {"enable": True, "cosign": True, "notation": True}, "debug": {"enable": True},
    "metrics": {"enable": False},
}


def put_manifest(client: httpx.Client, repo: str, ref: str, body: bytes, media_type: str = OCI_MANIFEST) -> str:
    r = client.put(f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type})
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"]


def push_image(client: httpx.Client, repo: str, tag: str | None, *, os_: str = "linux", arch: str = "amd64",
               layers: list[bytes] | None = None, annotations: dict[str, str] | None = None,
               labels: dict[str, str] | None = None, created: str = "2024-01-02T03:04:05Z") -> tuple[str, bytes]:
    layers = layers if layers is not None else [os.urandom(256), os.urandom(128)]
    config = json.dumps({
        "architecture": arch, "os": os_, "created": created,
        "config": {"Labels": labels or {}},
        "rootfs": {"type": "layers", "diff_ids": [digest(layer) for layer in layers]},
        "history": [{"created": created, "created_by": f"ADD layer{i}"} for i in range(len(layers))]
        + [{"created": created, "created_by": "CMD [\"sh\"]", "empty_layer": True}],
        "nonce": os.urandom(4).hex(),
    }).encode()
    for blob in [config, *layers]:
        push_blob(client, repo, blob)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": descriptor(config, OCI_CONFIG),
                           "layers": [descriptor(layer, OCI_LAYER) for layer in layers]}
    if annotations:
        doc["annotations"] = annotations
    body = json.dumps(doc).encode()
    return put_manifest(client, repo, tag or digest(body), body), body


def push_artifact(client: httpx.Client, repo: str, subject: str, subject_size: int, artifact_type: str,
                  data: bytes, annotations: dict[str, str] | None = None) -> str:
    push_blob(client, repo, b"{}")
    push_blob(client, repo, data)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
           "config": descriptor(b"{}", signing.EMPTY_TYPE),
           "layers": [descriptor(data, "application/octet-stream")],
           "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
           "annotations": annotations or {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}}
    body = json.dumps(doc).encode()
    return put_manifest(client, repo, digest(body), body)


@dataclass
class Pushed:
    digests: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    base_layers: list[bytes] = field(default_factory=list)
    cosign_pem: bytes = b""
    ca_pem: bytes = b""


def populate(client: httpx.Client) -> Pushed:
    """Push every fixture; returns the digests by name."""
    out = Pushed()
    # plain and annotated images, spread over repositories (and so over shards)
    base_layers = [os.urandom(300), os.urandom(200)]
    out.base_layers = base_layers
    d, body = push_image(client, "library/alpine", "3.19", layers=base_layers, annotations={
        "org.opencontainers.image.title": "alpine", "org.opencontainers.image.description": "A small base image",
        "org.opencontainers.image.vendor": "Alpine", "org.opencontainers.image.licenses": "MIT",
        "org.opencontainers.image.source": "https://example.com/alpine",
        "org.opencontainers.image.documentation": "https://example.com/docs",
        "org.opencontainers.image.authors": "alpine team"})
    out.digests["alpine"], out.sizes["alpine"] = d, len(body)
    d, _ = push_image(client, "library/alpine", "3.18", created="2023-06-01T00:00:00Z")
    out.digests["alpine-old"] = d
    d, _ = push_image(client, "apps/web", "v1", layers=[*base_layers, os.urandom(100)],
                      labels={"org.opencontainers.image.vendor": "WebCo"}, created="2024-03-01T00:00:00Z")
    out.digests["web"] = d
    for name in ("apps/api", "tools/debug", "tools/busybox"):
        push_image(client, name, "latest", created="2024-02-01T00:00:00Z")
    # multi-arch index
    children = []
    for os_, arch in (("linux", "amd64"), ("linux", "arm64")):
        cd, cbody = push_image(client, "multi/arch", None, os_=os_, arch=arch)
        children.append({"mediaType": OCI_MANIFEST, "digest": cd, "size": len(cbody),
                         "platform": {"os": os_, "architecture": arch}})
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children,
                        "annotations": {"org.opencontainers.image.description": "multi-arch image"}}).encode()
    out.digests["index"] = put_manifest(client, "multi/arch", "v2", index, OCI_INDEX)
    out.digests["index-amd64"], out.digests["index-arm64"] = children[0]["digest"], children[1]["digest"]

    # cosign: trusted (tag layout), untrusted key, tampered payload, referrers layout
    key, out.cosign_pem = signing.cosign_keypair()
    other, _ = signing.cosign_keypair()
    for name, signer, tamper in (("cosign-ok", key, False), ("cosign-untrusted", other, False),
                                 ("cosign-tampered", key, True)):
        repo = f"signed/{name}"
        d, body = push_image(client, repo, "v1")
        out.digests[name] = d
        payload = signing.cosign_payload(repo, d)
        signed = signing.cosign_payload(repo, "sha256:" + "0" * 64) if tamper else None
        sig, blobs = signing.cosign_signature_manifest(signer, payload, signed)
        for blob in blobs:
            push_blob(client, repo, blob)
        alg, hexpart = d.split(":")
        put_manifest(client, repo, f"{alg}-{hexpart}.sig", sig)
    repo = "signed/cosign-referrer"
    d, body = push_image(client, repo, "v1")
    out.digests["cosign-referrer"] = d
    sig, blobs = signing.cosign_signature_manifest(key, signing.cosign_payload(repo, d),
                                                   subject={"mediaType": OCI_MANIFEST, "digest": d, "size": len(body)})
    for blob in blobs:
        push_blob(client, repo, blob)
    put_manifest(client, repo, digest(sig), sig)

    # notation: trusted chain, untrusted chain, tampered
    _, ca, leaf_key, leaf = signing.notation_ca()
    _, _, other_key, other_leaf = signing.notation_ca()
    out.ca_pem = signing.cert_pem(ca)
    for name, k, chain, tamper in (("notation-ok", leaf_key, [leaf, ca], False),
                                   ("notation-untrusted", other_key, [other_leaf], False),
                                   ("notation-tampered", leaf_key, [leaf, ca], True)):
        repo = f"signed/{name}"
        d, body = push_image(client, repo, "v1")
        out.digests[name] = d
        target = {"mediaType": OCI_MANIFEST, "digest": d, "size": len(body)}
        envelope = signing.notation_envelope(k, chain, target, tamper=tamper)
        sig, blobs = signing.notation_signature_manifest(envelope, target)
        for blob in blobs:
            push_blob(client, repo, blob)
        put_manifest(client, repo, digest(sig), sig)

    # an image with artifacts referring to it
    d, body = push_image(client, "artifacts/app", "1.0")
    out.digests["artifact-subject"], out.sizes["artifact-subject"] = d, len(body)
    out.digests["sbom"] = push_artifact(client, "artifacts/app", d, len(body), "application/spdx+json", b"{\"sbom\":1}",
                                        {"kind": "sbom"})
    out.digests["scan"] = push_artifact(client, "artifacts/app", d, len(body), "application/vnd.scan+json", b"{}")
    return out
