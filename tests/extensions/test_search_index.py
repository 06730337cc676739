"""Sorted listings answered from the shards' ordered indexes (issue 17): every page, for every
order, under partial access, with filters and a query, after pushes, pulls, stars, deletions,
retention and a resize's import and purge, is exactly the list an independent oracle computes
(every repository's keys computed afresh, the gateway's own access decision, the old sort)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from common.searchorder import platform_match, rank
from gateway.auth.identity import Identity
from gateway.extensions import search_merge
from shard import search_walk
from shard.lmdbstore import unpack
from tests.credentials import basic_header, write_htpasswd
from tests.extensions.conftest import gql
from tests.extensions.fixtures import FULL_EXTENSIONS, push_image, put_manifest
from tests.inprocess import InProcessRegistry

pytestmark = pytest.mark.inprocess

USERS = {"admin": "admin-pw-1", "alice": "alice-pw-2", "bob": "bob-pw-3"}
ACCESS = {
    "repositories": {
        "**": {"defaultPolicy": []},
        "team-a/**": {"policies": [{"users": ["alice"], "actions": ["read", "create"]}]},
        "public/**": {"defaultPolicy": ["read"], "anonymousPolicy": ["read"]},
        "old/**": {"defaultPolicy": ["read"]},
    },
    "adminPolicy": {"users": ["admin"], "actions": ["read", "create", "update", "delete"]},
}
RETENTION = {"delay": "0s", "policies": [{"repositories": ["old/**"], "keepTags": [{"patterns": ["^keep"]}]}]}
ORDERS = ("UPDATE_TIME", "DOWNLOADS", "STARS", "ALPHABETIC_ASC", "ALPHABETIC_DSC", "RELEVANCE")
FIELDS = "Name LastUpdated DownloadCount StarCount IsStarred IsBookmarked Platforms { Os Arch }"
CALLERS = ("admin", "alice", "bob")  # bob: only what every user reads (public/**)


def basic(user: str) -> dict[str, str]:
    return basic_header(user, USERS[user])


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    tmp = tmp_path_factory.mktemp("search-index")
    htpasswd = tmp / "htpasswd"
    write_htpasswd(htpasswd, USERS)
    config = {"http": {"auth": {"htpasswd": {"path": str(htpasswd)}}, "accessControl": ACCESS},
              "storage": {"retention": RETENTION}, "extensions": FULL_EXTENSIONS}
    with InProcessRegistry(shards=2, config=config) as registry:
        with registry.client(timeout=30, headers=basic("admin")) as admin:
            names = ([f"team-a/app-{i}" for i in range(7)] + [f"public/lib-{i}" for i in range(5)]
                     + [f"secret/s-{i}" for i in range(5)] + ["public/alib", "team-a/lib"])
            for i, name in enumerate(names):
                push_image(admin, name, "v1", arch="arm64" if i % 3 == 0 else "amd64", layers=[os.urandom(16)],
                           created=f"2024-01-0{1 + i % 4}T00:00:00Z")  # ties: the name decides
            for i, name in enumerate(names[:9]):
                for _ in range(i % 4):
                    assert admin.get(f"/v2/{name}/manifests/v1").status_code == 200
            for name in names[::3]:
                assert admin.put("/v2/_zot/ext/userprefs", params={"action": "toggleStar", "repo": name}).status_code == 200
        with registry.client(timeout=30, headers=basic("alice")) as alice:
            for name in ("team-a/app-1", "public/lib-2", "team-a/lib"):
                assert alice.put("/v2/_zot/ext/userprefs", params={"action": "toggleStar", "repo": name}).status_code == 200
            assert alice.put("/v2/_zot/ext/userprefs", params={"action": "toggleBookmark",
                                                              "repo": "team-a/app-2"}).status_code == 200
        yield registry


def client(reg: InProcessRegistry, user: str | None) -> httpx.Client:
    return reg.client(timeout=30, headers=basic(user) if user else {})


# -- the oracle: every repository's keys afresh, the gateway's access decision, the old sort --------
def oracle(reg: InProcessRegistry, user: str | None, order: str, text: str = "", flt: dict | None = None) -> list[dict]:
    reg.settle()  # the pulls the gateway told the shards are noted
    access = reg.app.state.access  # type: ignore[attr-defined]
    identity = Identity(name=user, groups=frozenset(), via="htpasswd" if user else "anonymous")
    rows = []
    for shard in reg.shards:
        search = shard.search

        def fresh(txn: Any, search: Any = search) -> list[dict]:
            out = []
            with search.store.begin_read() as stxn:
                for name in search.meta.repo_names(txn):
                    rec = search.index_record(txn, stxn, name)
                    if rec is None or not access.can_read(identity, name) or text.lower() not in name.lower():
                        continue
                    out.append({"Name": name, "LastUpdated": rec["l"], "DownloadCount": rec["d"],
                                "StarCount": rec["s"], "Platforms": rec["p"], "_updated": rec["u"],
                                "IsStarred": bool(user) and search.store.marked(stxn, "stars", name, user),
                                "IsBookmarked": bool(user) and search.store.marked(stxn, "bookmarks", name, user),
                                "Rank": rank(name, text)})
            return out

        rows += search.meta.read(fresh)
    flt = flt or {}
    rows = [r for r in rows if platform_match(r["Platforms"], flt.get("Arch"), "Arch")
            and all(flt.get(k) is None or r[k] == flt[k] for k in ("IsStarred", "IsBookmarked"))]
    alpha = sorted(rows, key=lambda r: r["Name"])
    by = {"UPDATE_TIME": lambda r: -r["_updated"], "DOWNLOADS": lambda r: -r["DownloadCount"],
          "STARS": lambda r: -r["StarCount"], "RELEVANCE": lambda r: r["Rank"]}
    if order == "ALPHABETIC_DSC":
        return list(reversed(alpha))
    return sorted(alpha, key=by[order]) if order in by else alpha


def _query(order: str, text: str | None, flt: str, page: str) -> tuple[str, str]:
    if text is None and not flt:
        return "RepoListWithNewestImage", (f"{{ RepoListWithNewestImage(requestedPage: {{sortBy: {order}{page}}}) "
                                           f"{{ Page {{ TotalCount ItemCount }} Results {{ {FIELDS} }} }} }}")
    filt = f", filter: {{{flt}}}" if flt else ""
    return "GlobalSearch", (f'{{ GlobalSearch(query: "{text or ""}"{filt}, requestedPage: {{sortBy: {order}{page}}}) '
                            f"{{ Page {{ TotalCount ItemCount }} Repos {{ {FIELDS} }} }} }}")


def pages(c: httpx.Client, order: str, text: str | None = None, flt: str = "", limit: int = 4) -> tuple[list[dict], int]:
    """Every page of ``limit`` joined, and the TotalCount each page said (all the same)."""
    joined: list[dict] = []
    totals = set()
    offset = 0
    while True:
        field, query = _query(order, text, flt, f", limit: {limit}, offset: {offset}")
        out = gql(c, query)
        assert "errors" not in out, out
        data = out["data"][field]
        results = data["Results" if field == "RepoListWithNewestImage" else "Repos"]
        assert data["Page"]["ItemCount"] == len(results) <= limit
        totals.add(data["Page"]["TotalCount"])
        joined += results
        if len(results) < limit:
            break
        offset += limit
    assert len(totals) == 1, totals
    return joined, totals.pop()


def _same(got: list[dict], expected: list[dict]) -> None:
    keys = ("Name", "LastUpdated", "DownloadCount", "StarCount", "IsStarred", "IsBookmarked", "Platforms")
    assert [r["Name"] for r in got] == [r["Name"] for r in expected]
    assert [{k: r[k] for k in keys} for r in got] == [{k: r[k] for k in keys} for r in expected]


def check(reg: InProcessRegistry, user: str | None, order: str, text: str | None = None, flt: str = "",
          flt_dict: dict | None = None) -> int:
    with client(reg, user) as c:
        got, total = pages(c, order, text, flt)
    expected = oracle(reg, user, order, text or "", flt_dict)
    _same(got, expected)
    assert total == len(expected)
    return total


def platform_counts(store: Any, stxn: Any) -> dict:
    """The kept counts by platform signature."""
    return {(tuple(oses), tuple(arches)): (repos, images)
            for oses, arches, repos, images in store.platform_counts(stxn)}


def recounted(store: Any, stxn: Any) -> dict:
    """The same counts, from every entry."""
    out: dict = {}
    for _, raw in store.index_names(stxn):
        rec = unpack(raw)
        sig = (tuple(sorted({(p.get("Os") or "").lower() for p in rec["p"]})),
               tuple(sorted({(p.get("Arch") or "").lower() for p in rec["p"]})))
        repos, images = out.get(sig, (0, 0))
        out[sig] = (repos + 1, images + rec["n"])
    return out


def kept_grams(store: Any, stxn: Any) -> tuple[set, dict]:
    """The kept trigram records: (trigram, name) pairs and the count of each trigram."""
    pairs = {(bytes(k[:3]), bytes(k[3:]).decode()) for k, _ in store.scan(stxn, "grams", b"")}
    counts = {bytes(k): unpack(v) for k, v in store.scan(stxn, "gramcount", b"")}
    return pairs, counts


def name_grams(store: Any, stxn: Any) -> tuple[set, dict]:
    """The same, from the names of every entry."""
    pairs = {(n.lower().encode()[i:i + 3], n) for n, _ in store.index_names(stxn) for i in range(len(n) - 2)}
    counts: dict = {}
    for gram, _ in pairs:
        counts[gram] = counts.get(gram, 0) + 1
    return pairs, counts


def index_is_fresh(reg: InProcessRegistry) -> None:
    """Every entry of every shard's index is what the repository's keys are now; the kept count too
    (once the background rewrites that deletions asked for are done, as a listing waits for them)."""
    reg.settle()  # the pulls the gateway told the shards are noted
    for shard in reg.shards:
        search = shard.search
        reg.run(search.settled())

        def both(txn: Any, search: Any = search) -> None:
            with search.store.begin_read() as stxn:
                names = list(search.meta.repo_names(txn))
                entries = 0
                for name in names:
                    kept = search.store.index_get(stxn, name)
                    assert kept == search.index_record(txn, stxn, name), name
                    entries += kept is not None
                assert search.store.index_count(stxn) == entries
                assert search.index_complete(stxn)
                assert platform_counts(search.store, stxn) == recounted(search.store, stxn)
                assert kept_grams(search.store, stxn) == name_grams(search.store, stxn)

        search.meta.read(both)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("user", CALLERS)
def test_pages_joined_are_the_whole_ordered_list(reg, user, order):
    total = check(reg, user, order)
    assert total == {"admin": 19, "alice": 14, "bob": 6}[user]
    check(reg, user, order, text="lib")
    check(reg, user, order, text="", flt='Arch: ["arm64"]', flt_dict={"Arch": ["arm64"]})
    check(reg, user, order, text="a", flt="IsStarred: true", flt_dict={"IsStarred": True})
    check(reg, user, order, text="", flt="IsBookmarked: false", flt_dict={"IsBookmarked": False})


@pytest.mark.parametrize("user", CALLERS)
def test_pages_after_an_offset_skipped_by_key_are_the_same(reg, user, monkeypatch):
    """Every page but the first skips its offset by name and key only (``SKIM_FROM`` lowered to 1,
    a few keys per call so that each shard is asked again): the pages joined, and their
    TotalCount, are still the whole ordered listing, for every order, text and filter."""
    monkeypatch.setattr(search_merge, "SKIM_FROM", 1)
    monkeypatch.setattr(search_merge, "SKIM_ASK", 3)
    for order in ORDERS:
        check(reg, user, order)
        check(reg, user, order, text="lib")
        check(reg, user, order, text="", flt='Arch: ["arm64"]', flt_dict={"Arch": ["arm64"]})
        check(reg, user, order, text="a", flt="IsStarred: true", flt_dict={"IsStarred": True})


@pytest.mark.parametrize("share", (1.0, search_walk.GRAM_SHARE))
@pytest.mark.parametrize("user", CALLERS)
def test_texts_found_through_their_trigrams_are_every_name_holding_them(reg, user, share, monkeypatch):
    """A search text's candidates are the names holding its rarest trigram (always, with ``share``
    1.0; here, with 19 names, only for rare trigrams otherwise): every order, with a filter too,
    gives exactly the names that contain the text (case-insensitive), as walking every name would;
    a text shorter than a trigram, or in no name, too."""
    monkeypatch.setattr(search_walk, "GRAM_SHARE", share)
    for text in ("app-", "LIB", "eam-a/a", "b-1", "ret/s", "zzz-none", "s", "-"):
        for order in ORDERS:
            check(reg, user, order, text=text)
        check(reg, user, "UPDATE_TIME", text=text, flt='Arch: ["amd64"]', flt_dict={"Arch": ["amd64"]})


def test_after_push_pull_star_and_delete(reg):
    with client(reg, "admin") as admin:
        push_image(admin, "team-a/app-3", "v2", layers=[os.urandom(16)], created="2025-06-01T00:00:00Z")
        for _ in range(9):
            assert admin.get("/v2/public/lib-4/manifests/v1").status_code == 200
        assert admin.put("/v2/_zot/ext/userprefs", params={"action": "toggleStar", "repo": "secret/s-4"}).status_code == 200
        assert admin.put("/v2/_zot/ext/userprefs", params={"action": "toggleStar", "repo": "team-a/app-0"}).status_code == 200
        # a digest under two tags counts twice in its repository's downloads (the sum over tags)
        twice, body = push_image(admin, "team-a/lib", "twice-a", layers=[os.urandom(16)])
        put_manifest(admin, "team-a/lib", "twice-b", body)
        before = _downloads(admin, "team-a/lib")
        for _ in range(3):
            assert admin.get(f"/v2/team-a/lib/manifests/{twice}").status_code == 200
        assert _downloads(admin, "team-a/lib") == before + 6
        digest = admin.head("/v2/team-a/app-6/manifests/v1").headers["Docker-Content-Digest"]
        assert admin.delete(f"/v2/team-a/app-6/manifests/{digest}").status_code == 202
        first = gql(admin, "{ RepoListWithNewestImage(requestedPage: {limit: 1, sortBy: UPDATE_TIME}) { Results { Name } } }")
        assert first["data"]["RepoListWithNewestImage"]["Results"] == [{"Name": "team-a/app-3"}]
        most = gql(admin, "{ RepoListWithNewestImage(requestedPage: {limit: 1, sortBy: DOWNLOADS}) { Results { Name DownloadCount } } }")
        assert most["data"]["RepoListWithNewestImage"]["Results"] == [{"Name": "public/lib-4", "DownloadCount": 9}]
    index_is_fresh(reg)
    for user in CALLERS:
        for order in ("UPDATE_TIME", "DOWNLOADS", "STARS", "ALPHABETIC_DSC"):
            check(reg, user, order)
    assert check(reg, "admin", "ALPHABETIC_ASC") == 18  # team-a/app-6 has no image any more


def _downloads(c: httpx.Client, name: str) -> int:
    out = gql(c, f'{{ GlobalSearch(query: "{name}") {{ Repos {{ Name DownloadCount }} }} }}')
    return next(r["DownloadCount"] for r in out["data"]["GlobalSearch"]["Repos"] if r["Name"] == name)


def test_after_retention_deletes_tags(reg):
    with client(reg, "admin") as admin:
        push_image(admin, "old/app", "drop-1", layers=[os.urandom(16)], created="2026-01-01T00:00:00Z")
        push_image(admin, "old/keep", "keep-1", layers=[os.urandom(16)], created="2023-01-01T00:00:00Z")
        assert check(reg, "admin", "UPDATE_TIME") >= 2
        r = admin.post("/v2/_shardreg/retention", params={"dryRun": "false"})
        assert r.status_code == 200, r.text
        assert admin.get("/v2/old/app/tags/list").json().get("tags") in (None, [])
    names = [r["Name"] for r in oracle(reg, "admin", "ALPHABETIC_ASC")]
    assert "old/keep" in names and "old/app" not in names
    index_is_fresh(reg)
    check(reg, "admin", "UPDATE_TIME")
    check(reg, "alice", "UPDATE_TIME")


def test_anonymous_callers_under_partial_access():
    """Without authentication but with access control, anonymous callers read what
    ``anonymousPolicy`` grants: every page of every order is the oracle's."""
    config = {"http": {"accessControl": {"repositories": {
        "open/**": {"anonymousPolicy": ["read", "create"]}, "closed/**": {"anonymousPolicy": ["create"]}}}},
        "extensions": FULL_EXTENSIONS}
    with InProcessRegistry(shards=2, config=config) as anon_reg, anon_reg.client(timeout=30) as anon:
        for i in range(10):
            push_image(anon, f"{'open' if i % 2 else 'closed'}/r-{i}", "v1", layers=[os.urandom(16)],
                       arch="arm64" if i % 3 else "amd64", created=f"2024-02-0{1 + i % 3}T00:00:00Z")
        for i in range(5):
            assert anon.get(f"/v2/open/r-{2 * i + 1}/manifests/v1").status_code == 200
        for order in ORDERS:
            assert check(anon_reg, None, order) == 5
            check(anon_reg, None, order, text="r-", flt='Arch: ["amd64"]', flt_dict={"Arch": ["amd64"]})


def _owner(reg: InProcessRegistry, name: str) -> Any:
    return next(s.search for s in reg.shards if s.search.meta.read(lambda txn, s=s: s.search.meta.repo_exists(txn, name)))


def test_a_resize_purge_and_import_move_the_index_entry(reg):
    """At the shard level: a purge drops the records and the entry in one transaction, an import
    writes both in one transaction, with the kept count."""
    search = _owner(reg, "public/lib-1")
    reg.run(search.settled())
    records = search.store.read(lambda stxn: search.store.repo_records(stxn, "public/lib-1"))
    count = search.store.read(search.store.index_count)
    reg.run(search.purge_repo("public/lib-1"))
    assert search.store.read(lambda stxn: search.store.index_get(stxn, "public/lib-1")) is None
    assert search.store.read(search.store.index_count) == count - 1
    assert "public/lib-1" not in [r["Name"] for r in pages(client(reg, "bob"), "ALPHABETIC_ASC")[0]]
    reg.run(search.import_repo("public/lib-1", records))
    assert search.store.read(search.store.index_count) == count
    index_is_fresh(reg)
    check(reg, "bob", "ALPHABETIC_ASC")
    check(reg, "admin", "DOWNLOADS")


def test_a_name_two_shards_list_is_paged_once(reg, monkeypatch):
    """During a resize's switch two shards may list a name: the pages joined list it once, whether
    the offset before a page is merged item by item or skimmed by key."""
    with client(reg, "admin") as c:
        expected = {order: [r["Name"] for r in pages(c, order)[0]] for order in ORDERS}
    owner = _owner(reg, "public/lib-1")
    other = next(shard.search for shard in reg.shards if shard.search is not owner)
    rec = owner.store.read(lambda stxn: owner.store.index_get(stxn, "public/lib-1"))
    other.store.write(lambda stxn: other.store.index_put(stxn, "public/lib-1", rec))
    try:
        monkeypatch.setattr(search_merge, "SKIM_ASK", 3)
        for skim_from in (10**9, 1):
            monkeypatch.setattr(search_merge, "SKIM_FROM", skim_from)
            with client(reg, "admin") as c:
                for order in ORDERS:
                    assert [r["Name"] for r in pages(c, order)[0]] == expected[order], (skim_from, order)
    finally:
        other.store.write(lambda stxn: other.store.index_put(stxn, "public/lib-1", None))


def test_a_store_without_the_index_answers_the_same_while_it_is_built(reg):
    expected = {order: pages(client(reg, "alice"), order)[0] for order in ORDERS}
    for shard in reg.shards:
        shard.search.store.write(lambda stxn, s=shard.search: (s.store.index_clear(stxn),
                                                              s.store.set_index_flag(stxn, "complete", False)))
    for order in ORDERS:  # computed from the repositories: same answer
        assert pages(client(reg, "alice"), order)[0] == expected[order]
    for shard in reg.shards:
        reg.run(shard.search.warm(batch=3))
    index_is_fresh(reg)
    for order in ORDERS:
        assert pages(client(reg, "alice"), order)[0] == expected[order]


def test_an_aborted_write_leaves_records_and_index_together(reg):
    """The index entry is written in the transaction that writes what it derives from: a
    transaction aborted half-way (here after the star and the entry were written) leaves both as
    they were."""
    search = _owner(reg, "public/lib-0")
    reg.run(search.settled())
    before = search.store.read(lambda stxn: (search.store.index_get(stxn, "public/lib-0"),
                                             search.store.marked(stxn, "stars", "public/lib-0", "zed")))

    class Crash(Exception):
        pass

    def half(stxn: Any) -> None:
        search.store.toggle_mark(stxn, "stars", "public/lib-0", "zed")
        assert search.reindex(stxn, "public/lib-0")  # the entry changed (one star more) ...
        raise Crash  # ... and the process dies before the commit

    with pytest.raises(Crash):
        search.store.write(half)
    after = search.store.read(lambda stxn: (search.store.index_get(stxn, "public/lib-0"),
                                            search.store.marked(stxn, "stars", "public/lib-0", "zed")))
    assert after == before and after[1] is False
    index_is_fresh(reg)


def test_a_page_reads_about_limit_times_shards_entries_of_2000_repositories():
    """Bounded work: with 2,000 repositories on 2 shards, a page of 10 reads about 10 × 2 index
    entries (keys and records, counted by the walk), not 2,000; TotalCount is the kept counts."""
    with InProcessRegistry(shards=2, config={"extensions": FULL_EXTENSIONS}) as big, big.client(timeout=30) as c:
        for shard in big.shards:
            while not shard.search.store.read(shard.search.index_complete):  # the start-up build (empty)
                big.run(__import__("asyncio").sleep(0.01))
        for index, shard in enumerate(big.shards):
            def fill(stxn: Any, index: int = index, shard: Any = shard) -> None:
                for i in range(index, 2000, 2):
                    shard.search.store.index_put(stxn, f"team-{i % 4}/r-{i:04d}", {
                        "u": float(i % 500), "l": f"t{i % 500}", "d": i % 7, "s": i % 3,
                        "p": [{"Os": "linux", "Arch": "amd64" if i % 5 else "arm64"}], "n": 1 + i % 3})
            shard.search.store.write(fill)
        gateway = big.app.state.client  # type: ignore[attr-defined]
        gql(c, "{ RepoListWithNewestImage(requestedPage: {limit: 1}) { Results { Name } } }")  # the map known
        original = gateway.call
        scanned: list[int] = []

        async def call(shard: int, request: Any, *args: Any, **kwargs: Any) -> Any:
            reply = await original(shard, request, *args, **kwargs)
            if request.wire.op.value == "search.page":
                scanned.append(reply.result["scanned"])
            return reply

        gateway.call = call
        try:
            for order in ORDERS:
                scanned.clear()
                out = gql(c, f"{{ RepoListWithNewestImage(requestedPage: {{limit: 10, sortBy: {order}}}) "
                             "{ Page { TotalCount ItemCount } Results { Name DownloadCount } } }")
                page = out["data"]["RepoListWithNewestImage"]
                assert page["Page"] == {"TotalCount": 2000, "ItemCount": 10}
                assert 10 <= sum(scanned) <= 2 * 10 * 2 + 4, (order, scanned)  # a key and a record per item
            scanned.clear()
            out = gql(c, "{ RepoListWithNewestImage(requestedPage: {limit: 10, offset: 50, sortBy: DOWNLOADS}) "
                         "{ Results { Name DownloadCount } } }")
            assert len(out["data"]["RepoListWithNewestImage"]["Results"]) == 10
            assert sum(scanned) <= 2 * 60 * 2 + 4  # offset means walking: bounded by offset + limit per shard
            names = [f"team-{i % 4}/r-{i:04d}" for i in range(2000)]
            for order, expected in (("ALPHABETIC_ASC", sorted(names)), ("ALPHABETIC_DSC", sorted(names, reverse=True))):
                scanned.clear()
                out = gql(c, f"{{ RepoListWithNewestImage(requestedPage: {{limit: 10, offset: 1500, sortBy: {order}}}) "
                             "{ Page { TotalCount } Results { Name } } }")
                page = out["data"]["RepoListWithNewestImage"]
                assert [r["Name"] for r in page["Results"]] == expected[1500:1510] and page["Page"]["TotalCount"] == 2000
                # a deep offset is walked by key only (one read per entry; a record too for an item)
                assert sum(scanned) <= 2000 + 2 * 10 * 2 + 4, (order, scanned)
            out = gql(c, "{ RepoListWithNewestImage(requestedPage: {sortBy: ALPHABETIC_DSC}) { Results { Name } } }")
            assert [r["Name"] for r in out["data"]["RepoListWithNewestImage"]["Results"]] == sorted(names, reverse=True)
            out = gql(c, "{ RepoListWithNewestImage(requestedPage: {sortBy: UPDATE_TIME}) { Results { Name } } }")
            newest = sorted(names, key=lambda n: (-(int(n[-4:]) % 500), n))
            assert [r["Name"] for r in out["data"]["RepoListWithNewestImage"]["Results"]] == newest
        finally:
            del gateway.call
        # partial access at the shard: half of its names readable, a page still reads ~2 × 10
        shard = big.shards[0]
        access = {"grants": None, "policy": {"rules": [["team-2/**", True]], "otherwise": False}}
        reply, _ = big.run(shard.walk.op_page({"order": "UPDATE_TIME", "limit": 10, "access": access,
                                               "user": None}, []))
        assert len(reply["items"]) == 10 and all(i["Name"].startswith("team-2/") for i in reply["items"])
        assert reply["scanned"] <= 4 * 10 * 2 + 10
        # by name, the walk starts where the readable names start (500 names of team-0/ come first)
        for order in ("ALPHABETIC_ASC", "ALPHABETIC_DSC", "RELEVANCE"):
            seen, after = [], None
            for _ in range(3):  # three pages joined: the cursor resumes inside the range
                reply, _ = big.run(shard.walk.op_page({"order": order, "limit": 10, "access": access,
                                                       "user": None, "after": after}, []))
                assert reply["scanned"] <= 2 * 10 + 2, (order, reply["scanned"])
                seen += [i["Name"] for i in reply["items"]]
                after = reply["next"]
            team2 = sorted(f"team-2/r-{i:04d}" for i in range(2, 2000, 4))
            assert seen == (team2[::-1][:30] if order == "ALPHABETIC_DSC" else team2[:30])
        # its TotalCount (and a text ranked by RELEVANCE) read only the names it may read: 500 of 1,000
        reply, _ = big.run(shard.walk.op_page({"order": "UPDATE_TIME", "limit": 10, "access": access,
                                               "user": None, "count": True}, []))
        assert reply["total"] == 500 and reply["scanned"] <= 500 + 4 * 10 * 2 + 10
        reply, _ = big.run(shard.walk.op_page({"order": "RELEVANCE", "limit": 10, "access": access,
                                               "user": None, "count": True, "query": "r-00"}, []))
        assert reply["total"] == 25 and reply["scanned"] <= 500 + 2 * 10 + 2
        assert all(i["Name"].startswith("team-2/r-00") for i in reply["items"])
        # a text: the names holding its rarest trigram are read, not every name (6 of 1,000 here)
        everyone = {"order": "RELEVANCE", "limit": 10, "access": {"all": True}, "user": None, "count": True,
                    "query": "R-000"}
        for order in ORDERS:
            reply, _ = big.run(shard.walk.op_page({**everyone, "order": order}, []))
            got = [i["Name"] for i in reply["items"]]
            expected = [f"team-{i % 4}/r-{i:04d}" for i in range(0, 10, 2)]
            assert sorted(got) == sorted(expected) and reply["total"] == 5, (order, got, reply["total"])
            assert reply["scanned"] <= 40, (order, reply["scanned"])
        # an Os/Arch filter's TotalCount for a caller who reads everything: the kept counts of the
        # platform signatures (2 here), not a pass over the 1,000 entries; none passing: no walk
        for flt, arches in (({"Arch": ["ARM64"]}, {"arm64"}), ({"Os": ["linux"], "Arch": ["amd64", "arm64"]},
                            {"amd64", "arm64"}), ({"Os": ["windows"]}, set()), ({"Os": ["Linux"], "Arch": ["amd64"]}, {"amd64"})):
            matching = [i for i in range(0, 2000, 2) if ("amd64" if i % 5 else "arm64") in arches]
            for images in (False, True):
                ask = {"order": "UPDATE_TIME", "limit": 10, "access": {"all": True}, "user": None, "filter": flt,
                       "images": images}
                page, _ = big.run(shard.walk.op_page(ask, []))
                reply, _ = big.run(shard.walk.op_page({**ask, "count": True}, []))
                total = sum(1 + i % 3 for i in matching) if images else len(matching)
                assert reply["total"] == total, (flt, images, reply["total"])
                assert reply["items"] == page["items"] and len(page["items"]) == min(10, total)
                assert reply["scanned"] == page["scanned"], (flt, page["scanned"], reply["scanned"])
                if not total:  # nothing passes: the 2 signatures read, no walk
                    assert page == {"items": [], "next": None, "scanned": 2}
        # a filter nothing passes stops at the cap and says where to continue (one the platform
        # counts do not decide: they answer an Os/Arch filter alone, as above)
        reply, _ = big.run(shard.walk.op_page({"order": "UPDATE_TIME", "limit": 10, "access": {"all": True},
                                               "user": None, "filter": {"Arch": ["amd64"], "IsBookmarked": True}}, []))
        assert reply["items"] == [] and reply["next"] is not None and reply["scanned"] <= 2 * 2000


def image_oracle(reg: InProcessRegistry, user: str | None, sort_by: str) -> list[dict]:
    from gateway.extensions.search import _sort_images
    reg.settle()  # the pulls the gateway told the shards are noted
    access = reg.app.state.access  # type: ignore[attr-defined]
    identity = Identity(name=user, groups=frozenset(), via="htpasswd" if user else "anonymous")
    images: list[dict] = []
    for shard in reg.shards:
        search = shard.search

        def all_images(txn: Any, search: Any = search) -> list[dict]:
            with search.store.begin_read() as stxn:
                return [i for name in search.meta.repo_names(txn) if access.can_read(identity, name)
                        for i in search.repo_images(txn, stxn, name)]

        images += search.meta.read(all_images)
    return _sort_images(images, sort_by)


@pytest.mark.parametrize("user", ("admin", "alice"))
def test_image_list_of_every_repository_pages_from_the_index(reg, user):
    with client(reg, "admin") as admin:  # more images than repositories, a repository's images apart in time
        if admin.get("/v2/team-a/app-2/manifests/v9").status_code == 404:
            push_image(admin, "team-a/app-2", "v9", layers=[os.urandom(16)], created="2027-01-01T00:00:00Z")
            push_image(admin, "team-a/app-2", "v0", layers=[os.urandom(16)], created="2020-01-01T00:00:00Z")
            for _ in range(30):
                assert admin.get("/v2/team-a/app-2/manifests/v0").status_code == 200
    with client(reg, user) as c:
        for sort_by in ORDERS:
            expected = image_oracle(reg, user, sort_by)
            joined: list[dict] = []
            for offset in range(0, len(expected) + 5, 5):
                out = gql(c, f'{{ ImageList(repo: "", requestedPage: {{limit: 5, offset: {offset}, sortBy: {sort_by}}}) '
                             "{ Page { TotalCount ItemCount } Results { RepoName Tag Digest DownloadCount } } }")
                assert "errors" not in out, out
                page = out["data"]["ImageList"]
                assert page["Page"]["TotalCount"] == len(expected)
                joined += page["Results"]
            assert [(i["RepoName"], i["Tag"], i["Digest"], i["DownloadCount"]) for i in joined] == \
                [(i["RepoName"], i["Tag"], i["Digest"], i["DownloadCount"]) for i in expected], sort_by
