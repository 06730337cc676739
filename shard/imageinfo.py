"""What the search summaries need to know about one stored manifest, from its bytes and config.

Pure functions (no store access): :func:`manifest_facts` turns a manifest record, its bytes
and a way to read its config blob into the facts that never change for that digest; the
search metadata caches them. Field names follow zot's GraphQL schema.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from common import boundedjson
from common.grammar import INDEX_MEDIA_TYPES

IMAGE_CONFIG_TYPES = {"application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"}
Facts = dict[str, Any]


def fmt_time(ts: float | None) -> str | None:
    if not ts:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any) -> float | None:
    """An RFC 3339 timestamp (nanoseconds allowed) → epoch seconds; None if unparsable."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("z", "Z")
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", text)
    if not match:
        return None
    base, frac, zone = match.groups()
    frac = (frac or ".0")[:7]
    zone = "+00:00" if zone in (None, "Z") else zone
    try:
        return datetime.fromisoformat(f"{base}{frac}{zone}").timestamp()
    except ValueError:
        return None


def manifest_facts(digest: str, record: dict[str, Any], body: bytes,
                   read_blob: Callable[[str, int | None], bytes | None]) -> Facts:
    """Sizes, layers, platform, labels and history of a stored manifest (an image or an index)."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = {}
    info: Facts = {"digest": digest, "mediaType": record["mediaType"], "size": record["size"],
                   "annotations": dict(doc.get("annotations") or {}), "created": record.get("created")}
    if record["mediaType"] in INDEX_MEDIA_TYPES:
        info["kind"] = "index"
        info["children"] = [m for m in doc.get("manifests", []) if isinstance(m, dict)]
        info["artifactType"] = doc.get("artifactType") or ""
        return info
    info["kind"] = "image"
    config = doc.get("config") or {}
    layers = [layer for layer in doc.get("layers", []) if isinstance(layer, dict)]
    info["configDigest"] = config.get("digest", "")
    config_type = config.get("mediaType", "")
    info["artifactType"] = doc.get("artifactType") or (config_type if config_type not in IMAGE_CONFIG_TYPES else "")
    info["layers"] = [{"Digest": layer.get("digest"), "Size": str(layer.get("size", 0))} for layer in layers]
    info["size"] = record["size"] + int(config.get("size") or 0) + sum(int(layer.get("size") or 0)
                                                                        for layer in layers)
    cfg: dict[str, Any] = {}
    if config_type in IMAGE_CONFIG_TYPES and info["configDigest"]:
        raw = read_blob(info["configDigest"], config.get("size"))
        try:
            cfg = boundedjson.loads(raw) if raw else {}
        except ValueError:  # not JSON, or nested too deep to walk safely
            cfg = {}
        if not isinstance(cfg, dict):
            cfg = {}
    arch = cfg.get("architecture") or ""
    if cfg.get("variant"):
        arch = f"{arch}/{cfg['variant']}"
    info["platform"] = {"Os": cfg.get("os") or "", "Arch": arch}
    labels = (cfg.get("config") or {}).get("Labels") or {}
    info["labels"] = {k: v for k, v in labels.items() if isinstance(v, str)} if isinstance(labels, dict) else {}
    info["configCreated"] = cfg.get("created") if isinstance(cfg.get("created"), str) else None
    info["history"] = _history(cfg.get("history"), info["layers"])
    return info


def _history(history: Any, layers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pair config history entries with layers, as zot's LayerHistory does."""
    if not isinstance(history, list) or not history:
        return [{"Layer": layer, "HistoryDescription": None} for layer in layers]
    out, index = [], 0
    for entry in history:
        if not isinstance(entry, dict):
            continue
        empty = bool(entry.get("empty_layer"))
        layer = None
        if not empty and index < len(layers):
            layer = layers[index]
            index += 1
        out.append({"Layer": layer, "HistoryDescription": {
            "Created": entry.get("created") if isinstance(entry.get("created"), str) else None,
            "CreatedBy": entry.get("created_by") or "", "Author": entry.get("author") or "",
            "Comment": entry.get("comment") or "", "EmptyLayer": empty}})
    return out


def has_digest(image: dict[str, Any], wanted: str) -> bool:
    """Whether the image summary's manifest, config or a layer has digest (or digest prefix) ``wanted``."""
    def hit(d: str | None) -> bool:
        if not d:
            return False
        return d == wanted or d.startswith(wanted) or d.split(":", 1)[-1].startswith(wanted)

    if hit(image["Digest"]):
        return True
    for m in image["Manifests"]:
        if hit(m["Digest"]) or hit(m["ConfigDigest"]) or any(hit(layer["Digest"]) for layer in m["Layers"]):
            return True
    return False
