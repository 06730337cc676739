"""What the lifecycle tests share: pushing images, referrers and indexes, moving the shards' clock."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx

from tests.oci import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, descriptor, digest, push_blob, push_image

DAY = 86400.0



def set_clock(client: httpx.Client, offset: float) -> None:
    """Move every shard's lifecycle clock (``extensions.debug`` must be on)."""
    r = client.put("/v2/_shardreg/debug/clock", json={"offset": offset})
    assert r.status_code == 200, r.text


def push_at(client: httpx.Client, repo: str, tag: str | None, days_ago: float, **extra: Any) -> str:
    """Push an image as if ``days_ago`` days ago; returns its digest."""
    set_clock(client, -days_ago * DAY)
    try:
        d, _ = push_image(client, repo, tag, layers=1, layer_size=64, **extra)
    finally:
        set_clock(client, 0)
    return d


def pull_at(client: httpx.Client, repo: str, reference: str, days_ago: float) -> None:
    set_clock(client, -days_ago * DAY)
    try:
        r = client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST + "," + OCI_INDEX})
        assert r.status_code == 200, r.text
    finally:
        set_clock(client, 0)


def push_referrer(client: httpx.Client, repo: str, subject: str, days_ago: float) -> str:
    """A signature-like artifact whose subject is ``subject``."""
    set_clock(client, -days_ago * DAY)
    try:
        config = b"{}"
        push_blob(client, repo, config)
        payload = os.urandom(32)
        push_blob(client, repo, payload)
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.test.sig",
                           "config": descriptor(config, "application/vnd.oci.empty.v1+json"),
                           "layers": [descriptor(payload, "application/octet-stream")],
                           "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1}}).encode()
        d = digest(body)
        r = client.put(f"/v2/{repo}/manifests/{d}", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
    finally:
        set_clock(client, 0)
    return d


def push_index(client: httpx.Client, repo: str, tag: str | None, children: list[str], days_ago: float) -> str:
    set_clock(client, -days_ago * DAY)
    try:
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": c, "size": 1,
             "platform": {"os": "linux", "architecture": f"arch{i}"}} for i, c in enumerate(children)]}).encode()
        d = digest(body)
        r = client.put(f"/v2/{repo}/manifests/{tag or d}", content=body, headers={"Content-Type": OCI_INDEX})
        assert r.status_code == 201, r.text
    finally:
        set_clock(client, 0)
    return d


def tags(client: httpx.Client, repo: str) -> set[str]:
    r = client.get(f"/v2/{repo}/tags/list")
    if r.status_code == 404:
        return set()
    assert r.status_code == 200, r.text
    return set(r.json().get("tags") or [])


def exists(client: httpx.Client, repo: str, reference: str) -> bool:
    r = client.head(f"/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST + "," + OCI_INDEX})
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


def run_retention(client: httpx.Client, dry_run: bool, gc: bool = False) -> dict[str, Any]:
    r = client.post("/v2/_shardreg/retention", params={"dryRun": str(dry_run).lower(), "gc": str(gc).lower()})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


__all__ = ["OCI_CONFIG", "DAY", "OCI_INDEX", "set_clock", "push_at", "pull_at", "push_referrer", "push_index",
           "tags", "exists", "run_retention"]
