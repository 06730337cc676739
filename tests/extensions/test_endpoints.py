"""discover, mgmt, userprefs (no auth), ORAS, pprof, playground, swagger: with every extension on."""

from __future__ import annotations

import httpx

from tests.oci import digest


def test_discover_lists_enabled_endpoints(ext_client):
    r = ext_client.get("/v2/_oci/ext/discover")
    assert r.status_code == 200
    [ext] = r.json()["extensions"]
    assert ext["name"] == "_zot" and ext["description"] == "zot registry extensions"
    assert ext["endpoints"] == ["/v2/_zot/ext/notation", "/v2/_zot/ext/cosign", "/v2/_zot/ext/search",
                                "/v2/_zot/ext/userprefs", "/v2/_zot/ext/mgmt"]


def test_mgmt(ext_client):
    for params in ({}, {"resource": "config"}):
        r = ext_client.get("/v2/_zot/ext/mgmt", params=params)
        assert r.status_code == 200
        body = r.json()
        assert body["distSpecVersion"] == "1.1.1" and body["http"] == {}
        assert set(body) == {"distSpecVersion", "commit", "releaseTag", "binaryType", "http"}
        assert "search" in body["binaryType"]
    assert ext_client.get("/v2/_zot/ext/mgmt", params={"resource": "bogus"}).status_code == 400


def test_userprefs_without_auth(ext_client, pushed):
    assert ext_client.put("/v2/_zot/ext/userprefs").status_code == 400
    assert ext_client.put("/v2/_zot/ext/userprefs", params={"action": "bogus", "repo": "apps/api"}).status_code == 400
    assert ext_client.put("/v2/_zot/ext/userprefs", params={"action": "toggleStar"}).status_code == 400
    # anonymous callers have no preferences (zot: 403)
    assert ext_client.put("/v2/_zot/ext/userprefs", params={"action": "toggleStar", "repo": "apps/api"}
                          ).status_code == 403
    assert ext_client.get("/v2/_zot/ext/userprefs").status_code == 405


def test_oras_referrers(ext_client, pushed):
    subject = pushed.digests["artifact-subject"]
    r = ext_client.get(f"/oras/artifacts/v1/artifacts/app/manifests/{subject}/referrers")
    assert r.status_code == 200
    assert {d["digest"] for d in r.json()["references"]} == {pushed.digests["sbom"], pushed.digests["scan"]}
    r = ext_client.get(f"/oras/artifacts/v1/artifacts/app/manifests/{subject}/referrers",
                       params={"artifactType": "application/vnd.scan+json"})
    assert [d["digest"] for d in r.json()["references"]] == [pushed.digests["scan"]]
    assert r.json()["references"][0]["artifactType"] == "application/vnd.scan+json"
    r = ext_client.get("/oras/artifacts/v1/artifacts/app/manifests/not-a-digest/referrers")
    assert r.status_code == 400
    r = ext_client.get(f"/oras/artifacts/v1/Bad_Name/manifests/{digest(b'x')}/referrers")
    assert r.status_code == 400


def test_pprof(ext_cluster):
    # real processes: the heap profile starts tracemalloc, which must not slow down the test process
    with httpx.Client(base_url=ext_cluster.url, timeout=60) as ext_client:
        check_pprof(ext_client)


def check_pprof(ext_client: httpx.Client) -> None:
    r = ext_client.get("/v2/_zot/pprof/")
    assert r.status_code == 200 and "text/html" in r.headers["Content-Type"]
    for name in ("profile", "heap", "tasks", "threads"):
        assert f"/v2/_zot/pprof/{name}?shard=2" in r.text
    r = ext_client.get("/v2/_zot/pprof/tasks")
    assert r.status_code == 200 and "asyncio tasks" in r.text
    r = ext_client.get("/v2/_zot/pprof/threads", params={"shard": 1})
    assert r.status_code == 200 and "threads" in r.text
    r = ext_client.get("/v2/_zot/pprof/heap", params={"shard": 0})
    assert r.status_code == 200 and "tracemalloc" in r.text
    r = ext_client.get("/v2/_zot/pprof/profile", params={"seconds": 1, "shard": 2})
    assert r.status_code == 200 and "CPU profile" in r.text
    assert ext_client.get("/v2/_zot/pprof/profile", params={"seconds": 1}).status_code == 200
    assert ext_client.get("/v2/_zot/pprof/nope").status_code == 404
    assert ext_client.get("/v2/_zot/pprof/tasks", params={"shard": 9}).status_code == 400
    assert ext_client.get("/v2/_zot/pprof/profile", params={"seconds": 999}).status_code == 400


def test_playground_and_swagger_are_self_contained(ext_client):
    r = ext_client.get("/v2/_zot/debug/graphql-playground")
    assert r.status_code == 200 and "/v2/_zot/ext/search" in r.text
    r = ext_client.get("/swagger/v2/")
    assert r.status_code == 200
    for page in (r.text, ext_client.get("/v2/_zot/debug/graphql-playground").text):
        assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        a = ext_client.get(f"/swagger/v2/{asset}")
        assert a.status_code == 200 and len(a.content) > 1000, asset
    assert ext_client.get("/swagger/v2/../../etc/passwd").status_code == 404
    doc = ext_client.get("/swagger/v2/doc.json").json()
    assert doc["openapi"].startswith("3.") and "/v2/_zot/ext/search" in doc["paths"]
