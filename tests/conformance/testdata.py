"""The data sets of the redesigned (data-driven) OCI conformance suite, generated in Python.

Each generator builds the same shapes as the suite: random gzip/tar layers, an image config,
image manifests, indexes, artifacts, subjects, descriptors with ``data``, unknown fields, and
a digest algorithm switch (sha256 / sha512).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import secrets
import tarfile
from dataclasses import dataclass, field
from typing import Any

from tests.conformance.ociapi import MT_IMAGE, MT_INDEX, MT_OCTET, digest_of

MT_CONF1 = "application/vnd.example.oci.conformance.v1"
MT_CONF2 = "application/vnd.example.oci.conformance.v2"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MT_LAYER_ND_GZ = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MT_EMPTY = "application/vnd.oci.empty.v1+json"
LAYER_PREFIX = "application/vnd.oci.image.layer.v1."
AMD64 = {"architecture": "amd64", "os": "linux"}
ARM64 = {"architecture": "arm64", "os": "linux"}


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def rand_text() -> str:
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=")


@dataclass
class Opts:
    algo: str = "sha256"
    annotations: dict[str, str] | None = None
    annotation_uniq: bool = False
    artifact_type: str = ""
    compress: bool = True
    config_bytes: bytes | None = None
    config_media_type: str = ""
    extra_field: bool = False
    layer_bytes: bytes | None = None
    layer_count: int = 2
    layer_media_type: str = ""
    platform: dict[str, str] = field(default_factory=lambda: dict(AMD64))
    platforms: list[dict[str, str] | None] | None = None
    set_data: bool = False
    subject: dict[str, Any] | None = None
    tag: str = ""

    def but(self, **kw: Any) -> Opts:
        values = dict(self.__dict__)
        values.update(kw)
        return Opts(**values)


@dataclass
class DataSet:
    name: str
    algo: str = "sha256"
    tags: dict[str, str] = field(default_factory=dict)          # tag -> manifest digest
    desc: dict[str, dict[str, Any]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, bytes] = field(default_factory=dict)
    man_order: list[str] = field(default_factory=list)          # push order: children first
    referrers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tag_param: bool = False          # push tags with ?tag= on the by-digest PUT
    bad_digest: set[str] = field(default_factory=set)   # manifests whose body does not match the digest

    # ------------------------------------------------------------ generators
    def _descriptor(self, data: bytes, media_type: str, o: Opts) -> dict[str, Any]:
        d = {"mediaType": media_type, "digest": digest_of(data, o.algo), "size": len(data)}
        if o.set_data:
            d["data"] = base64.b64encode(data).decode()
        return d

    def add_blob(self, data: bytes, media_type: str, o: Opts) -> str:
        d = self._descriptor(data, media_type, o)
        self.blobs[d["digest"]] = data
        self.desc[d["digest"]] = d
        return d["digest"]

    def gen_layer(self, n: int, o: Opts) -> tuple[str, str]:
        content = (f"Conformance test file contents for file number {n}.\n"
                   f"Todays lucky number is {secrets.randbelow(2**63)}\n").encode()
        tar_buf = io.BytesIO()
        with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            info = tarfile.TarInfo(f"./conformance-{n}.txt")
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
        raw = tar_buf.getvalue()
        if o.compress:
            body, mt = gzip.compress(raw), MT_LAYER_GZ
        else:
            body, mt = raw, MT_LAYER
        comp = self.add_blob(body, mt, o)
        return comp, digest_of(raw, o.algo)

    def gen_config(self, platform: dict[str, str], diff_ids: list[str], o: Opts) -> str:
        config: dict[str, Any] = {"author": "OCI Conformance Test", **platform,
                                  "rootfs": {"type": "layers", "diff_ids": diff_ids}}
        if o.extra_field:
            config[f"org.{rand_text()}"] = rand_text()
        return self.add_blob(dumps(config), o.config_media_type or MT_CONFIG, o)

    def _finish_annotations(self, doc: dict[str, Any], o: Opts) -> None:
        annotations = dict(o.annotations) if o.annotations else None
        if o.annotation_uniq:
            annotations = annotations or {}
            annotations[f"org.example.{rand_text()}"] = rand_text()
        if annotations:
            doc["annotations"] = annotations
        if o.extra_field:
            doc[f"org.{rand_text()}"] = rand_text()

    def _add_manifest(self, body: bytes, media_type: str, o: Opts, artifact_type: str,
                      annotations: dict[str, str] | None) -> str:
        dig = digest_of(body, o.algo)
        self.manifests[dig] = body
        self.man_order.append(dig)
        self.desc[dig] = self._descriptor(body, media_type, o)
        if o.subject is not None:
            ref = {"mediaType": media_type, "digest": dig, "size": len(body)}
            if artifact_type:
                ref["artifactType"] = artifact_type
            if annotations:
                ref["annotations"] = annotations
            self.referrers.setdefault(o.subject["digest"], []).append(ref)
        if o.tag:
            self.tags[o.tag] = dig
        return dig

    def gen_manifest(self, config: dict[str, Any], layers: list[dict[str, Any]], o: Opts) -> str:
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_IMAGE}
        if o.artifact_type:
            doc["artifactType"] = o.artifact_type
        doc["config"] = config
        doc["layers"] = layers
        if o.subject is not None:
            doc["subject"] = o.subject
        self._finish_annotations(doc, o)
        return self._add_manifest(dumps(doc), MT_IMAGE, o, o.artifact_type or config["mediaType"],
                                  doc.get("annotations"))

    def gen_manifest_full(self, o: Opts) -> str:
        comp: list[str] = []
        uncomp: list[str] = []
        for n in range(o.layer_count):
            if not o.layer_media_type or o.layer_media_type.startswith(LAYER_PREFIX):
                c, u = self.gen_layer(n, o)
            else:
                data = o.layer_bytes if o.layer_bytes is not None else os.urandom(2048)
                c = u = self.add_blob(data, o.layer_media_type, o)
            comp.append(c)
            uncomp.append(u)
        if not o.config_media_type or o.config_media_type == MT_CONFIG:
            conf = self.gen_config(o.platform, uncomp, o)
        else:
            conf = self.add_blob(o.config_bytes or b"", o.config_media_type, o)
        return self.gen_manifest(self.desc[conf], [self.desc[c] for c in comp], o)

    def gen_index(self, platforms: list[dict[str, str] | None], children: list[str], o: Opts) -> str:
        entries = []
        for p, child in zip(platforms, children, strict=True):
            d = dict(self.desc[child])
            if p is not None:
                d["platform"] = p
            entries.append(d)
        doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": MT_INDEX}
        if o.artifact_type:
            doc["artifactType"] = o.artifact_type
        doc["manifests"] = entries
        if o.subject is not None:
            doc["subject"] = o.subject
        self._finish_annotations(doc, o)
        return self._add_manifest(dumps(doc), MT_INDEX, o, o.artifact_type, doc.get("annotations"))

    def gen_index_full(self, o: Opts) -> str:
        platforms = o.platforms if o.platforms is not None else [dict(AMD64), dict(ARM64)]
        children = [self.gen_manifest_full(o.but(platform=p)) for p in platforms]
        return self.gen_index(platforms, children, o)


# ---------------------------------------------------------------- the data sets (run.go GenerateData)
ARTIFACT = {"artifact_type": MT_CONF1, "config_media_type": MT_EMPTY, "config_bytes": b"{}",
            "layer_count": 1, "layer_media_type": MT_CONF1}
HELLO = {"org.opencontainers.conformance": "hello conformance test"}


def build(name: str, algo: str) -> DataSet:
    """Generate data set ``name`` with digest algorithm ``algo``."""
    td = DataSet(name, algo)
    o = Opts(algo=algo)
    if name == "image":
        td.gen_manifest_full(o.but(tag="image"))
    elif name == "image-uncompressed":
        td.gen_manifest_full(o.but(tag="image-uncompressed", compress=False))
    elif name == "large-manifest":
        large = {f"large-annotation-{i}": "A" * 10000 for i in range(390)}
        td.gen_manifest_full(o.but(tag="large-manifest", annotations=large))
    elif name == "index":
        td.gen_index_full(o.but(tag="index", platforms=[dict(AMD64), dict(ARM64)]))
    elif name == "nested-index":
        d1 = td.gen_index_full(o.but(platforms=[dict(AMD64), dict(ARM64)]))
        d2 = td.gen_index_full(o.but(platforms=[dict(AMD64), dict(ARM64)]))
        td.gen_index([None, None], [d1, d2], o.but(tag="index-of-index"))
    elif name == "empty-index":
        td.gen_index_full(o.but(tag="index", platforms=[]))
    elif name == "artifact":
        td.gen_manifest_full(o.but(tag="artifact", **ARTIFACT))
    elif name == "artifact-index":
        td.gen_index_full(o.but(tag="artifact-index", platforms=[dict(AMD64), dict(ARM64)], **ARTIFACT))
    elif name == "artifact-without-layers":
        td.gen_manifest_full(o.but(tag="artifact-without-layers", **{**ARTIFACT, "layer_bytes": b"{}",
                                                                     "layer_media_type": MT_EMPTY}))
    elif name == "artifacts-with-subject":
        subj = td.gen_manifest_full(o.but(tag="image"))
        sd = dict(td.desc[subj])
        td.gen_manifest_full(o.but(subject=sd))
        td.gen_manifest_full(o.but(subject=sd, annotations=HELLO, annotation_uniq=True, tag="tagged-artifact1",
                                   **ARTIFACT))
        td.gen_manifest_full(o.but(subject=sd, annotations=HELLO, annotation_uniq=True, tag="tagged-artifact2",
                                   **{**ARTIFACT, "artifact_type": MT_CONF2, "layer_media_type": MT_OCTET}))
    elif name == "index-with-subject":
        subj = td.gen_index_full(o.but(tag="index"))
        td.gen_index_full(o.but(subject=dict(td.desc[subj]), annotations=HELLO, annotation_uniq=True,
                                tag="tagged-artifact", **ARTIFACT))
    elif name == "missing-subject":
        subject = {"mediaType": MT_IMAGE, "digest": digest_of(b"missing content"), "size": 123}
        td.gen_manifest_full(o.but(subject=subject, annotations=HELLO, annotation_uniq=True, tag="tagged-artifact",
                                   **ARTIFACT))
    elif name == "data-field":
        td.gen_manifest_full(o.but(tag="data-field", set_data=True))
    elif name == "non-distributable-layers":
        diff_ids = [digest_of(os.urandom(256), algo)]
        nd_gz = digest_of(os.urandom(256), algo)
        nd = digest_of(os.urandom(256), algo)
        diff_ids.append(nd)
        layers: list[dict[str, Any]] = [
            {"mediaType": MT_LAYER_ND_GZ, "digest": nd_gz, "size": 123456,
             "urls": [f"https://store.example.com/blobs/{algo}/{nd_gz.split(':')[1]}"]},
            {"mediaType": MT_LAYER_ND, "digest": nd, "size": 12345,
             "urls": [f"https://store.example.com/blobs/{algo}/{nd.split(':')[1]}"]},
        ]
        comp, uncomp = td.gen_layer(1, o)
        diff_ids.append(uncomp)
        layers.append(td.desc[comp])
        conf = td.gen_config(dict(AMD64), diff_ids, o)
        td.gen_manifest(td.desc[conf], layers, o.but(tag="non-distributable-image"))
    elif name == "custom-fields":
        td.gen_index_full(o.but(tag="custom-fields", platforms=[dict(AMD64), dict(ARM64)], extra_field=True))
    elif name == "no-layers":
        td.gen_manifest_full(o.but(tag="no-layers", layer_count=0))
    elif name == "sha512":
        # "Digest Algorithm sha512": an index of two images, all sha512, no tags (pushed by digest only)
        td.gen_index_full(Opts(algo="sha512"))
    elif name in ("tag-param-sha256", "tag-param-sha512"):
        td.gen_index_full(o.but(tag=name))
        for i, dig in enumerate(td.man_order):
            td.tags[f"{name}-{i}"] = dig
        td.tag_param = True
    elif name == "bad-digest-image":
        dig = td.gen_manifest_full(o)
        td.manifests[dig] += b"  "  # whitespace: the body no longer matches its digest
        td.bad_digest.add(dig)
    else:
        raise ValueError(name)
    return td


# data sets run with both digest algorithms (tags of non-sha256 manifests go through ?tag=)
GENERIC = ["image", "image-uncompressed", "large-manifest", "index", "nested-index", "empty-index", "artifact",
           "artifact-index", "artifact-without-layers", "artifacts-with-subject", "index-with-subject",
           "missing-subject", "data-field", "non-distributable-layers", "custom-fields", "no-layers",
           "bad-digest-image"]
# data sets bound to one algorithm by definition
FIXED = [("sha512", "sha512"), ("tag-param-sha256", "sha256"), ("tag-param-sha512", "sha512")]
