"""``StarredRepos`` and ``BookmarkedRepos`` read the user's own marks (issue 17): the shard keeps
every star and bookmark also by user (``umarks``, in the transaction that changes the mark), so
the answer costs the user's marks, not the shard's repositories; it is exactly what the scan of
every repository answers, after toggles, a resize's purge and import, and in a store of before
(built once at start)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.credentials import basic_header, write_htpasswd
from tests.extensions.conftest import gql
from tests.extensions.fixtures import FULL_EXTENSIONS, push_image
from tests.inprocess import InProcessRegistry

pytestmark = pytest.mark.inprocess

USERS = {"alice": "alice-pw-1", "bob": "bob-pw-2"}
NAMES = [f"team/r-{i:02d}" for i in range(24)]
QUERY = """{ StarredRepos(requestedPage: {sortBy: ALPHABETIC_ASC}) { Page { TotalCount } Results { Name IsStarred } }
             BookmarkedRepos(requestedPage: {sortBy: ALPHABETIC_ASC}) { Page { TotalCount } Results { Name IsBookmarked } } }"""


def basic(user: str) -> dict[str, str]:
    return basic_header(user, USERS[user])


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    htpasswd = tmp_path_factory.mktemp("marks") / "htpasswd"
    write_htpasswd(htpasswd, USERS)
    config = {"http": {"auth": {"htpasswd": {"path": str(htpasswd)}},
                       "accessControl": {"repositories": {"**": {"defaultPolicy": ["read", "create"]}}}},
              "extensions": FULL_EXTENSIONS}
    with InProcessRegistry(shards=2, config=config) as registry:
        with registry.client(timeout=30, headers=basic("alice")) as alice:
            for name in NAMES:
                push_image(alice, name, "v1")
        yield registry


def toggle(reg: InProcessRegistry, user: str, action: str, repo: str) -> None:
    with reg.client(timeout=30, headers=basic(user)) as c:
        assert c.put("/v2/_zot/ext/userprefs", params={"action": action, "repo": repo}).status_code == 200


def answer(reg: InProcessRegistry, user: str) -> tuple[list[str], list[str]]:
    with reg.client(timeout=30, headers=basic(user)) as c:
        out = gql(c, QUERY)["data"]
    starred, bookmarked = out["StarredRepos"], out["BookmarkedRepos"]
    assert starred["Page"]["TotalCount"] == len(starred["Results"])
    assert all(r["IsStarred"] for r in starred["Results"]) and all(r["IsBookmarked"] for r in bookmarked["Results"])
    return [r["Name"] for r in starred["Results"]], [r["Name"] for r in bookmarked["Results"]]


def scanned(reg: InProcessRegistry, user: str) -> tuple[list[str], list[str]]:
    """The oracle: every repository of every shard, its mark looked up one by one (the old way)."""
    out: tuple[list[str], list[str]] = ([], [])
    for shard in reg.shards:
        search = shard.search
        names = search.meta.read(lambda txn, s=search: list(s.meta.repo_names(txn)))
        for i, mark in enumerate(("stars", "bookmarks")):
            out[i].extend(n for n in names if search.store.read(
                lambda stxn, s=search, n=n, mark=mark: s.store.marked(stxn, mark, n, user)))
    return sorted(out[0]), sorted(out[1])


def by_user(reg: InProcessRegistry) -> set[tuple[str, str, str]]:
    """Every (mark, user, repository) of the by-user records of every shard."""
    found = set()
    for shard in reg.shards:
        store = shard.search.store
        for k, v in store.read(lambda stxn, store=store: [(bytes(key), bytes(value)) for key, value in store.scan(stxn, "umarks", b"")]):
            mark, user, _ = k.split(b"\0")
            found.add((mark.decode(), user.decode(), v.decode()))
    return found


def by_repo(reg: InProcessRegistry) -> set[tuple[str, str, str]]:
    found = set()
    for shard in reg.shards:
        store = shard.search.store
        for mark in ("stars", "bookmarks"):
            for k in store.read(lambda stxn, store=store, mark=mark: [bytes(key) for key, _ in store.scan(stxn, mark, b"")]):
                repo, user = k.decode().split("\0")
                found.add((mark, user, repo))
    return found


def test_the_answer_is_the_users_own_marks_without_a_walk_of_the_repositories(reg):
    for name in NAMES[::5]:
        toggle(reg, "alice", "toggleStar", name)
    for name in NAMES[1::7]:
        toggle(reg, "alice", "toggleBookmark", name)
    toggle(reg, "bob", "toggleStar", NAMES[3])
    toggle(reg, "alice", "toggleStar", NAMES[10])  # starred above: now unstarred
    walked: list[int] = []
    originals = [(shard.search.meta, shard.search.meta.repo_names) for shard in reg.shards]
    for meta, names in originals:
        def counting(txn: Any, *args: Any, names: Any = names) -> Any:
            walked.append(1)
            return names(txn, *args)

        meta.repo_names = counting
    try:
        alice, bob = answer(reg, "alice"), answer(reg, "bob")
    finally:
        for meta, _ in originals:
            del meta.repo_names
    assert walked == []  # no shard walked its repositories
    assert alice == scanned(reg, "alice") == ([n for n in NAMES[::5] if n != NAMES[10]], NAMES[1::7])
    assert bob == scanned(reg, "bob") == ([NAMES[3]], [])
    assert by_user(reg) == by_repo(reg)


def test_a_resize_purge_and_import_move_the_users_marks(reg):
    toggle(reg, "bob", "toggleBookmark", NAMES[7])
    owner = next(s.search for s in reg.shards if s.search.meta.read(lambda txn, s=s: s.search.meta.repo_exists(txn, NAMES[7])))
    records = owner.store.read(lambda stxn: owner.store.repo_records(stxn, NAMES[7]))
    reg.run(owner.purge_repo(NAMES[7]))
    assert by_user(reg) == by_repo(reg)
    assert ("bookmarks", "bob", NAMES[7]) not in by_user(reg)
    reg.run(owner.import_repo(NAMES[7], records))
    assert ("bookmarks", "bob", NAMES[7]) in by_user(reg) and by_user(reg) == by_repo(reg)
    assert answer(reg, "bob") == scanned(reg, "bob") == ([NAMES[3]], [NAMES[7]])


def test_a_store_without_the_by_user_marks_answers_the_same_and_builds_them_once(reg):
    expected = {user: answer(reg, user) for user in USERS}
    assert all(expected.values())
    for shard in reg.shards:
        store = shard.search.store

        def older(stxn: Any, store: Any = store) -> None:
            # as a store of before: no by-user records, marks valued b"1"
            stxn.drop(store.db["umarks"], delete=False)
            store.set_index_flag(stxn, "umarks", False)
            for mark in ("stars", "bookmarks"):
                for k, _ in list(store.scan(stxn, mark, b"")):
                    stxn.put(bytes(k), b"1", db=store.db[mark])

        store.write(older)
    assert by_user(reg) == set()
    assert {user: answer(reg, user) for user in USERS} == expected  # the walk, meanwhile
    for shard in reg.shards:
        reg.run(shard.search.warm())
        assert shard.search.store.read(shard.search.store.user_marks_built)
    assert by_user(reg) == by_repo(reg)
    assert {user: answer(reg, user) for user in USERS} == expected
