"""Redesigned suite: ping, the empty-repository checks (run.go TestEmpty) and the manifest error
conditions (run.go TestManifestErrors)."""

from __future__ import annotations

import os
import secrets

from tests.conformance.ociapi import Api, Checks, digest_of
from tests.conformance.testdata import DataSet, Opts


def test_ping(http):
    k = Checks()
    k.status(http.get("/v2/"), 200, what="GET /v2/")
    k.done()


def test_empty_tag_list(http, repos):
    k = Checks()
    tags, r = Api(http, k).tag_list(repos[0])
    k.check(tags == [], f"tag list of an empty repository should be empty: {tags}")
    k.done()


def test_empty_referrers(http, repos):
    k = Checks()
    doc, _ = Api(http, k).referrers(repos[0], digest_of(secrets.token_bytes(16)))
    if doc is not None:
        k.check(doc["manifests"] == [], f"referrers of an unknown subject should be empty: {doc}")
    k.done()


def test_missing_manifest_by_digest(http, repos):
    k = Checks()
    dig = digest_of(os.urandom(1024))
    r = Api(http, k)._manifest_req("GET", repos[0], dig)
    k.status(r, 404, what="GET never-pushed manifest by digest")
    k.done()


def test_missing_manifest_by_tag(http, repos):
    k = Checks()
    tag = f"missing-{secrets.token_hex(10)}"
    r = Api(http, k)._manifest_req("GET", repos[0], tag)
    k.status(r, 404, what="GET never-pushed manifest by tag")
    k.done()


def test_invalid_digest_format(http, repos):
    k = Checks()
    api = Api(http, k)
    repo = repos[0]
    td = DataSet("invalid-manifest-digest")
    man = td.gen_manifest_full(Opts(layer_count=1))
    for dig, data in td.blobs.items():
        api.blob_post_put(repo, dig, data)
    api.manifest_put(repo, "sha256:baddigeststring", man, td.manifests[man], bad=True)
    r = api._manifest_req("GET", repo, "sha256:baddigeststring")
    k.status(r, 404, 400, what="GET manifest sha256:baddigeststring")
    # cleanup as the suite does (TestDelete): the manifest was never stored, the blobs were
    api.manifest_delete(repo, man)
    for dig in td.blobs:
        api.blob_delete(repo, dig)
    k.done()
