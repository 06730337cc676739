"""``ImageListForDigest``, ``DerivedImageList`` and ``BaseImageList`` look the digest up (issue 17):
each shard keeps which repositories' manifests name a digest, so these queries no longer summarise
every image of every shard. Every answer equals the one of the old way (the shard summarising all
its images: the index marked incomplete), for full digests, hex prefixes with and without the
algorithm, and after pushes, a deleted manifest, a moved tag, a resize's purge and import, and a
rebuild; and no shard walks its repositories to answer."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.extensions.conftest import gql
from tests.extensions.fixtures import FULL_EXTENSIONS, push_image
from tests.inprocess import InProcessRegistry

pytestmark = pytest.mark.inprocess

BASE = [os.urandom(64) for _ in range(2)]  # the base image's layers
MORE = os.urandom(64)
FIELDS = "{ Page { TotalCount ItemCount } Results { RepoName Tag Digest Manifests { Digest } } }"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def reg() -> Iterator[InProcessRegistry]:
    with InProcessRegistry(shards=2, config={"extensions": FULL_EXTENSIONS}) as registry:
        with registry.client(timeout=30) as c:
            push_image(c, "lib/base", "v1", layers=BASE)
            push_image(c, "lib/base-arm", "v1", arch="arm64", layers=BASE)
            for i in range(6):  # derived: the base's layers and one more
                push_image(c, f"app/derived-{i}", "v1", layers=[*BASE, os.urandom(32)])
            push_image(c, "app/shares-first-only", "v1", layers=[BASE[0], MORE])
            push_image(c, "lib/root", "v1", layers=BASE[:1])  # a base of lib/base
            for i in range(12):  # unrelated
                push_image(c, f"other/r-{i}", "v1", layers=[os.urandom(32)])
        yield registry


def queries() -> list[str]:
    layer = sha(BASE[0])
    hexpart = layer.split(":")[1]
    return [f'ImageListForDigest(id: "{layer}")', f'ImageListForDigest(id: "{hexpart[:12]}")',
            f'ImageListForDigest(id: "sha256:{hexpart[:9]}")', f'ImageListForDigest(id: "{sha(MORE)}")',
            'ImageListForDigest(id: "sha2")', 'ImageListForDigest(id: "ffffffffffff")',
            'DerivedImageList(image: "lib/base:v1")', 'BaseImageList(image: "lib/base:v1")',
            'DerivedImageList(image: "lib/root:v1")', 'BaseImageList(image: "app/derived-0:v1")']


def answers(reg: InProcessRegistry, walks: dict[str, int] | None = None) -> dict[str, Any]:
    out = {}
    with reg.client(timeout=30) as c:
        for q in queries():
            before = len(WALKED)
            data = gql(c, f"{{ {q} {FIELDS} }}")
            assert "errors" not in data, data
            out[q] = next(iter(data["data"].values()))
            if walks is not None:
                walks[q] = len(WALKED) - before
    return out


WALKED: list[int] = []


def the_old_way(reg: InProcessRegistry) -> dict[str, Any]:
    """The same queries with every shard's index marked incomplete (each shard summarises all its images)."""
    for shard in reg.shards:
        shard.search.store.write(lambda stxn, s=shard.search: s.store.set_index_flag(stxn, "complete", False))
    try:
        return answers(reg)
    finally:
        for shard in reg.shards:
            shard.search.store.write(lambda stxn, s=shard.search: s.store.set_index_flag(stxn, "complete", True))


def looked_up(reg: InProcessRegistry) -> dict[str, Any]:
    """The answers, checked to come without any shard walking its repositories."""
    for shard in reg.shards:
        names = shard.search.meta.repo_names

        def counting(txn: Any, *args: Any, names: Any = names) -> Any:
            WALKED.append(1)
            return names(txn, *args)

        shard.search.meta.repo_names = counting
    walks: dict[str, int] = {}
    try:
        got = answers(reg, walks)
    finally:
        for shard in reg.shards:
            del shard.search.meta.repo_names
    # "sha2" is not a hex prefix (it may start every digest's algorithm): the shards walk for it
    assert walks == {q: (len(reg.shards) if '"sha2"' in q else 0) for q in queries()}
    return got


def check(reg: InProcessRegistry) -> dict[str, Any]:
    got = looked_up(reg)
    assert got == the_old_way(reg)
    return got


def names(page: dict) -> set[str]:
    return {f"{r['RepoName']}:{r['Tag']}" for r in page["Results"]}


def test_lookups_equal_the_old_answers(reg):
    got = check(reg)
    q = queries()
    with_first = {"lib/base:v1", "lib/base-arm:v1", "app/shares-first-only:v1", "lib/root:v1",
                  *(f"app/derived-{i}:v1" for i in range(6))}
    assert names(got[q[0]]) == names(got[q[1]]) == names(got[q[2]]) == with_first
    assert names(got[q[3]]) == {"app/shares-first-only:v1"}
    assert got[q[4]]["Page"]["TotalCount"] == 22 and got[q[5]]["Results"] == []  # "sha2": every image
    assert names(got[q[6]]) == {*(f"app/derived-{i}:v1" for i in range(6))}
    assert names(got[q[7]]) == {"lib/root:v1"}
    assert names(got[q[8]]) >= {"lib/base:v1", "lib/base-arm:v1", "app/shares-first-only:v1"}
    assert names(got[q[9]]) == {"lib/base:v1", "lib/base-arm:v1", "lib/root:v1"}


def test_after_a_deleted_manifest_a_moved_tag_and_a_push(reg):
    with reg.client(timeout=30) as c:
        digest, _ = push_image(c, "app/derived-5", "v2", layers=[MORE])
        assert c.delete(f"/v2/app/derived-5/manifests/{sha_of_tag(c, 'app/derived-5', 'v1')}").status_code == 202
        push_image(c, "app/derived-4", "v1", layers=[os.urandom(16)])  # v1 moves to an unrelated image
        push_image(c, "other/r-0", "v9", layers=[*BASE, os.urandom(8)])  # a new derived image
    got = check(reg)
    derived = names(got['DerivedImageList(image: "lib/base:v1")'])
    assert "app/derived-5:v1" not in derived and "app/derived-4:v1" not in derived and "other/r-0:v9" in derived
    assert "app/derived-5:v2" in names(got[f'ImageListForDigest(id: "{sha(MORE)}")'])


def sha_of_tag(c: Any, repo: str, tag: str) -> str:
    r = c.head(f"/v2/{repo}/manifests/{tag}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200
    return r.headers["Docker-Content-Digest"]


def test_a_resize_purge_and_import_and_a_rebuild(reg):
    before = check(reg)
    owner = next(s.search for s in reg.shards
                 if s.search.meta.read(lambda txn, s=s: s.search.meta.repo_exists(txn, "lib/root")))
    reg.run(owner.settled())
    records = owner.store.read(lambda stxn: owner.store.repo_records(stxn, "lib/root"))
    reg.run(owner.purge_repo("lib/root"))
    assert owner.store.read(lambda stxn: owner.store.digest_manifests(stxn, "lib/root")) == []
    reg.run(owner.import_repo("lib/root", records))
    assert owner.store.read(lambda stxn: owner.store.digest_manifests(stxn, "lib/root")) != []
    assert check(reg) == before
    for shard in reg.shards:  # a store of before: an index without digests, no clean close recorded
        store = shard.search.store
        store.write(lambda stxn, store=store: [stxn.drop(store.db[db], delete=False) for db in ("digests", "mdigests")])
        assert not store.read(lambda stxn, store=store: list(store.scan(stxn, "mdigests", b"")))
        reg.run(shard.search.warm(batch=4))
        assert store.read(lambda stxn, store=store: list(store.scan(stxn, "mdigests", b"")))
    assert check(reg) == before
