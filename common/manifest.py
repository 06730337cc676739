"""Parsing and checking a pushed manifest: what it is and which blobs and manifests it needs.

The registry stores the exact bytes it was given; this module only reads them to decide
whether they are acceptable and to extract what the shard must verify and index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from common import boundedjson
from common.errors import ErrorCode, RegistryError
from common.grammar import INDEX_MEDIA_TYPES, MANIFEST_MEDIA_TYPES, MediaType, parse_digest

IMAGE_CONFIG_TYPES = frozenset({"application/vnd.oci.image.config.v1+json",
                                "application/vnd.docker.container.image.v1+json"})
#: Deepest nesting of arrays/objects a manifest may have (real ones stay under 6 levels).
MAX_DEPTH = 64


@dataclass
class ParsedManifest:
    media_type: str
    blobs: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    config: dict[str, Any] | None = None
    #: child descriptors of an index (platform etc.), kept for search
    manifests: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)


def _invalid(message: str, **detail: Any) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_INVALID, message, detail=detail or None)


def _descriptor(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType is missing")
    if not isinstance(digest, str):
        raise _invalid(f"{where}.digest is missing")
    parse_digest(digest, ErrorCode.MANIFEST_INVALID)
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    annotations = value.get("annotations")
    if annotations is not None and (not isinstance(annotations, dict)
                                    or not all(isinstance(v, str) for v in annotations.values())):
        raise _invalid(f"{where}.annotations must map strings to strings")
    urls = value.get("urls")
    if urls is not None and (not isinstance(urls, list) or not all(isinstance(u, str) for u in urls)):
        raise _invalid(f"{where}.urls must be a list of strings")
    return value


def media_type_of(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip() or None


def parse_manifest(body: bytes, content_type: str | None) -> ParsedManifest:
    """Validate a manifest body; raise MANIFEST_INVALID (or 415 for an unknown type)."""
    try:
        doc = boundedjson.loads(body, MAX_DEPTH)
    except (boundedjson.TooDeep, boundedjson.NotText) as exc:
        raise _invalid(f"manifest is not acceptable JSON: {exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    header = media_type_of(content_type)
    if header in (None, MediaType.OCTET_STREAM, MediaType.JSON):
        header = None
    media_type = header or declared
    if media_type is None:
        # An OCI manifest may omit mediaType; recognise it by shape.
        media_type = MediaType.OCI_INDEX if "manifests" in doc else MediaType.OCI_MANIFEST
    if declared and header and declared != header:
        raise _invalid("Content-Type does not match the manifest's mediaType",
                       content_type=header, media_type=declared)
    if media_type not in MANIFEST_MEDIA_TYPES:
        raise RegistryError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"unsupported manifest media type {media_type}",
                            detail={"mediaType": media_type[:200]}, status=415)
    if doc.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
    annotations = doc.get("annotations")
    if annotations is not None and (not isinstance(annotations, dict)
                                    or not all(isinstance(v, str) for v in annotations.values())):
        raise _invalid("annotations must map strings to strings")
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    parsed = ParsedManifest(media_type=media_type, annotations=annotations or None)
    if "subject" in doc and doc["subject"] is not None:
        parsed.subject = _descriptor(doc["subject"], "subject")["digest"]

    if media_type in INDEX_MEDIA_TYPES:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise _invalid("an index needs a manifests list")
        for i, child in enumerate(children):
            descriptor = _descriptor(child, f"manifests[{i}]")
            parsed.children.append(descriptor["digest"])
            parsed.manifests.append(descriptor)
        parsed.artifact_type = artifact_type
        return parsed

    config = _descriptor(doc.get("config"), "config")
    layers = doc.get("layers", [])
    if not isinstance(layers, list):
        raise _invalid("layers must be a list")
    parsed.config = {"digest": config["digest"], "mediaType": config["mediaType"], "size": config["size"]}
    parsed.blobs.append(config["digest"])
    for i, layer in enumerate(layers):
        descriptor = _descriptor(layer, f"layers[{i}]")
        parsed.layers.append(descriptor)
        if descriptor.get("urls"):
            continue  # non-distributable: the bytes live elsewhere
        parsed.blobs.append(descriptor["digest"])
    # OCI 1.1: an image manifest's artifactType falls back to its config media type.
    parsed.artifact_type = artifact_type or config["mediaType"]
    parsed.blobs = list(dict.fromkeys(parsed.blobs))
    return parsed
