"""A sorted page of repositories (issue 17): shards answer each repository's sort fields, the
gateway sorts and pages those and asks for the full summaries of the page only; the answers are
those of sorting the full summaries."""

from __future__ import annotations

from typing import Any

import pytest

from tests.extensions.conftest import gql

KEYS = "Name LastUpdated DownloadCount StarCount IsStarred IsBookmarked Platforms { Os Arch }"
SORTS = ("UPDATE_TIME", "DOWNLOADS", "STARS", "ALPHABETIC_ASC", "ALPHABETIC_DSC", "RELEVANCE")


def _list(client: Any, fields: str, page: str = "") -> dict:
    arg = f"(requestedPage: {{{page}}})" if page else ""
    out = gql(client, f"{{ RepoListWithNewestImage{arg} {{ Page {{ TotalCount ItemCount }} Results {{ {fields} }} }} }}")
    assert "errors" not in out, out
    return out["data"]["RepoListWithNewestImage"]


def test_keys_are_the_fields_of_the_full_summaries(ext_client, pushed):
    # pull one image so that download counts differ
    assert ext_client.get("/v2/library/alpine/manifests/3.19").status_code == 200
    slim = _list(ext_client, KEYS)["Results"]  # answered from the keys alone
    full = _list(ext_client, KEYS + " Size NewestImage { Tag }")["Results"]  # full summaries
    assert len(slim) >= 6
    assert slim == [{k: r[k] for k in slim[0]} for r in full]
    assert {r["Name"] for r in slim} >= {"library/alpine", "apps/web", "multi/arch"}
    multi = next(r for r in slim if r["Name"] == "multi/arch")
    assert {p["Arch"] for p in multi["Platforms"]} == {"amd64", "arm64"}
    assert next(r for r in slim if r["Name"] == "library/alpine")["DownloadCount"] >= 1


@pytest.mark.parametrize("sort", SORTS)
def test_pages_join_into_the_whole_sorted_list(ext_client, pushed, sort):
    whole = _list(ext_client, KEYS + " Size", f"sortBy: {sort}")
    names = [r["Name"] for r in whole["Results"]]
    joined: list[str] = []
    for offset in range(0, len(names) + 2, 2):
        page = _list(ext_client, "Name Size NewestImage { Tag }", f"sortBy: {sort}, limit: 2, offset: {offset}")
        assert page["Page"]["TotalCount"] == len(names)
        assert page["Page"]["ItemCount"] == len(page["Results"]) <= 2
        assert all(r["NewestImage"]["Tag"] and r["Size"] for r in page["Results"])
        joined += [r["Name"] for r in page["Results"]]
    assert joined == names
    rows = whole["Results"]
    if sort == "ALPHABETIC_ASC":
        assert names == sorted(names)
    if sort == "ALPHABETIC_DSC":
        assert names == sorted(names, reverse=True)
    if sort == "DOWNLOADS":
        assert [(-r["DownloadCount"], r["Name"]) for r in rows] == sorted((-r["DownloadCount"], r["Name"]) for r in rows)
    if sort == "STARS":
        assert [(-r["StarCount"], r["Name"]) for r in rows] == sorted((-r["StarCount"], r["Name"]) for r in rows)


def test_a_page_asks_for_the_full_summaries_of_the_page_only(ext_client, ext_registry, pushed):
    client = ext_registry.app.state.client  # type: ignore[attr-defined]
    original = client.call
    asked: list[dict] = []

    async def call(shard: int, request: Any, *args: Any, **kwargs: Any) -> Any:
        if request.wire.op.value == "search.repos":
            asked.append(dict(request.args))
        return await original(shard, request, *args, **kwargs)

    client.call = call
    try:
        page = _list(ext_client, "Name Size Vendors", "sortBy: UPDATE_TIME, limit: 2, offset: 1")
    finally:
        del client.call
    assert page["Page"]["ItemCount"] == 2
    assert asked and all("repos" in a for a in asked)  # never every repository's full summary
    assert {name for a in asked for name in a["repos"]} == {r["Name"] for r in page["Results"]}


def test_global_search_pages_with_a_filter(ext_client, pushed):
    query = ('{ GlobalSearch(query: "a", filter: {Arch: ["arm64"]}, requestedPage: {limit: 5, sortBy: RELEVANCE}) '
             '{ Page { TotalCount ItemCount } Repos { Name Size Platforms { Arch } NewestImage { Tag } } } }')
    out = gql(ext_client, query)
    assert "errors" not in out, out
    repos = out["data"]["GlobalSearch"]["Repos"]
    assert [r["Name"] for r in repos] == ["multi/arch"]
    assert out["data"]["GlobalSearch"]["Page"] == {"TotalCount": 1, "ItemCount": 1}
    assert repos[0]["NewestImage"]["Tag"] == "v2"


def test_the_index_is_built_after_start_in_the_background(ext_registry, ext_client, pushed):
    """A store without the index (or not closed cleanly) gets it built once after start, in
    batches, without start-up waiting for it; what it builds is what each repository's keys are."""
    for shard in ext_registry.shards:
        search = shard.search
        ext_registry.run(search.settled())  # rewrites earlier deletions asked for are done
        names = search.meta.read(lambda txn, search=search: [n for n in search.meta.repo_names(txn)])
        kept = {name: search.store.read(lambda stxn, name=name, search=search: search.store.index_get(stxn, name))
                for name in names}
        search.store.write(lambda stxn, search=search: search.store.set_index_flag(stxn, "open", True))  # unclean
        ext_registry.run(search.warm(batch=2))
        assert search.store.read(search.index_complete)
        rebuilt = {name: search.store.read(lambda stxn, name=name, search=search: search.store.index_get(stxn, name))
                   for name in names}
        assert rebuilt == kept
        for name in names:
            fresh = search.meta.read(lambda txn, search=search, name=name: _keys_now(search, txn, name))
            assert rebuilt[name] == fresh
        count = search.store.read(search.store.index_count)
        assert count == sum(1 for rec in rebuilt.values() if rec is not None)
    assert sum(shard.search.store.read(shard.search.store.index_count) for shard in ext_registry.shards) >= 6


def _keys_now(search: Any, txn: Any, name: str) -> dict | None:
    with search.store.begin_read() as stxn:
        found: dict | None = search.index_record(txn, stxn, name)
        return found
