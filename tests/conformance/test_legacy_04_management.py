"""Legacy ginkgo suite, 04 Content Management: 10 specs (tag, manifest and blob deletes)."""

from __future__ import annotations

import json

from tests.conformance import legacydata as d
from tests.conformance.legacyhelp import first_error_code, ok2xx, push_blob, status_in
from tests.conformance.ociapi import MT_IMAGE, describe

NAME = d.NAMESPACE
S = d.state


def test_setup_populate_config_blob(http):
    ok2xx(push_blob(http, NAME, d.configs[3].content, d.configs[3].digest))


def test_setup_populate_layer(http):
    ok2xx(push_blob(http, NAME, d.layer.content, d.layer.digest))


def test_setup_populate_tag(http):
    S["tag_to_delete"] = d.TAG_NAME
    r = http.put(f"/v2/{NAME}/manifests/{d.TAG_NAME}", content=d.manifests[3].content,
                 headers={"Content-Type": MT_IMAGE})
    ok2xx(r)


def test_setup_count_tags_before_deletes(http):
    r = http.get(f"/v2/{NAME}/tags/list")
    status_in(r, 200)
    S["mgmt_num_tags"] = len(json.loads(r.content).get("tags") or [])


def test_delete_manifest_tag_is_202_unless_disallowed(http):
    r = http.delete(f"/v2/{NAME}/manifests/{S.get('tag_to_delete', d.TAG_NAME)}")
    status_in(r, 202, 400, 405)
    if r.status_code == 400:
        assert first_error_code(r) == "UNSUPPORTED", describe(r)


def test_delete_manifest_by_digest_is_202_unless_already_deleted(http):
    status_in(http.delete(f"/v2/{NAME}/manifests/{d.manifests[3].digest}"), 202, 404)


def test_get_deleted_manifest_is_404_unless_delete_disallowed(http):
    status_in(http.get(f"/v2/{NAME}/manifests/{d.manifests[3].digest}"), 404, 200)


def test_tags_list_reflects_manifest_deletion(http):
    r = http.get(f"/v2/{NAME}/tags/list")
    status_in(r, 200, 404)
    expect = S["mgmt_num_tags"] - 1
    if r.status_code == 200:
        tags = json.loads(r.content).get("tags") or []
        assert len(tags) == expect, tags
    else:
        assert expect == 0


def test_delete_blob_is_202(http):
    status_in(http.delete(f"/v2/{NAME}/blobs/{d.configs[3].digest}"), 202, 404, 405)
    r = http.delete(f"/v2/{NAME}/blobs/{d.layer.digest}")
    status_in(r, 202, 404, 405)
    S["blob_delete_allowed"] = r.status_code != 405


def test_get_deleted_blob_is_404(http):
    # the Go suite checks this only when blob delete is allowed; shardreg allows it (allowDelete)
    assert S.get("blob_delete_allowed", True)
    status_in(http.get(f"/v2/{NAME}/blobs/{d.configs[3].digest}"), 404)
