"""Extensions off: the session's default in-process registry (no extensions) and a search-only one."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.inprocess import InProcessRegistry
from tests.oci import digest, push_image

OFF_WHEN_NOTHING = [("get", "/v2/_zot/ext/search?query=%7BImageList%7D"), ("post", "/v2/_zot/ext/search"),
                    ("get", "/v2/_zot/ext/mgmt"), ("put", "/v2/_zot/ext/userprefs?action=toggleStar&repo=a"),
                    ("post", "/v2/_zot/ext/cosign"), ("post", "/v2/_zot/ext/notation"),
                    ("get", "/swagger/v2/"), ("get", "/swagger/v2/doc.json"),
                    ("get", "/v2/_zot/debug/graphql-playground")]


@pytest.mark.inprocess
def test_nothing_enabled(client):
    r = client.get("/v2/_oci/ext/discover")
    assert r.status_code == 200 and r.json() == {"extensions": []}
    for method, path in OFF_WHEN_NOTHING:
        assert client.request(method, path).status_code in (404, 405), path
    # always on, as in zot: ORAS referrers and profiling
    d, _ = push_image(client, "ext-off/app", "v1")
    r = client.get(f"/oras/artifacts/v1/ext-off/app/manifests/{d}/referrers")
    assert r.status_code == 200 and r.json() == {"references": []}
    assert client.get("/v2/_zot/pprof/").status_code == 200
    assert client.get(f"/oras/artifacts/v1/ext-off/app/manifests/{digest(b'q')}/referrers").status_code == 200


@pytest.fixture(scope="module")
def search_only() -> Iterator[httpx.Client]:
    config = {"extensions": {"search": {"enable": True, "cve": {"updateInterval": "2h"}},
                             "ui": {"enable": False}, "trust": {"enable": True, "cosign": True},
                             "profiling": {"enable": False}, "sync": {"enable": False}}}
    with InProcessRegistry(shards=2, config=config) as registry, registry.client(timeout=30) as http:
        yield http


def test_search_only(search_only):
    [ext] = search_only.get("/v2/_oci/ext/discover").json()["extensions"]
    assert ext["endpoints"] == ["/v2/_zot/ext/cosign", "/v2/_zot/ext/search", "/v2/_zot/ext/mgmt"]
    assert search_only.put("/v2/_zot/ext/userprefs?action=toggleStar&repo=a").status_code in (404, 405)
    assert search_only.post("/v2/_zot/ext/notation").status_code in (404, 405)
    assert search_only.get("/swagger/v2/").status_code == 404
    assert search_only.get("/v2/_zot/pprof/").status_code == 404
    assert search_only.get("/v2/_zot/ext/mgmt").status_code == 200
    r = search_only.post("/v2/_zot/ext/search", json={"query": "{ RepoListWithNewestImage { Results { Name } } }"})
    assert r.status_code == 200 and r.json()["data"]["RepoListWithNewestImage"]["Results"] == []
