"""Legacy ginkgo suite, 01 Pull: 24 specs (OCI_DELETE_MANIFEST_BEFORE_BLOBS=1, the default)."""

from __future__ import annotations

from tests.conformance import legacydata as d
from tests.conformance.legacyhelp import assert_error_body, ok2xx, push_blob, status_in
from tests.conformance.ociapi import MT_IMAGE, describe

NAME = d.NAMESPACE
ACCEPT = {"Accept": MT_IMAGE}


# ---------------------------------------------------------------- Setup
def test_setup_populate_test_blob_config0(http):
    ok2xx(push_blob(http, NAME, d.configs[0].content, d.configs[0].digest))


def test_setup_populate_test_blob_config1(http):
    ok2xx(push_blob(http, NAME, d.configs[1].content, d.configs[1].digest))


def test_setup_populate_test_layer(http):
    ok2xx(push_blob(http, NAME, d.layer.content, d.layer.digest))


def test_setup_populate_test_manifest_by_tag(http):
    d.state["pull_tag"] = d.TAG_NAME
    r = http.put(f"/v2/{NAME}/manifests/{d.TAG_NAME}", content=d.manifests[0].content,
                 headers={"Content-Type": MT_IMAGE})
    ok2xx(r)


def test_setup_populate_test_manifest_by_digest(http):
    r = http.put(f"/v2/{NAME}/manifests/{d.manifests[1].digest}", content=d.manifests[1].content,
                 headers={"Content-Type": MT_IMAGE})
    ok2xx(r)


def test_setup_get_tag_name_from_environment():
    # OCI_TAG_NAME is only read when setup is skipped; here setup ran and chose the tag
    assert d.state.get("pull_tag") == d.TAG_NAME


# ---------------------------------------------------------------- Pull blobs
def test_head_nonexistent_blob_is_404(http):
    status_in(http.head(f"/v2/{NAME}/blobs/{d.DUMMY_DIGEST}"), 404)


def test_head_existing_blob_is_200(http):
    r = http.head(f"/v2/{NAME}/blobs/{d.configs[0].digest}")
    status_in(r, 200)
    if h := r.headers.get("Docker-Content-Digest"):
        assert h == d.configs[0].digest


def test_get_nonexistent_blob_is_404(http):
    status_in(http.get(f"/v2/{NAME}/blobs/{d.DUMMY_DIGEST}"), 404)


def test_get_existing_blob_is_200(http):
    r = http.get(f"/v2/{NAME}/blobs/{d.configs[0].digest}")
    status_in(r, 200)
    assert r.content == d.configs[0].content


# ---------------------------------------------------------------- Pull manifests
def test_head_nonexistent_manifest_is_404(http):
    status_in(http.head(f"/v2/{NAME}/manifests/{d.NONEXISTENT_MANIFEST}"), 404)


def _head_manifest(http, ref: str, expect_digest: str) -> None:
    r = http.head(f"/v2/{NAME}/manifests/{ref}", headers=ACCEPT)
    status_in(r, 200)
    if h := r.headers.get("Docker-Content-Digest"):
        assert h == expect_digest, describe(r)


def test_head_manifest0_by_digest_is_200(http):
    _head_manifest(http, d.manifests[0].digest, d.manifests[0].digest)


def test_head_manifest1_by_digest_is_200(http):
    _head_manifest(http, d.manifests[1].digest, d.manifests[1].digest)


def test_head_manifest_by_tag_is_200(http):
    assert d.state.get("pull_tag")
    _head_manifest(http, d.state["pull_tag"], d.manifests[0].digest)


def test_get_nonexistent_manifest_is_404(http):
    status_in(http.get(f"/v2/{NAME}/manifests/{d.NONEXISTENT_MANIFEST}"), 404)


def test_get_manifest0_by_digest_is_200(http):
    status_in(http.get(f"/v2/{NAME}/manifests/{d.manifests[0].digest}", headers=ACCEPT), 200)


def test_get_manifest1_by_digest_is_200(http):
    status_in(http.get(f"/v2/{NAME}/manifests/{d.manifests[1].digest}", headers=ACCEPT), 200)


def test_get_manifest_by_tag_is_200(http):
    assert d.state.get("pull_tag")
    r = http.get(f"/v2/{NAME}/manifests/{d.state['pull_tag']}", headers=ACCEPT)
    status_in(r, 200)
    assert r.content == d.manifests[0].content


# ---------------------------------------------------------------- Error codes
def test_400_body_is_oci_error_json(http):
    r = http.request("GET", f"/v2/{NAME}/manifests/sha256:totallywrong", content=d.INVALID_MANIFEST,
                     headers={"Content-Type": MT_IMAGE})
    status_in(r, 400, 404)
    if r.status_code == 400:
        assert_error_body(r)


# ---------------------------------------------------------------- Teardown (manifests before blobs)
def test_teardown_delete_manifest0(http):
    status_in(http.delete(f"/v2/{NAME}/manifests/{d.manifests[0].digest}"), 405, any2xx=True)


def test_teardown_delete_manifest1(http):
    status_in(http.delete(f"/v2/{NAME}/manifests/{d.manifests[1].digest}"), 405, any2xx=True)


def test_teardown_delete_config0_blob(http):
    status_in(http.delete(f"/v2/{NAME}/blobs/{d.configs[0].digest}"), 404, 405, any2xx=True)


def test_teardown_delete_config1_blob(http):
    status_in(http.delete(f"/v2/{NAME}/blobs/{d.configs[1].digest}"), 404, 405, any2xx=True)


def test_teardown_delete_layer_blob(http):
    status_in(http.delete(f"/v2/{NAME}/blobs/{d.layer.digest}"), 404, 405, any2xx=True)
