"""A push that only adds a tag updates the repository's listing entry from the pushed image alone,
and counting pulls does not walk the repository's tags each time (issue 17: costs flat in the number
of tags). Changes that need every tag (a tag moved to another image, a deletion, a new platform)
rewrite the entry in the background, and a listing waits for that rewrite."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.extensions.conftest import gql
from tests.extensions.fixtures import FULL_EXTENSIONS, push_image, put_manifest
from tests.inprocess import InProcessRegistry

pytestmark = pytest.mark.inprocess

REPO = "big/app"
TAGS = 150


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    with InProcessRegistry(shards=2, config={"extensions": FULL_EXTENSIONS}) as registry:
        yield registry


class TagWalks:
    """Counts the tags the owning shard's store yields while it is installed (instrumentation only:
    the real method answers)."""

    def __init__(self, search: Any) -> None:
        self.meta, self.real, self.count = search.meta, search.meta.tags, 0

    def __enter__(self) -> TagWalks:
        def counted(*args: Any, **kwargs: Any) -> Iterator[tuple[str, str]]:
            for pair in self.real(*args, **kwargs):
                self.count += 1
                yield pair

        self.meta.tags = counted
        return self

    def __exit__(self, *exc: object) -> None:
        del self.meta.tags


def owner(reg: InProcessRegistry) -> Any:
    return next(s.search for s in reg.shards if s.search.meta.read(lambda txn, s=s: s.search.meta.repo_exists(txn, REPO)))


def entry_is_fresh(reg: InProcessRegistry, search: Any) -> dict:
    """The kept entry equals the one computed from every tag now (after any pending rewrite)."""
    reg.settle()
    reg.run(search.settled())

    def both(txn: Any) -> tuple[Any, Any]:
        with search.store.begin_read() as stxn:
            return search.store.index_get(stxn, REPO), search.index_record(txn, stxn, REPO)

    kept, fresh = search.meta.read(both)
    assert kept == fresh
    return kept


def listed(reg: InProcessRegistry) -> dict:
    with reg.client(timeout=30) as c:
        out = gql(c, '{ GlobalSearch(query: "big/app") { Repos { Name LastUpdated DownloadCount } } }')
    return next(r for r in out["data"]["GlobalSearch"]["Repos"] if r["Name"] == REPO)


def test_adding_tags_does_not_walk_the_repository(reg: InProcessRegistry) -> None:
    with reg.client(timeout=30) as c:
        _, body = push_image(c, REPO, "t-000", created="2024-01-01T00:00:00Z")
        for i in range(1, TAGS):
            put_manifest(c, REPO, f"t-{i:03d}", body)
        search = owner(reg)
        assert entry_is_fresh(reg, search)["n"] == TAGS
        with TagWalks(search) as walks:  # a new image, newer, same platform, under a new tag
            push_image(c, REPO, "new", created="2024-06-01T00:00:00Z")
            put_manifest(c, REPO, "t-again", body)  # another new tag of a known image
            reg.run(search.settled())
        assert walks.count == 0
        kept = entry_is_fresh(reg, search)
        assert kept["n"] == TAGS + 2 and kept["l"] == "2024-06-01T00:00:00Z"
        assert listed(reg)["LastUpdated"] == "2024-06-01T00:00:00Z"


def test_pulls_walk_the_tags_once_per_image_not_per_flush(reg: InProcessRegistry) -> None:
    search = owner(reg)
    with reg.client(timeout=30) as c, TagWalks(search) as walks:
        for _ in range(3):
            for _ in range(2):
                assert c.get(f"/v2/{REPO}/manifests/t-001").status_code == 200
            reg.settle()  # the gateway tells the shard of each GET after answering it
            search.flush()  # on the test's thread: the registry's loop is idle between requests
        assert walks.count <= TAGS + 2  # one walk for the image, kept for the next flushes
    kept = entry_is_fresh(reg, search)
    assert kept["d"] == 6 * (TAGS + 1)  # the image is under TAGS + 1 tags: each pull counts once per tag
    assert listed(reg)["DownloadCount"] == kept["d"]


def test_moving_or_deleting_a_tag_rewrites_the_entry_before_the_next_listing(reg: InProcessRegistry) -> None:
    search = owner(reg)
    with reg.client(timeout=30) as c:
        old = c.get(f"/v2/{REPO}/manifests/t-000", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        put_manifest(c, REPO, "new", old.content)  # the newest image loses its only tag
        assert listed(reg)["LastUpdated"] == "2024-01-01T00:00:00Z"
        entry_is_fresh(reg, search)
        assert c.delete(f"/v2/{REPO}/manifests/t-again").status_code == 202
        before = listed(reg)["DownloadCount"]
        assert before == entry_is_fresh(reg, search)["d"]
        push_image(c, REPO, "arm", arch="arm64", created="2024-07-01T00:00:00Z")  # a new platform
        with reg.client(timeout=30) as c2:
            out = gql(c2, '{ GlobalSearch(query: "big/app", filter: {Arch: ["arm64"]}) { Repos { Name } } }')
        assert [r["Name"] for r in out["data"]["GlobalSearch"]["Repos"]] == [REPO]
        entry_is_fresh(reg, search)


def test_a_failed_rewrite_never_fails_a_listing_and_leaves_the_store_to_be_rebuilt(reg: InProcessRegistry) -> None:
    search = owner(reg)

    def broken(stxn: Any, repo: str) -> bool:
        raise KeyError(repo)

    search.reindex = broken  # instrumentation: a bug in the rewrite
    try:
        with reg.client(timeout=30) as c:
            assert c.delete(f"/v2/{REPO}/manifests/t-010").status_code == 202
            reg.run(search.settled())
            assert listed(reg)["Name"] == REPO  # the listing answers
    finally:
        del search.reindex
    assert search._rewrite_failed
    search.close_index()
    assert search.store.read(lambda stxn: search.store.index_flag(stxn, "open"))  # a rebuild at the next start
    search._rewrite_failed = False
    reg.run(_rewrite(search))  # the next rewrite works again
    entry_is_fresh(reg, search)
    search.store.write(lambda stxn: search.store.set_index_flag(stxn, "open", True))


async def _rewrite(search: Any) -> None:
    search.mark_dirty(REPO)
    await search.settled()
