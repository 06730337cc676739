"""Immutable tags (storage.immutableTags) and push policy (extensions.lint), in process."""

from __future__ import annotations

import json
from collections.abc import Iterator

import bcrypt
import httpx
import pytest

from tests.inprocess import InProcessRegistry
from tests.oci import OCI_MANIFEST, image_manifest, push_blob, push_image

pytestmark = pytest.mark.timeout(120)
USERS = {"root": "root-Pw-1", "dev": "dev-Pw-2"}
SOURCE = "org.opencontainers.image.source"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    htpasswd = tmp_path_factory.mktemp("auth") / "htpasswd"
    htpasswd.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                                for u, p in USERS.items()))
    config = {
        "http": {"auth": {"htpasswd": {"path": str(htpasswd)}},
                 "accessControl": {"repositories": {"**": {"defaultPolicy": ["read", "create", "update", "delete"]}},
                                   "adminPolicy": {"users": ["root"], "actions": ["read", "create", "update", "delete"]}}},
        "storage": {"immutableTags": {"policies": [{"repositories": ["prod/**"], "patterns": ["v[0-9]+(\\.[0-9]+)*"]}]}},
        "extensions": {"lint": {"enable": True, "mandatoryAnnotations": [SOURCE, "org.example.team"]}},
    }
    with InProcessRegistry(config=config) as r:
        yield r


def _client(registry: InProcessRegistry, user: str) -> httpx.Client:
    return registry.client(auth=(user, USERS[user]))


def _push(client: httpx.Client, repo: str, tag: str, annotations: dict[str, str] | None = None,
          labels: dict[str, str] | None = None) -> httpx.Response:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {"Labels": labels or {}}, "n": str(id(object()))}).encode()
    layer = json.dumps({"n": tag, "a": annotations}).encode()
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    extra = {"annotations": annotations} if annotations else {}
    body = image_manifest(config, [layer], **extra)
    return client.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})


ANNOTATED = {SOURCE: "https://git.example/x", "org.example.team": "core"}


def test_lint_refuses_missing_annotations_naming_them(registry: InProcessRegistry) -> None:
    with _client(registry, "dev") as c:
        r = _push(c, "lint/app", "v1", {SOURCE: "https://git.example/x"})
        assert r.status_code == 400, r.text
        error = r.json()["errors"][0]
        assert error["code"] == "MANIFEST_INVALID"
        assert "org.example.team" in error["message"] and SOURCE not in error["message"]
        assert c.get("/v2/lint/app/manifests/v1").status_code == 404
        assert _push(c, "lint/app", "v1", ANNOTATED).status_code == 201
        # as zot: the config's labels count too
        assert _push(c, "lint/app", "v2", {SOURCE: "x"}, labels={"org.example.team": "core"}).status_code == 201


def test_immutable_tag_cannot_be_overwritten_or_deleted_by_non_admins(registry: InProcessRegistry) -> None:
    with _client(registry, "dev") as dev, _client(registry, "root") as root:
        assert _push(dev, "prod/api", "v1.2", ANNOTATED).status_code == 201
        first = dev.head("/v2/prod/api/manifests/v1.2").headers["Docker-Content-Digest"]
        r = _push(dev, "prod/api", "v1.2", {**ANNOTATED, "n": "2"})
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
        assert "immutable" in r.json()["errors"][0]["message"]
        assert dev.head("/v2/prod/api/manifests/v1.2").headers["Docker-Content-Digest"] == first
        r = dev.delete("/v2/prod/api/manifests/v1.2")
        assert r.status_code == 403 and "immutable" in r.json()["errors"][0]["message"]
        r = dev.delete(f"/v2/prod/api/manifests/{first}")
        assert r.status_code == 403, "deleting the manifest would delete the immutable tag"
        # a tag that does not match moves freely; the same tag in another repository too
        assert _push(dev, "prod/api", "latest", ANNOTATED).status_code == 201
        assert _push(dev, "prod/api", "latest", {**ANNOTATED, "n": "3"}).status_code == 201
        assert _push(dev, "staging/api", "v1.2", ANNOTATED).status_code == 201
        assert _push(dev, "staging/api", "v1.2", {**ANNOTATED, "n": "4"}).status_code == 201
        # admins may
        assert _push(root, "prod/api", "v1.2", {**ANNOTATED, "n": "5"}).status_code == 201
        assert root.head("/v2/prod/api/manifests/v1.2").headers["Docker-Content-Digest"] != first
        assert root.delete("/v2/prod/api/manifests/v1.2").status_code == 202
        assert dev.get("/v2/prod/api/manifests/v1.2").status_code == 404


def test_repushing_the_same_manifest_to_an_immutable_tag_is_allowed(registry: InProcessRegistry) -> None:
    with _client(registry, "dev") as dev:
        d, body = push_image(dev, "prod/same", "v9", annotations=ANNOTATED)
        r = dev.put("/v2/prod/same/manifests/v9", content=body, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201


def test_config_errors_name_the_key() -> None:
    from common.config import ConfigError, parse_config
    with pytest.raises(ConfigError, match=r"storage.immutableTags.policies\[0\].patterns\[0\]"):
        parse_config({"storage": {"immutableTags": {"policies": [{"patterns": ["("]}]}}})
    with pytest.raises(ConfigError, match=r"extensions.events.sinks\[0\].type"):
        parse_config({"extensions": {"events": {"sinks": [{"type": "kafka", "address": "x"}]}}})
    with pytest.raises(ConfigError, match=r"storage.retention.policies\[0\].repositories"):
        parse_config({"storage": {"retention": {"policies": [{"deleteUntagged": True}]}}})


def test_lint_reads_no_labels_from_a_config_too_deep_to_walk(registry: InProcessRegistry) -> None:
    """The config blob is the client's: nested 5,000 deep it has no labels to read (a 400 naming the
    missing annotations), not a RecursionError in the shard."""
    deep = b"[" * 5000 + b"]" * 5000
    layer = b"lint deep config layer"
    with _client(registry, "dev") as c:
        push_blob(c, "lint/deep", deep)
        push_blob(c, "lint/deep", layer)
        r = c.put("/v2/lint/deep/manifests/v1", content=image_manifest(deep, [layer]),
                  headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["code"] == "MANIFEST_INVALID"
        assert SOURCE in r.json()["errors"][0]["message"]
