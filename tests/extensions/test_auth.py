"""Search and user preferences with authentication and access control (htpasswd + policies)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.credentials import basic_header, write_htpasswd
from tests.extensions.conftest import gql
from tests.extensions.fixtures import FULL_EXTENSIONS, push_image
from tests.inprocess import InProcessRegistry

USERS = {"admin": "admin-pw-1", "alice": "alice-pw-2", "bob": "bob-pw-3"}
ACCESS = {
    "repositories": {
        "**": {"policies": [{"users": ["bob"], "actions": ["read"]}], "defaultPolicy": []},
        "team-a/**": {"policies": [{"users": ["alice", "bob"], "actions": ["read", "create"]}]},
        "public/**": {"policies": [{"users": ["alice", "bob"], "actions": ["read"]}], "anonymousPolicy": ["read"]},
    },
    "adminPolicy": {"users": ["admin"], "actions": ["read", "create", "update", "delete"]},
}
REPOS = ["team-a/app", "team-a/lib", "public/base", "secret/db", "secret/keys"]


def basic(user: str) -> dict[str, str]:
    return basic_header(user, USERS[user])


@pytest.fixture(scope="module")
def auth_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessRegistry]:
    tmp = tmp_path_factory.mktemp("ext-auth")
    htpasswd = tmp / "htpasswd"
    write_htpasswd(htpasswd, USERS)
    config = {"http": {"auth": {"htpasswd": {"path": str(htpasswd)}}, "accessControl": ACCESS},
              "extensions": FULL_EXTENSIONS}
    with InProcessRegistry(shards=3, config=config) as registry:
        with client_for(registry, "admin") as admin:
            for repo in REPOS:
                push_image(admin, repo, "v1")
        yield registry


def client_for(registry: InProcessRegistry, user: str | None) -> httpx.Client:
    return registry.client(timeout=30, headers=basic(user) if user else {})


def _repo_names(client: httpx.Client) -> set[str]:
    out = gql(client, "{ RepoListWithNewestImage { Results { Name } } }")
    return {r["Name"] for r in out["data"]["RepoListWithNewestImage"]["Results"]}


def test_search_is_filtered_by_access(auth_cluster):
    with client_for(auth_cluster, "alice") as alice, client_for(auth_cluster, "bob") as bob, \
            client_for(auth_cluster, "admin") as admin:
        assert _repo_names(alice) == {"team-a/app", "team-a/lib", "public/base"}
        assert _repo_names(bob) == set(REPOS)
        assert _repo_names(admin) == set(REPOS)
        out = gql(alice, '{ ImageList(repo: "secret/db") { Results { Tag } } }')
        assert "not found" in out["errors"][0]["message"]
        out = gql(alice, '{ GlobalSearch(query: "secret") { Repos { Name } } }')
        assert out["data"]["GlobalSearch"]["Repos"] == []
        out = gql(alice, '{ ImageList(repo: "") { Results { RepoName } } }')
        assert {i["RepoName"] for i in out["data"]["ImageList"]["Results"]} == {"team-a/app", "team-a/lib",
                                                                                "public/base"}
        out = gql(alice, '{ Image(image: "team-a/app:v1") { PushedBy } }')
        assert out["data"]["Image"]["PushedBy"] == "admin"


def test_anonymous_sees_only_anonymous_repos(auth_cluster):
    with client_for(auth_cluster, None) as anon:
        r = anon.post("/v2/_zot/ext/search", json={"query": "{ RepoListWithNewestImage { Results { Name } } }"})
        if r.status_code == 200:
            assert {x["Name"] for x in r.json()["data"]["RepoListWithNewestImage"]["Results"]} <= {"public/base"}
        else:
            assert r.status_code == 401
        r = anon.put("/v2/_zot/ext/userprefs", params={"action": "toggleStar", "repo": "public/base"})
        assert r.status_code in (401, 403)


def test_stars_and_bookmarks(auth_cluster):
    with client_for(auth_cluster, "alice") as alice, client_for(auth_cluster, "bob") as bob:
        def toggle(client: httpx.Client, action: str, repo: str) -> int:
            return client.put("/v2/_zot/ext/userprefs", params={"action": action, "repo": repo}).status_code

        for repo in ("team-a/app", "public/base"):
            assert toggle(alice, "toggleStar", repo) == 200
        assert toggle(alice, "toggleBookmark", "team-a/lib") == 200
        assert toggle(bob, "toggleStar", "team-a/app") == 200
        assert toggle(bob, "toggleBookmark", "secret/db") == 200
        assert toggle(alice, "toggleStar", "secret/db") == 403
        assert toggle(alice, "toggleStar", "team-a/nope") == 404

        out = gql(alice, "{ StarredRepos { Page { TotalCount } Results { Name StarCount IsStarred } } "
                         "BookmarkedRepos { Results { Name IsBookmarked } } }")["data"]
        assert sorted((r["Name"], r["StarCount"], r["IsStarred"]) for r in out["StarredRepos"]["Results"]) == [
            ("public/base", 1, True), ("team-a/app", 2, True)]
        assert out["BookmarkedRepos"]["Results"] == [{"Name": "team-a/lib", "IsBookmarked": True}]
        out = gql(bob, "{ StarredRepos { Results { Name } } BookmarkedRepos { Results { Name } } }")["data"]
        assert [r["Name"] for r in out["StarredRepos"]["Results"]] == ["team-a/app"]
        assert [r["Name"] for r in out["BookmarkedRepos"]["Results"]] == ["secret/db"]

        out = gql(alice, '{ GlobalSearch(query: "", filter: {IsStarred: true}) { Repos { Name } } }')
        assert {r["Name"] for r in out["data"]["GlobalSearch"]["Repos"]} == {"team-a/app", "public/base"}
        out = gql(alice, '{ GlobalSearch(query: "", filter: {IsBookmarked: true}) { Repos { Name } } }')
        assert [r["Name"] for r in out["data"]["GlobalSearch"]["Repos"]] == ["team-a/lib"]
        out = gql(alice, '{ RepoListWithNewestImage(requestedPage: {sortBy: STARS, limit: 1}) '
                         '{ Results { Name StarCount } } }')
        assert out["data"]["RepoListWithNewestImage"]["Results"] == [{"Name": "team-a/app", "StarCount": 2}]

        # toggling again removes the star
        assert toggle(alice, "toggleStar", "public/base") == 200
        out = gql(alice, "{ StarredRepos { Results { Name } } }")["data"]
        assert [r["Name"] for r in out["StarredRepos"]["Results"]] == ["team-a/app"]


def test_admin_only_endpoints(auth_cluster, tmp_path):
    from tests.extensions import signing

    _, pem = signing.cosign_keypair()
    with client_for(auth_cluster, "alice") as alice, client_for(auth_cluster, "admin") as admin, \
            client_for(auth_cluster, None) as anon:
        assert alice.get("/v2/_zot/pprof/").status_code == 403
        assert anon.get("/v2/_zot/pprof/").status_code == 401
        assert admin.get("/v2/_zot/pprof/").status_code == 200
        assert alice.post("/v2/_zot/ext/cosign", content=pem).status_code == 403
        assert admin.post("/v2/_zot/ext/cosign", content=pem).status_code == 200
        mgmt = anon.get("/v2/_zot/ext/mgmt")
        assert mgmt.status_code == 200 and mgmt.json()["http"] == {"auth": {"htpasswd": {}}}


def test_sorted_pages_are_filtered_by_access(auth_cluster):
    """A page is cut from the caller's readable repositories only (issue 17: shards sort, the
    gateway pages): alice's pages hold exactly her three repositories, in order."""
    with client_for(auth_cluster, "alice") as alice:
        names, total = [], set()
        for offset in range(4):
            out = gql(alice, '{ RepoListWithNewestImage(requestedPage: {sortBy: ALPHABETIC_ASC, limit: 1, '
                             f'offset: {offset}}}) {{ Page {{ TotalCount }} Results {{ Name Size NewestImage {{ Tag }} }} }} }}')
            page = out["data"]["RepoListWithNewestImage"]
            total.add(page["Page"]["TotalCount"])
            names += [r["Name"] for r in page["Results"]]
        assert names == ["public/base", "team-a/app", "team-a/lib"]
        assert total == {3}


def test_listing_follows_every_change(auth_cluster):
    """What shards keep per repository for listings (issue 17) follows pushes, pulls, stars and
    deletions: each change shows in the next sorted page."""
    query = ('{ RepoListWithNewestImage(requestedPage: {sortBy: UPDATE_TIME, limit: 1}) '
             '{ Page { TotalCount } Results { Name LastUpdated DownloadCount StarCount } } }')

    def first(client: httpx.Client) -> tuple[int, dict]:
        page = gql(client, query)["data"]["RepoListWithNewestImage"]
        return page["Page"]["TotalCount"], page["Results"][0]

    with client_for(auth_cluster, "alice") as alice, client_for(auth_cluster, "admin") as admin:
        total, _ = first(alice)  # kept by the shards from here
        digest, _ = push_image(alice, "team-a/new", "v1", created="2030-01-01T00:00:00Z")
        assert first(alice) == (total + 1, {"Name": "team-a/new", "LastUpdated": "2030-01-01T00:00:00Z",
                                            "DownloadCount": 0, "StarCount": 0})
        assert alice.get("/v2/team-a/new/manifests/v1").status_code == 200
        assert first(alice)[1]["DownloadCount"] == 1
        assert alice.put("/v2/_zot/ext/userprefs", params={"action": "toggleStar", "repo": "team-a/new"}).status_code == 200
        assert first(alice)[1]["StarCount"] == 1
        push_image(alice, "team-a/new", "v2", created="2031-01-01T00:00:00Z")
        assert first(alice)[1]["LastUpdated"] == "2031-01-01T00:00:00Z"
        for tag in ("v2", "v1"):
            assert admin.delete(f"/v2/team-a/new/manifests/{tag}").status_code == 202
        total_after, top = first(alice)
        assert (total_after, top["Name"] != "team-a/new") == (total, True)
