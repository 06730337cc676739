"""The longest names and digests the grammar allows fit the shard's LMDB keys (issue 10, item 13).

A 255-character repository with sha512 subject and referrer digests made a referrer key of
527 bytes, over LMDB's 511: ``BadValsizeError``, a 500.
"""

from __future__ import annotations

import json

import pytest

from common.grammar import MAX_NAME_LENGTH
from shard.lmdbstore import HASHED, MAX_KEY, key
from shard.metastore import MetaStore
from shard.searchstore import SearchStore
from tests.oci import EMPTY_JSON, OCI_MANIFEST, descriptor, digest, push_blob, push_image

#: As long as the grammar allows (255), with path components.
LONG_REPO = "long/" + "/".join(["n" * 50] + ["n" * 49] * 4)
LONGEST_TAG = "t" * 128


def test_the_names_are_the_longest_the_grammar_allows():
    assert len(LONG_REPO) == MAX_NAME_LENGTH


@pytest.mark.inprocess
def test_sha512_referrers_in_the_longest_repository(client):
    subject, subject_body = push_image(client, LONG_REPO, LONGEST_TAG, algorithm="sha512")
    push_blob(client, LONG_REPO, EMPTY_JSON, "sha512")
    referrer = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sbom",
        "config": descriptor(EMPTY_JSON, "application/vnd.oci.empty.v1+json", "sha512"), "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_body)},
    }).encode()
    ref = digest(referrer, "sha512")
    r = client.put(f"/v2/{LONG_REPO}/manifests/{ref}", content=referrer, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    r = client.get(f"/v2/{LONG_REPO}/referrers/{subject}")
    assert r.status_code == 200, r.text
    assert [m["digest"] for m in r.json()["manifests"]] == [ref]
    assert r.json()["manifests"][0]["artifactType"] == "application/vnd.example.sbom"
    r = client.get(f"/v2/{LONG_REPO}/tags/list")
    assert r.status_code == 200 and r.json()["tags"] == [LONGEST_TAG]
    assert client.get(f"/v2/{LONG_REPO}/manifests/{ref}", headers={"Accept": OCI_MANIFEST}).content == referrer
    assert client.delete(f"/v2/{LONG_REPO}/manifests/{ref}").status_code == 202
    r = client.get(f"/v2/{LONG_REPO}/referrers/{subject}")
    assert r.status_code == 200 and r.json()["manifests"] == []


def test_keys_that_fit_are_unchanged_and_long_ones_keep_their_prefix(tmp_path):
    short = key("repo", "sha256:" + "a" * 64, "sha256:" + "b" * 64)
    assert short == b"repo\0sha256:" + b"a" * 64 + b"\0sha256:" + b"b" * 64  # what earlier versions stored
    subject, referrer = "sha512:" + "c" * 128, "sha512:" + "d" * 128
    long = key(LONG_REPO, subject, referrer)
    assert len(long) <= MAX_KEY
    assert long.startswith(key(LONG_REPO, subject, ""))
    assert long[len(key(LONG_REPO, subject, "")):].startswith(HASHED)
    assert key(LONG_REPO, subject, "sha512:" + "e" * 128) != long
    # data written with the old layout (short keys) reads back through the accessors
    meta = MetaStore(tmp_path / "meta", sync=False)
    assert meta.env.max_key_size() == MAX_KEY
    meta.write(lambda txn: meta.put(txn, "referrers", b"r\0s\0d", {"digest": "d"}))
    meta.write(lambda txn: meta.put_referrer(txn, LONG_REPO, subject, referrer, {"digest": referrer}))
    assert meta.read(lambda txn: list(meta.referrers(txn, "r", "s"))) == [{"digest": "d"}]
    assert meta.read(lambda txn: list(meta.referrers(txn, LONG_REPO, subject))) == [{"digest": referrer}]
    meta.write(lambda txn: meta.delete_referrer(txn, LONG_REPO, subject, referrer))
    assert meta.read(lambda txn: list(meta.referrers(txn, LONG_REPO, subject))) == []
    meta.close()


def test_a_long_user_name_can_star_the_longest_repository(tmp_path):
    store = SearchStore(tmp_path / "search", sync=False)
    user = "u" * 400  # user names come from htpasswd, LDAP or a token: no grammar bounds them
    assert store.write(lambda txn: store.toggle_mark(txn, "stars", LONG_REPO, user)) is True
    assert store.read(lambda txn: store.marked(txn, "stars", LONG_REPO, user))
    assert store.read(lambda txn: store.mark_count(txn, "stars", LONG_REPO)) == 1
    assert store.write(lambda txn: store.toggle_mark(txn, "stars", LONG_REPO, user)) is False
    store.close()
