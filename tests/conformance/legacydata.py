"""Test data of the legacy (ginkgo) OCI conformance suite, generated in Python, plus the state the
four legacy modules share (they run in order against one namespace, like the Go suite).

Documents are serialised with tab indentation as the Go suite does (json.MarshalIndent), and every
descriptor carries an unknown ``newUnspecifiedField`` (``null`` when unset), which registries must keep.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import secrets
import string
import tarfile
import uuid
from dataclasses import dataclass
from typing import Any

from tests.conformance.ociapi import MT_IMAGE, MT_INDEX, digest_of

MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_EMPTY = "application/vnd.oci.empty.v1+json"
ANNOTATION_KEY = "org.opencontainers.conformance.test"
ART_A = "application/vnd.nhl.peanut.butter.bagel"
ART_B = "application/vnd.nba.strawberry.jam.croissant"
ART_INDEX = "application/vnd.food.stand"
NUM_WORKFLOWS = 5  # configs[0..4] / manifests[0..4]: pull, push, discovery, management, referrers subject


def marshal(doc: Any) -> bytes:
    return json.dumps(doc, indent="\t").encode()


@dataclass
class Blob:
    content: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.content)

    @property
    def length(self) -> str:
        return str(len(self.content))


def descriptor(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    doc = {"mediaType": media_type, "digest": digest_of(content), "size": len(content), **extra}
    doc.setdefault("newUnspecifiedField", None)
    return doc


def _random_author() -> str:
    alphabet = string.digits + string.ascii_uppercase + string.ascii_lowercase + "-"
    return "".join(secrets.choice(alphabet) for _ in range(16))


def _layer() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        content = b"legacy conformance layer\n"
        info = tarfile.TarInfo("layer.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return gzip.compress(buf.getvalue(), mtime=0)


configs = [Blob(marshal({"author": _random_author(), "architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}})) for _ in range(NUM_WORKFLOWS)]
layer = Blob(_layer())
_layers = [descriptor(MT_LAYER_GZ, layer.content)]
HELLO = base64.b64encode(b"hello world").decode()


def _config_desc(i: int) -> dict[str, Any]:
    # the config descriptor embeds the config as `data` and an unknown field with content
    return descriptor(MT_CONFIG, configs[i].content, data=base64.b64encode(configs[i].content).decode(),
                      newUnspecifiedField=HELLO)


manifests = [Blob(marshal({"schemaVersion": 2, "mediaType": MT_IMAGE, "config": _config_desc(i),
                           "layers": _layers})) for i in range(NUM_WORKFLOWS)]
# no mediaType field at all, and no layers
empty_layer_manifest = Blob(marshal({"schemaVersion": 2, "config": _config_desc(1), "layers": []}))
NONEXISTENT_MANIFEST = ".INVALID_MANIFEST_NAME"
INVALID_MANIFEST = b"blablabla"
DUMMY_DIGEST = digest_of(b"hello world")
EMPTY_LAYER_TAG = "emptylayer"
TAG_NAME = "tagtest0"

blob_a = Blob(os.urandom(42))                      # streamed upload
blob_b = Blob(os.urandom(42))                      # chunked upload


def chunks(blob: Blob) -> tuple[bytes, bytes, str, str]:
    """Split a blob as the suite does: first chunk size/2+1 bytes, then the rest, with their ranges."""
    n = len(blob.content) // 2 + 1
    c1, c2 = blob.content[:n], blob.content[n:]
    return c1, c2, f"0-{len(c1) - 1}", f"{len(c1)}-{len(blob.content) - 1}"


empty_json = Blob(b"{}")
EMPTY_JSON_DESC = descriptor(MT_EMPTY, b"{}")
ref_blob_a = Blob(b"NHL Peanut Butter on my NHL bagel")
ref_blob_b = Blob(b"NBA Strawberry Jam on my NBA croissant")


def _subject(i: int) -> dict[str, Any]:
    return descriptor(MT_IMAGE, manifests[i].content)


def _ref_manifest(*, config: dict[str, Any], layers: list[dict[str, Any]], subject: int,
                  artifact_type: str = "", annotation: str = "") -> Blob:
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_IMAGE}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc.update(config=config, layers=layers, subject=_subject(subject))
    if annotation:
        doc["annotations"] = {ANNOTATION_KEY: annotation}
    return Blob(marshal(doc))


refs_a_config = _ref_manifest(config=descriptor(ART_A, ref_blob_a.content), layers=[EMPTY_JSON_DESC], subject=4,
                              annotation="test config a")
refs_b_config = _ref_manifest(config=descriptor(ART_B, ref_blob_b.content), layers=[EMPTY_JSON_DESC], subject=4,
                              annotation="test config b")
refs_a_layer = _ref_manifest(config=EMPTY_JSON_DESC, layers=[descriptor(ART_A, ref_blob_a.content)], subject=4,
                             artifact_type=ART_A, annotation="test layer a")
refs_b_layer = _ref_manifest(config=EMPTY_JSON_DESC, layers=[descriptor(ART_B, ref_blob_b.content)], subject=4,
                             artifact_type=ART_B, annotation="test layer b")
# its subject, manifests[3], is never pushed before the referrers checks
refs_c_layer = _ref_manifest(config=EMPTY_JSON_DESC, layers=[descriptor(ART_B, ref_blob_b.content)], subject=3,
                             artifact_type=ART_B)
refs_index = Blob(marshal({
    "schemaVersion": 2, "mediaType": MT_INDEX, "artifactType": ART_INDEX,
    "manifests": [descriptor(MT_IMAGE, refs_a_config.content), descriptor(MT_IMAGE, refs_a_layer.content)],
    "subject": _subject(4), "annotations": {ANNOTATION_KEY: "test index"}}))
ANNOTATION_VALUES = {refs_a_config.digest: "test config a", refs_b_config.digest: "test config b",
                     refs_a_layer.digest: "test layer a", refs_b_layer.digest: "test layer b",
                     refs_index.digest: "test index"}

NAMESPACE = f"conformance-legacy/{uuid.uuid4().hex[:8]}"          # OCI_NAMESPACE
CROSSMOUNT_NAMESPACE = f"conformance-{uuid.uuid4()}"             # default OCI_CROSSMOUNT_NAMESPACE

# state carried from spec to spec (and from suite to suite), like the Go suite's package variables
state: dict[str, Any] = {}
