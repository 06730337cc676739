"""Manifests, tags, referrers and listings, as the OCI conformance suites check them."""

from __future__ import annotations

import json
import os

import pytest

from tests.oci import (
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    descriptor,
    digest,
    image_manifest,
    push_blob,
    push_image,
)

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"

pytestmark = pytest.mark.inprocess  # handler behaviour: the in-process registry serves it (tests/inprocess.py)


def put_manifest(client, repo, ref, body, media_type=OCI_MANIFEST, **kw):
    return client.put(f"/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type}, **kw)


def test_manifest_by_tag_and_digest(client):
    d, body = push_image(client, "man/basic", "v1")
    for ref in ("v1", d):
        r = client.get(f"/v2/man/basic/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200
        assert r.content == body
        assert r.headers["Content-Type"] == OCI_MANIFEST
        assert r.headers["Docker-Content-Digest"] == d
        assert r.headers["Content-Length"] == str(len(body))
        h = client.head(f"/v2/man/basic/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        assert h.status_code == 200 and h.content == b""
        assert h.headers["Content-Length"] == str(len(body))
        assert h.headers["Docker-Content-Digest"] == d


def test_put_answers_location_and_digest(client):
    config, layer = b'{"a":1}', os.urandom(50)
    push_blob(client, "man/put", config)
    push_blob(client, "man/put", layer)
    body = image_manifest(config, [layer])
    r = put_manifest(client, "man/put", "t1", body)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/man/put/manifests/{digest(body)}"
    assert r.headers["Docker-Content-Digest"] == digest(body)
    # pushing by digest
    r = put_manifest(client, "man/put", digest(body), body)
    assert r.status_code == 201


def test_missing_manifest_is_404(client):
    push_image(client, "man/missing", "exists")
    for ref in (".INVALID_MANIFEST_NAME", "nope", digest(b"nope")):
        r = client.get(f"/v2/man/missing/manifests/{ref}")
        assert r.status_code in (404, 400) if ref.startswith(".") else r.status_code == 404
        assert r.json()["errors"][0]["code"] in ("MANIFEST_UNKNOWN", "TAG_INVALID", "NAME_UNKNOWN")
        assert client.head(f"/v2/man/missing/manifests/{ref}").status_code in (400, 404)
    r = client.get("/v2/man/never-pushed/manifests/latest")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_manifest_referencing_missing_blob_is_manifest_blob_unknown(client):
    config = b'{"b":2}'
    push_blob(client, "man/refs", config)
    body = image_manifest(config, [b"never pushed layer"])
    r = put_manifest(client, "man/refs", "bad", body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    body = image_manifest(b"missing config", [])
    r = put_manifest(client, "man/refs", "bad", body)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    # a blob in ANOTHER repository does not count
    other = os.urandom(30)
    push_blob(client, "man/refs-other", other)
    r = put_manifest(client, "man/refs", "bad", image_manifest(config, [other]))
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert client.get("/v2/man/refs/manifests/bad").status_code == 404


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"schemaVersion": 2}', b'{"schemaVersion":1,"config":{}}',
                                  json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                              "config": {"mediaType": OCI_CONFIG, "digest": "sha256:zz", "size": 1},
                                              "layers": []}).encode(),
                                  json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                              "config": {"mediaType": OCI_CONFIG, "digest": digest(b"x"),
                                                         "size": -1}, "layers": []}).encode()])
def test_invalid_manifests_are_400(client, body):
    r = put_manifest(client, "man/invalid", "t", body)
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] in ("MANIFEST_INVALID", "DIGEST_INVALID")


def test_wrong_digest_reference_is_400(client):
    d, body = push_image(client, "man/digest", "ok")
    r = put_manifest(client, "man/digest", "sha256:totallywrong", body)
    assert r.status_code == 400 and r.json()["errors"]
    r = put_manifest(client, "man/digest", digest(b"other"), body)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert client.get(f"/v2/man/digest/manifests/{digest(b'other')}").status_code == 404


def test_content_type_mismatch_and_unknown_type(client):
    d, body = push_image(client, "man/ctype", "ok")
    r = put_manifest(client, "man/ctype", "x", body, media_type=OCI_INDEX)
    assert r.status_code == 400
    r = put_manifest(client, "man/ctype", "x", json.dumps({"schemaVersion": 2, "mediaType": "text/plain"}).encode(),
                     media_type="text/plain")
    assert r.status_code == 415


def test_manifest_size_limit(client):
    config = b"{}"
    push_blob(client, "man/large", config)
    # close to 4 MiB: accepted (the new suite pushes ~3.9 MB)
    annotations = {f"key{i}": "v" * 10_000 for i in range(390)}
    body = image_manifest(config, [], annotations=annotations)
    assert len(body) < 4 * 1024 * 1024
    r = put_manifest(client, "man/large", "big", body)
    assert r.status_code == 201, r.text
    assert client.get("/v2/man/large/manifests/big").content == body
    too_big = image_manifest(config, [], annotations={"k": "v" * (4 * 1024 * 1024)})
    r = put_manifest(client, "man/large", "toobig", too_big)
    assert r.status_code == 413
    assert r.json()["errors"]


def test_manifest_with_no_layers_and_nondistributable_layers(client):
    config = b'{"c":3}'
    push_blob(client, "man/special", config)
    assert put_manifest(client, "man/special", "nolayers", image_manifest(config, [])).status_code == 201
    foreign = {"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
               "digest": digest(b"foreign"), "size": 7, "urls": ["https://example.com/layer"]}
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(config, OCI_CONFIG),
                       "layers": [foreign]}).encode()
    assert put_manifest(client, "man/special", "foreign", body).status_code == 201


def test_image_index_and_docker_types(client):
    d1, _ = push_image(client, "man/index", None)
    d2, _ = push_image(client, "man/index", None)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": d1, "size": 100, "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": d2, "size": 100, "platform": {"os": "linux", "architecture": "arm64"}},
    ]}).encode()
    r = put_manifest(client, "man/index", "multi", index, media_type=OCI_INDEX)
    assert r.status_code == 201
    r = client.get("/v2/man/index/manifests/multi", headers={"Accept": f"{OCI_INDEX}, {OCI_MANIFEST}"})
    assert r.headers["Content-Type"] == OCI_INDEX and r.content == index
    # an index naming a manifest the repository does not have
    bad = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digest(b"none"), "size": 4}]}).encode()
    r = put_manifest(client, "man/index", "bad", bad, media_type=OCI_INDEX)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"
    # nested and empty indexes
    nested = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": digest(index), "size": len(index)}]}).encode()
    assert put_manifest(client, "man/index", "nested", nested, media_type=OCI_INDEX).status_code == 201
    empty = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    assert put_manifest(client, "man/index", "empty", empty, media_type=OCI_INDEX).status_code == 201
    # Docker schema 2 manifest and manifest list
    config, layer = b'{"docker":true}', os.urandom(64)
    push_blob(client, "man/index", config)
    push_blob(client, "man/index", layer)
    docker = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                         "config": descriptor(config, "application/vnd.docker.container.image.v1+json"),
                         "layers": [descriptor(layer, "application/vnd.docker.image.rootfs.diff.tar.gzip")]}).encode()
    assert put_manifest(client, "man/index", "docker", docker, media_type=DOCKER_MANIFEST).status_code == 201
    dlist = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": digest(docker), "size": len(docker),
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    assert put_manifest(client, "man/index", "dlist", dlist, media_type=DOCKER_LIST).status_code == 201
    r = client.get("/v2/man/index/manifests/dlist", headers={"Accept": f"{DOCKER_LIST}, {DOCKER_MANIFEST}"})
    assert r.headers["Content-Type"] == DOCKER_LIST
    # a client that accepts only single-image types does not get an index it cannot read
    r = client.get("/v2/man/index/manifests/multi", headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 404


def test_tag_parameter_on_digest_push(client):
    config = b'{"tagparam":1}'
    push_blob(client, "man/tagparam", config)
    body = image_manifest(config, [])
    r = client.put(f"/v2/man/tagparam/manifests/{digest(body)}?tag=a&tag=b&tag=c", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    assert r.headers.get_list("OCI-Tag") == ["a", "b", "c"]
    tags = client.get("/v2/man/tagparam/tags/list").json()["tags"]
    assert tags == ["a", "b", "c"]
    r = client.put(f"/v2/man/tagparam/manifests/{digest(body)}?tag=in%20valid", content=body,
                   headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400


def test_tags_list_pagination(client):
    config = b'{"tags":1}'
    push_blob(client, "man/tags", config)
    body = image_manifest(config, [])
    names = sorted([f"t{i:02d}" for i in range(12)] + ["A", "Z", "_x"])
    for name in names:
        assert put_manifest(client, "man/tags", name, body).status_code == 201
    r = client.get("/v2/man/tags/tags/list")
    assert r.json() == {"name": "man/tags", "tags": names}
    assert "Link" not in r.headers
    r = client.get("/v2/man/tags/tags/list", params={"n": 5})
    assert r.json()["tags"] == names[:5]
    assert r.headers["Link"] == f'</v2/man/tags/tags/list?n=5&last={names[4]}>; rel="next"'
    collected, url = [], "/v2/man/tags/tags/list?n=4"
    while url:
        r = client.get(url)
        collected += r.json()["tags"]
        url = r.headers.get("Link", "").split(";")[0].strip("<>") or None
    assert collected == names
    r = client.get("/v2/man/tags/tags/list", params={"n": 3, "last": names[5]})
    assert r.json()["tags"] == names[6:9]
    r = client.get("/v2/man/tags/tags/list", params={"n": 0})
    assert r.json()["tags"] == [] and "Link" not in r.headers
    assert client.get("/v2/man/tags/tags/list", params={"n": "x"}).status_code == 400
    assert client.get("/v2/man/tags/tags/list", params={"n": "-1"}).status_code == 400
    r = client.get("/v2/man/never/tags/list")
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_delete_tag_and_manifest(client):
    d, _ = push_image(client, "man/delete", "keep")
    r = put_manifest(client, "man/delete", "other", client.get(f"/v2/man/delete/manifests/{d}").content)
    assert r.status_code == 201
    assert client.delete("/v2/man/delete/manifests/other").status_code == 202
    assert client.get("/v2/man/delete/manifests/other").status_code == 404
    assert client.get("/v2/man/delete/manifests/keep").status_code == 200
    assert client.delete(f"/v2/man/delete/manifests/{d}").status_code == 202
    assert client.head(f"/v2/man/delete/manifests/{d}").status_code == 404
    assert client.get("/v2/man/delete/manifests/keep").status_code == 404
    assert client.get("/v2/man/delete/tags/list").json()["tags"] == []
    assert client.delete(f"/v2/man/delete/manifests/{d}").status_code == 404
    assert client.delete("/v2/man/delete/manifests/nosuchtag").status_code == 404


def _artifact(client, repo, subject_digest, subject_size, artifact_type, annotation, *, with_config_type=False):
    blob = os.urandom(32)
    push_blob(client, repo, blob)
    push_blob(client, repo, EMPTY_JSON)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": descriptor(EMPTY_JSON, artifact_type if with_config_type else EMPTY_TYPE),
           "layers": [descriptor(blob, "application/octet-stream")],
           "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": subject_size},
           "annotations": {"org.example.note": annotation}}
    if with_config_type:
        pass
    else:
        doc["artifactType"] = artifact_type
    body = json.dumps(doc).encode()
    r = put_manifest(client, repo, digest(body), body)
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == subject_digest
    return digest(body), body


def test_referrers(client):
    repo = "man/referrers"
    # a referrer pushed before its subject exists is accepted
    subject_body = None
    config = b'{"subject":1}'
    push_blob(client, repo, config)
    subject_body = image_manifest(config, [])
    subject = digest(subject_body)
    a1, _ = _artifact(client, repo, subject, len(subject_body), "application/vnd.example.sbom", "one")
    assert put_manifest(client, repo, "subject", subject_body).status_code == 201
    a2, _ = _artifact(client, repo, subject, len(subject_body), "application/vnd.example.sig", "two")
    a3, _ = _artifact(client, repo, subject, len(subject_body), "application/vnd.example.sbom", "three",
                      with_config_type=True)
    r = client.get(f"/v2/{repo}/referrers/{subject}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    index = r.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert set(by_digest) == {a1, a2, a3}
    assert by_digest[a1]["artifactType"] == "application/vnd.example.sbom"
    assert by_digest[a3]["artifactType"] == "application/vnd.example.sbom"  # from config.mediaType
    assert by_digest[a2]["annotations"] == {"org.example.note": "two"}
    r = client.get(f"/v2/{repo}/referrers/{subject}", params={"artifactType": "application/vnd.example.sbom"})
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert {m["digest"] for m in r.json()["manifests"]} == {a1, a3}
    # no referrers: empty index, not 404
    r = client.get(f"/v2/{repo}/referrers/{digest(b'nothing')}")
    assert r.status_code == 200 and r.json()["manifests"] == []
    r = client.get(f"/v2/man/no-such-repo/referrers/{digest(b'nothing')}")
    assert r.status_code == 200 and r.json()["manifests"] == []
    assert client.get(f"/v2/{repo}/referrers/sha256:bad").status_code == 400
    # deleting a referrer removes it from the list
    assert client.delete(f"/v2/{repo}/manifests/{a2}").status_code == 202
    r = client.get(f"/v2/{repo}/referrers/{subject}")
    assert {m["digest"] for m in r.json()["manifests"]} == {a1, a3}


def test_sha512_manifest(client):
    d, body = push_image(client, "man/sha512", None, algorithm="sha512")
    assert d.startswith("sha512:")
    r = client.get(f"/v2/man/sha512/manifests/{d}")
    assert r.status_code == 200 and r.content == body
    assert r.headers["Docker-Content-Digest"] == d
    r = client.put(f"/v2/man/sha512/manifests/{d}?tag=t512", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201 and r.headers["OCI-Tag"] == "t512"


def test_catalog_merges_shards_with_pagination(client):
    names = sorted(f"catalog/r{i:02d}" for i in range(15))
    for name in names:
        push_blob(client, name, name.encode())
    everything = client.get("/v2/_catalog").json()["repositories"]
    assert everything == sorted(everything)
    assert set(names) <= set(everything)
    collected, url = [], "/v2/_catalog?n=4"
    while url:
        r = client.get(url)
        page = r.json()["repositories"]
        assert len(page) <= 4
        collected += page
        url = r.headers.get("Link", "").split(";")[0].strip("<>") or None
    assert collected == everything
    r = client.get("/v2/_catalog", params={"n": 3, "last": "catalog/r05"})
    assert r.json()["repositories"] == ["catalog/r06", "catalog/r07", "catalog/r08"]
    assert client.get("/v2/_catalog", params={"n": 0}).json()["repositories"] == []


def test_layer_media_type_is_not_checked_against_upload(client):
    # the descriptor's mediaType is the client's business; the registry checks presence and digest only
    config, layer = b'{"m":1}', os.urandom(10)
    push_blob(client, "man/anytype", config)
    push_blob(client, "man/anytype", layer)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descriptor(config, OCI_CONFIG),
           "layers": [descriptor(layer, OCI_LAYER), descriptor(layer, "application/x-custom")],
           "custom": {"field": [1, 2, 3]}}
    body = json.dumps(doc).encode()
    assert put_manifest(client, "man/anytype", "custom", body).status_code == 201
    assert client.get("/v2/man/anytype/manifests/custom").content == body


def test_accept_header_on_several_lines_and_invalid_references(client):
    d, body = push_image(client, "man/accept", "v1")
    r = client.get("/v2/man/accept/manifests/v1", headers=[("Accept", OCI_INDEX), ("Accept", OCI_MANIFEST)])
    assert r.status_code == 200 and r.content == body
    for ref in (".INVALID_MANIFEST_NAME", "sha256:baddigeststring"):
        assert client.head(f"/v2/man/accept/manifests/{ref}").status_code == 404
        r = client.get(f"/v2/man/accept/manifests/{ref}")
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
