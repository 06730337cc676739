"""What an event is, from the change to the bytes a sink receives.

A change (a push, a tag moved, a delete, a push refused by lint) becomes one neutral record,
appended to the outbox in the transaction of the change (:mod:`shard.events.outbox`). Each
sink renders it when it sends it: zot's sinks (``http``, ``nats``) as a CloudEvents 1.0
structured JSON document with zot's type names and data fields; Distribution's
``notifications.endpoints`` as an envelope ``{"events": [...]}`` of Distribution's event
format. Rendering at send time keeps the outbox independent of which sinks are configured.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from cloudevents.core.bindings.http import to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from shard import clock

#: zot's event types (pkg/extensions/events/common.go) and source.
REPOSITORY_CREATED = "zotregistry.repository.created"
IMAGE_UPDATED = "zotregistry.image.updated"
IMAGE_DELETED = "zotregistry.image.deleted"
IMAGE_LINT_FAILED = "zotregistry.image.lint_failed"
SOURCE = "zotregistry.dev"
#: Distribution's envelope media type.
ENVELOPE = "application/vnd.docker.distribution.events.v1+json"
Record = dict[str, Any]


def event(kind: str, repo: str, *, reference: str = "", digest: str = "", media_type: str = "", size: int = 0,
          manifest: bytes | None = None, context: dict[str, str] | None = None) -> Record:
    """A neutral event record, as stored in the outbox."""
    ctx = context or {}
    record: Record = {"id": str(uuid.uuid4()), "type": kind, "time": clock.now(), "repo": repo,
                      "reference": reference, "digest": digest, "mediaType": media_type, "size": size,
                      "actor": ctx.get("actor", ""), "addr": ctx.get("addr", ""),
                      "method": ctx.get("method", ""), "useragent": ctx.get("useragent", "")}
    if manifest is not None:
        record["manifest"] = manifest.decode("utf-8", "replace")
    return record


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def cloudevent_data(record: Record) -> dict[str, Any]:
    """zot's data fields: name, reference, digest, mediaType, manifest, actor, request."""
    data: dict[str, Any] = {"name": record["repo"]}
    if record["type"] != REPOSITORY_CREATED:
        data.update(reference=record["reference"], digest=record["digest"], mediaType=record["mediaType"])
        if "manifest" in record:
            data["manifest"] = record["manifest"]
    if record.get("actor"):
        data["actor"] = {"name": record["actor"]}
    if record.get("addr") or record.get("useragent"):
        data["request"] = {"addr": record.get("addr", ""), "method": record.get("method", ""),
                           "useragent": record.get("useragent", "")}
    return data


def cloudevent(record: Record) -> tuple[dict[str, str], bytes]:
    """(headers, body) of the structured-mode CloudEvent for ``record``."""
    attributes = {"type": record["type"], "source": SOURCE, "id": record["id"],
                  "time": datetime.fromtimestamp(record["time"], UTC), "subject": record["repo"],
                  "datacontenttype": "application/json"}
    message = to_structured(CloudEvent(attributes, cloudevent_data(record)), JSONFormat())
    return dict(message.headers), message.body


_ACTIONS = {IMAGE_UPDATED: "push", IMAGE_DELETED: "delete"}


def notification(record: Record) -> dict[str, Any] | None:
    """One event of Distribution's format (None: Distribution has no such event)."""
    action = _ACTIONS.get(record["type"])
    if action is None:
        return None
    target: dict[str, Any] = {"repository": record["repo"], "digest": record["digest"]}
    if action == "push":
        target.update(mediaType=record["mediaType"], size=record["size"], length=record["size"],
                      url=f"/v2/{record['repo']}/manifests/{record['digest']}")
    if record["reference"] and ":" not in record["reference"]:
        target["tag"] = record["reference"]
    return {"id": record["id"], "timestamp": _iso(record["time"]), "action": action, "target": target,
            "request": {"id": record["id"], "addr": record.get("addr", ""), "method": record.get("method", ""),
                        "useragent": record.get("useragent", "")},
            "actor": {"name": record.get("actor", "")}, "source": {"addr": "shardreg"}}


def envelope(events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"events": events}).encode()
