"""Legacy ginkgo suite, 03 Content Discovery: 16 specs (tag listing, the 5-referrer setup)."""

from __future__ import annotations

import json

from tests.conformance import legacydata as d
from tests.conformance.legacyhelp import ok2xx, push_blob, status_in
from tests.conformance.ociapi import MT_IMAGE, MT_INDEX, describe

NAME = d.NAMESPACE
S = d.state
NUM_TAGS = 4


def _put(http, ref: str, blob: d.Blob, media_type: str = MT_IMAGE):
    return http.put(f"/v2/{NAME}/manifests/{ref}", content=blob.content, headers={"Content-Type": media_type})


def _tags(r) -> list[str]:
    try:
        return list(json.loads(r.content).get("tags") or [])
    except ValueError:
        return []


# ---------------------------------------------------------------- Setup
def test_setup_populate_test_blob(http):
    ok2xx(push_blob(http, NAME, d.configs[2].content, d.configs[2].digest))


def test_setup_populate_test_layer(http):
    ok2xx(push_blob(http, NAME, d.layer.content, d.layer.digest))


def test_setup_populate_test_tags(http):
    for i in range(NUM_TAGS):
        for tag in (f"test{i}", f"TEST{i}"):
            ok2xx(_put(http, tag, d.manifests[2]))
    S["tag_list"] = _tags(http.get(f"/v2/{NAME}/tags/list"))


def test_setup_populate_test_tags_no_push():
    # OCI_TAG_LIST form (setup skipped): here the pushed tags must have been listed instead
    assert {f"test{i}" for i in range(NUM_TAGS)} | {f"TEST{i}" for i in range(NUM_TAGS)} <= set(S["tag_list"])


def test_setup_references(http):
    assert d.EMPTY_JSON_DESC["digest"] == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    subject = d.manifests[4].digest
    ok2xx(push_blob(http, NAME, d.empty_json.content, d.empty_json.digest))
    ok2xx(push_blob(http, NAME, d.ref_blob_a.content, d.ref_blob_a.digest))
    # referrers pushed before their subject exists
    for blob, mt in ((d.refs_a_config, MT_IMAGE), (d.refs_a_layer, MT_IMAGE), (d.refs_index, MT_INDEX)):
        r = _put(http, blob.digest, blob, mt)
        ok2xx(r)
        assert r.headers.get("OCI-Subject") == subject, describe(r)
    ok2xx(push_blob(http, NAME, d.configs[4].content, d.configs[4].digest))
    ok2xx(push_blob(http, NAME, d.layer.content, d.layer.digest))
    ok2xx(_put(http, d.TAG_NAME, d.manifests[4]))
    ok2xx(push_blob(http, NAME, d.ref_blob_b.content, d.ref_blob_b.digest))
    for blob in (d.refs_b_config, d.refs_b_layer):
        r = _put(http, blob.digest, blob)
        ok2xx(r)
        assert r.headers.get("OCI-Subject") == subject, describe(r)
    r = _put(http, d.refs_c_layer.digest, d.refs_c_layer)
    ok2xx(r)
    assert r.headers.get("OCI-Subject") == d.manifests[3].digest, describe(r)


# ---------------------------------------------------------------- listing tags
def test_list_tags_is_200_and_sorted(http):
    r = http.get(f"/v2/{NAME}/tags/list")
    status_in(r, 200)
    tags = _tags(r)
    S["tag_list"], S["num_tags"] = tags, len(tags)
    assert tags in (sorted(tags, key=str.lower), sorted(tags)), tags


def test_list_tags_limited_by_n(http):
    n = S.get("num_tags", NUM_TAGS) // 2
    r = http.get(f"/v2/{NAME}/tags/list", params={"n": str(n)})
    status_in(r, 200)
    assert len(_tags(r)) == n, describe(r)


def test_list_tags_start_set_by_last(http):
    n = S.get("num_tags", NUM_TAGS) // 2
    r = http.get(f"/v2/{NAME}/tags/list", params={"n": str(n)})
    status_in(r, 200)
    last = _tags(r)[n - 1]
    r = http.get(f"/v2/{NAME}/tags/list", params={"n": str(n), "last": last})
    status_in(r, 200)
    tags = _tags(r)
    assert len(tags) <= n, tags
    assert last not in tags, tags


# ---------------------------------------------------------------- listing referrers
def _index(r) -> dict:
    status_in(r, 200)
    assert r.headers.get("Content-Type") == MT_INDEX, describe(r)
    return r.json()


def test_referrers_of_nonexistent_blob_is_empty_200(http):
    doc = _index(http.get(f"/v2/{NAME}/referrers/{d.DUMMY_DIGEST}"))
    assert len(doc.get("manifests") or []) == 0, doc


def _check_annotations(entries: list[dict]) -> None:
    for e in entries:
        annotations = e.get("annotations") or {}
        assert len(annotations) == 1, e
        assert annotations.get(d.ANNOTATION_KEY) == d.ANNOTATION_VALUES.get(e["digest"]), e


def test_referrers_of_existing_manifest(http):
    doc = _index(http.get(f"/v2/{NAME}/referrers/{d.manifests[4].digest}"))
    entries = doc.get("manifests") or []
    assert len(entries) == 5, entries
    assert entries[0]["digest"] != entries[1]["digest"]
    assert len({e["digest"] for e in entries}) == 5, entries  # stricter: all distinct
    _check_annotations(entries)


def test_referrers_with_artifact_type_filter(http):
    r = http.get(f"/v2/{NAME}/referrers/{d.manifests[4].digest}", params={"artifactType": d.ART_A})
    doc = _index(r)
    entries = doc.get("manifests") or []
    if r.headers.get("OCI-Filters-Applied"):
        assert r.headers["OCI-Filters-Applied"] == "artifactType", describe(r)
        assert len(entries) == 2, entries
    else:
        assert len(entries) == 5, entries
    _check_annotations(entries)


def test_referrers_of_missing_manifest(http):
    doc = _index(http.get(f"/v2/{NAME}/referrers/{d.manifests[3].digest}"))
    entries = doc.get("manifests") or []
    assert len(entries) == 1, entries
    assert entries[0]["digest"] == d.refs_c_layer.digest


# ---------------------------------------------------------------- Teardown (manifests before blobs)
def test_teardown_delete_manifests_and_tags(http):
    for blob in (d.refs_index, d.manifests[2], d.manifests[4], d.refs_a_config, d.refs_a_layer, d.refs_b_config,
                 d.refs_b_layer, d.refs_c_layer):
        status_in(http.delete(f"/v2/{NAME}/manifests/{blob.digest}"), 404, 405, any2xx=True)


def test_teardown_delete_config_blob(http):
    status_in(http.delete(f"/v2/{NAME}/blobs/{d.configs[2].digest}"), 404, 405, any2xx=True)


def test_teardown_delete_layer_blob(http):
    status_in(http.delete(f"/v2/{NAME}/blobs/{d.layer.digest}"), 404, 405, any2xx=True)


def test_teardown_references(http):
    for blob in (d.refs_index, d.refs_a_config, d.refs_a_layer, d.manifests[4], d.refs_b_config, d.refs_b_layer):
        status_in(http.delete(f"/v2/{NAME}/manifests/{blob.digest}"), 404, 405, any2xx=True)
    for blob in (d.configs[4], d.ref_blob_a, d.ref_blob_b, d.empty_json):
        status_in(http.delete(f"/v2/{NAME}/blobs/{blob.digest}"), 404, 405, any2xx=True)
