"""A stored manifest's record never changes, and tags are created or moved only with the right permission.

Issue 10, item 12: a create-only user re-PUT another user's manifest by digest with another
Content-Type (the body names no mediaType) and got 201; the owner's GET with an OCI Accept
then answered 404. And the gateway checked whether a tag exists before the shard wrote it: a
create-only push could move a tag created in between.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import bcrypt
import httpx
import pytest

from common.errors import ErrorCode, RegistryError
from shard.hooks import Hooks
from shard.ops.manifests import ManifestOps
from shard.service import ShardService
from tests.inprocess import InProcessRegistry
from tests.oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, descriptor, digest, push_blob

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
USERS = {"carol": "carol-pw-1", "bob": "bob-pw-2", "upd": "upd-pw-3"}
ACCESS = {
    "repositories": {
        "team/**": {"policies": [
            {"users": ["carol"], "actions": ["read", "create", "update", "delete"]},
            {"users": ["bob"], "actions": ["read", "create"]},
            {"users": ["upd"], "actions": ["read", "update"]},
        ]},
    },
}


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()}


def untyped_manifest(client: httpx.Client, repo: str, nonce: str) -> bytes:
    """An image manifest without ``mediaType`` (allowed: Content-Type says what it is)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": nonce}).encode()
    layer = f"layer {nonce}".encode()
    for blob in (config, layer):
        push_blob(client, repo, blob)
    return json.dumps({"schemaVersion": 2, "config": descriptor(config, OCI_CONFIG),
                       "layers": [descriptor(layer, OCI_LAYER)]}).encode()


@pytest.mark.inprocess
def test_re_putting_a_digest_with_another_media_type_is_refused(client):
    repo = "records/untyped"
    body = untyped_manifest(client, repo, "a")
    d = digest(body)
    r = client.put(f"/v2/{repo}/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    r = client.put(f"/v2/{repo}/manifests/{d}", content=body, headers={"Content-Type": DOCKER_MANIFEST})
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    for ref in ("v1", d):
        r = client.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.headers["Content-Type"] == OCI_MANIFEST and r.content == body
    # the same media type again: accepted, nothing about the manifest changes, a new tag is added
    r = client.put(f"/v2/{repo}/manifests/v2", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1", "v2"]


def test_a_tag_created_meanwhile_is_not_moved_by_a_create_only_push(tmp_path):
    """Two create-only pushes of one new tag at once: exactly one creates it, the other is refused."""

    async def scenario() -> None:
        service = ShardService(tmp_path, 0, 1, durable=False)
        ops = ManifestOps(service, Hooks())

        def put(body: bytes):  # the gateway has checked the caller may create, not update
            return ops.put({"repo": "r", "digest": digest(body), "media_type": OCI_MANIFEST, "tags": ["t"],
                            "blobs": [], "children": [], "subject": None, "artifact_type": None,
                            "annotations": None, "config": None, "pushed_by": "bob",
                            "may_create": True, "may_update": False}, [body])

        outcomes = await asyncio.gather(*(put(f'{{"n":{i}}}'.encode()) for i in range(8)), return_exceptions=True)
        won = [i for i, o in enumerate(outcomes) if not isinstance(o, BaseException)]
        refused = [o for o in outcomes if isinstance(o, RegistryError) and o.code == ErrorCode.DENIED]
        assert len(won) == 1 and len(refused) == 7, outcomes
        tagged = service.meta.read(lambda txn: service.meta.tag_digest(txn, "r", "t"))
        assert tagged == digest(f'{{"n":{won[0]}}}'.encode())
        service.close()

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    htpasswd = tmp_path_factory.mktemp("records") / "htpasswd"
    htpasswd.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                                for u, p in USERS.items()))
    config = {"http": {"auth": {"htpasswd": {"path": str(htpasswd)}}, "accessControl": ACCESS}}
    with InProcessRegistry(shards=1, config=config) as registry:
        yield registry


def test_create_only_user_cannot_break_or_move_someone_elses_tag(auth_registry):
    repo = "team/app"
    with auth_registry.client(headers=basic("carol")) as carol, auth_registry.client(headers=basic("bob")) as bob:
        body = untyped_manifest(carol, repo, "carol")
        d = digest(body)
        assert carol.put(f"/v2/{repo}/manifests/v1", content=body,
                         headers={"Content-Type": OCI_MANIFEST}).status_code == 201
        # bob re-puts carol's manifest by digest with another type: refused, carol's stays readable
        r = bob.put(f"/v2/{repo}/manifests/{d}", content=body, headers={"Content-Type": DOCKER_MANIFEST})
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_INVALID", r.text
        r = carol.get(f"/v2/{repo}/manifests/v1", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200 and r.content == body
        # bob may create tags, not move them
        other = untyped_manifest(bob, repo, "bob")
        r = bob.put(f"/v2/{repo}/manifests/v1", content=other, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED", r.text
        r = bob.put(f"/v2/{repo}/manifests/bobs", content=other, headers={"Content-Type": OCI_MANIFEST},
                    params={"tag": ["v1"]})
        assert r.status_code == 403, r.text  # one existing tag among them: nothing is written
        assert bob.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]
        r = bob.put(f"/v2/{repo}/manifests/bobs", content=other, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
        assert carol.get(f"/v2/{repo}/manifests/v1").content == body
    with auth_registry.client(headers=basic("upd")) as upd:
        # update only: may move an existing tag, not create one
        assert upd.put(f"/v2/{repo}/manifests/v1", content=other,
                       headers={"Content-Type": OCI_MANIFEST}).status_code == 201
        r = upd.put(f"/v2/{repo}/manifests/new", content=other, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 403, r.text
