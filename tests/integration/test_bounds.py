"""Bounded work per request (issue 10, items 7, 9, 11, 13): every request costs what it should.

* item 7: a token's repository grants bound search and userprefs as they bound the OCI routes;
* item 9: GraphQL depth, aliases and cost are limited before any resolver runs;
* item 11: overlapping ranges are merged, a set larger than the blob is the blob once;
* item 13: JSON nested 10,000 deep is a 4xx (manifest, GraphQL), not a RecursionError 500.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from gateway.extensions.graphql_limits import MAX_ALIASES, MAX_COST, MAX_DEPTH
from tests.auth.conftest import write_rsa_cert
from tests.extensions.fixtures import FULL_EXTENSIONS
from tests.inprocess import InProcessRegistry
from tests.oci import OCI_CONFIG, OCI_MANIFEST, digest, push_blob, push_image

pytestmark = pytest.mark.inprocess

SEARCH = "/v2/_zot/ext/search"
DEEP = 10_000


@pytest.fixture(scope="module")
def search_client() -> Iterator[httpx.Client]:
    with InProcessRegistry(shards=2, config={"extensions": FULL_EXTENSIONS}) as registry:
        with registry.client(timeout=60) as c:
            push_image(c, "bounds/app", "v1")
            yield c


def _gql(client: httpx.Client, query: str) -> httpx.Response:
    return client.post(SEARCH, json={"query": query})


# -- item 11: ranges --------------------------------------------------------------------------------
def test_overlapping_ranges_do_not_amplify(client: httpx.Client) -> None:
    data = os.urandom(64 * 1024)
    d = push_blob(client, "bounds/ranges", data)
    url = f"/v2/bounds/ranges/blobs/{d}"
    r = client.get(url, headers={"Range": "bytes=" + ",".join(["0-"] * 64)})
    assert r.status_code == 200 and r.content == data  # the whole blob, once (was 64 copies)
    r = client.get(url, headers={"Range": "bytes=" + ",".join(["0-40000"] * 2 + ["30000-"])})
    assert r.status_code == 200 and len(r.content) == len(data)
    # overlapping and adjacent parts are merged into one range
    r = client.get(url, headers={"Range": "bytes=0-99,50-199,200-299"})
    assert r.status_code == 206 and r.headers["Content-Range"] == f"bytes 0-299/{len(data)}"
    assert r.content == data[:300]
    # disjoint parts stay apart, in the order asked; a merged part takes its first member's place
    r = client.get(url, headers={"Range": "bytes=1000-1099,0-9,1050-1199"})
    assert r.status_code == 206 and r.headers["Content-Type"].startswith("multipart/byteranges")
    assert int(r.headers["Content-Length"]) == len(r.content) < 1000
    ranges = [line for line in r.content.split(b"\r\n") if line.startswith(b"Content-Range")]
    assert ranges == [f"Content-Range: bytes 1000-1199/{len(data)}".encode(),
                      f"Content-Range: bytes 0-9/{len(data)}".encode()]


# -- item 13: deep JSON ---------------------------------------------------------------------------
def test_deeply_nested_manifest_is_manifest_invalid(client: httpx.Client) -> None:
    config, layer = b"{}", os.urandom(16)
    for blob in (config, layer):
        push_blob(client, "bounds/deep", blob)
    descriptor = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(layer), "size": 16}
    moderate = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": 2},
                           "layers": [{**descriptor, "x": "[" * 600 + "]" * 600}]})
    moderate = moderate.replace('"[' + "[" * 599, "[" * 600).replace("]" * 600 + '"', "]" * 600)
    for body in ("[" * DEEP + "]" * DEEP, '{"a":' * DEEP + "1" + "}" * DEEP, "[" * DEEP, moderate):
        r = client.put("/v2/bounds/deep/manifests/v1", content=body.encode(),
                       headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 400, r.text
        assert r.json()["errors"][0]["code"] == "MANIFEST_INVALID"
        assert "nested deeper" in r.json()["errors"][0]["message"]


def test_lone_surrogate_in_a_manifest_is_manifest_invalid(client: httpx.Client) -> None:
    """JSON lets a lone UTF-16 surrogate through (escaped, or as the raw bytes ED A0 80) and nothing
    can encode it onward: a 400, not a 500 from the wire encoding; a proper pair is text."""
    config, layer = b"{}", os.urandom(16)
    for blob in (config, layer):
        push_blob(client, "bounds/text", blob)

    def manifest(annotation: str) -> bytes:
        """The manifest with ``annotation`` put verbatim between the quotes of an annotation value."""
        doc = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": 2},
                          "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                      "digest": digest(layer), "size": 16}],
                          "annotations": {"a": "HERE"}})
        return doc.replace("HERE", annotation).encode("utf-8", "surrogatepass")

    for bad in (manifest("\\ud800"), manifest("x\\udfff"), manifest("\ud800"),
                manifest("ok").replace(b'"annotations": {"a"', b'"artifactType": "\xed\xa0\x80", "annotations": {"a"')):
        r = client.put("/v2/bounds/text/manifests/v1", content=bad, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    good = manifest("\\ud83d\\ude00")  # an escaped surrogate pair: one character
    r = client.put("/v2/bounds/text/manifests/v1", content=good, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    assert client.get("/v2/bounds/text/manifests/v1", headers={"Accept": OCI_MANIFEST}).content == good


def test_deeply_nested_graphql_body_is_a_graphql_error(search_client: httpx.Client) -> None:
    deep_variables = '{"query": "{ ImageList(repo: \\"\\") { Page { TotalCount } } }", "variables": ' \
                     + '{"a":' * DEEP + "1" + "}" * DEEP + "}"
    for body in (deep_variables, "[" * DEEP, '{"query": ' + "[" * DEEP + "]" * DEEP + "}"):
        r = search_client.post(SEARCH, content=body.encode(), headers={"Content-Type": "application/json"})
        assert r.status_code == 400, r.text
        assert "nested deeper" in r.json()["errors"][0]["message"]
    r = search_client.get(SEARCH, params={"query": "{ ImageList(repo: \"\") { Page { TotalCount } } }",
                                          "variables": "[" * DEEP + "]" * DEEP})
    assert r.status_code == 400 and "nested deeper" in r.json()["errors"][0]["message"]
    # a deeply nested query text or argument is a GraphQL error too
    for query in ("{" + "ImageList(repo: \"\") {" * 2000 + "}" * 2001,
                  '{ ImageList(repo: "", requestedPage: ' + "{limit: " * 3000 + "1" + "}" * 3000 + ") { Page { TotalCount } } }"):
        r = _gql(search_client, query)
        assert 400 <= r.status_code < 500 and r.json()["errors"], r.text


# -- item 9: GraphQL cost ---------------------------------------------------------------------------
def test_graphql_aliases_depth_and_cost_are_bounded(search_client: httpx.Client) -> None:
    started = time.monotonic()
    for count, refusal in ((5000, "more than 10000 tokens"), (500, f"500 aliases, more than {MAX_ALIASES}")):
        aliases = " ".join(f'a{i}: ImageList(repo: "") {{ Page {{ TotalCount }} }}' for i in range(count))
        r = _gql(search_client, "{ " + aliases + " }")
        assert r.status_code == 422, r.text[:300]
        assert refusal in r.json()["errors"][0]["message"][:300]
    assert time.monotonic() - started < 10  # refused before any resolver ran (was 23 s)

    # aliases hidden in a fragment spread many times still count, once per use
    fragment = "fragment F on PaginatedImagesResult { " + " ".join(
        f"p{i}: Page {{ TotalCount }}" for i in range(10)) + " }"
    r = _gql(search_client, '{ ImageList(repo: "") { ' + " ".join(["...F"] * 4) + " } } " + fragment)
    assert r.status_code == 422 and "40 aliases" in r.json()["errors"][0]["message"]

    # cost: fragments that double at each level (no alias needed) are measured, not expanded
    chain = ["fragment F0 on PageInfo { TotalCount ItemCount }"]
    chain += [f"fragment F{i} on PageInfo {{ ...F{i - 1} ...F{i - 1} TotalCount }}" for i in range(1, 40)]
    r = _gql(search_client, '{ ImageList(repo: "") { Page { ...F39 } } } ' + " ".join(chain))
    assert r.status_code == 422 and f"exceeds {MAX_COST}" in r.json()["errors"][0]["message"]

    # depth: the introspection types are recursive, so nesting has no bound but this one
    introspection = search_client.get(SEARCH, params={"query": _introspection_query()})
    assert introspection.status_code == 200 and introspection.json()["data"]["__schema"]["types"]
    too_deep = "{ __schema { types { " + "fields { type { " * 12 + "name" + " } }" * 12 + " } } }"
    r = _gql(search_client, too_deep)
    assert r.status_code == 422 and f"deeper than {MAX_DEPTH}" in r.json()["errors"][0]["message"]

    # and ordinary queries are untouched
    r = _gql(search_client, '{ ImageList(repo: "bounds/app") { Results { RepoName Tag } } }')
    assert r.status_code == 200 and r.json()["data"]["ImageList"]["Results"][0]["Tag"] == "v1"


def _introspection_query() -> str:
    from graphql import get_introspection_query

    return get_introspection_query(descriptions=True)


# -- item 7: search and userprefs apply the token's grants ---------------------------------------------
ISSUER, SERVICE = "bounds-issuer", "bounds-test"


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[InProcessRegistry, Path]]:
    keys = tmp_path_factory.mktemp("bounds-tokens")
    write_rsa_cert(keys / "issuer.key", keys / "issuer.crt")
    config = {"http": {"auth": {"bearer": {"service": SERVICE, "cert": str(keys / "issuer.crt"),
                                           "issuer": ISSUER, "realm": "https://auth.example/token"}}},
              "extensions": FULL_EXTENSIONS}
    with InProcessRegistry(shards=2, config=config) as registry:
        admin = _token(keys, "admin", {"carol/secret": ["pull", "push"], "ci/app": ["pull", "push"]})
        with registry.client(timeout=60, headers=_bearer(admin)) as c:
            push_image(c, "carol/secret", "v1")
            push_image(c, "ci/app", "v1")
        yield registry, keys


def _token(keys: Path, subject: str, repositories: dict[str, list[str]], catalog: bool = False) -> str:
    now = int(time.time())
    access = [{"type": "repository", "name": name, "actions": actions} for name, actions in repositories.items()]
    if catalog:
        access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
    claims = {"iss": ISSUER, "sub": subject, "aud": SERVICE, "exp": now + 300, "nbf": now - 5, "iat": now,
              "jti": uuid.uuid4().hex, "access": access}
    return jwt.encode(claims, (keys / "issuer.key").read_bytes(), algorithm="RS256")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_catalog_token_reads_only_its_repositories_through_search(
        token_registry: tuple[InProcessRegistry, Path]) -> None:
    registry, keys = token_registry
    token = _token(keys, "ci-robot", {"ci/app": ["pull"]}, catalog=True)
    with registry.client(timeout=60, headers=_bearer(token)) as c:
        # the catalog lists names (that is what registry:catalog:* grants) ...
        assert set(c.get("/v2/_catalog").json()["repositories"]) == {"carol/secret", "ci/app"}
        assert c.get("/v2/carol/secret/tags/list").status_code == 401  # ... but reads nothing
        out = _gql(c, "{ RepoListWithNewestImage { Results { Name } } }").json()
        assert {r["Name"] for r in out["data"]["RepoListWithNewestImage"]["Results"]} == {"ci/app"}
        out = _gql(c, '{ ImageList(repo: "") { Results { RepoName Digest } } }').json()
        assert {i["RepoName"] for i in out["data"]["ImageList"]["Results"]} == {"ci/app"}
        out = _gql(c, '{ GlobalSearch(query: "secret") { Repos { Name } } }').json()
        assert out["data"]["GlobalSearch"]["Repos"] == []
        out = _gql(c, '{ GlobalSearch(query: "carol/secret:") { Images { Tag Digest } } }').json()
        assert out["data"]["GlobalSearch"]["Images"] == []
        for query in ('{ ExpandedRepoInfo(repo: "carol/secret") { Images { Tag Digest } } }',
                      '{ ImageList(repo: "carol/secret") { Results { Digest } } }',
                      '{ Image(image: "carol/secret:v1") { Digest } }'):
            out = _gql(c, query).json()
            assert out["errors"] and "not found" in out["errors"][0]["message"], query
            assert "sha256:" not in json.dumps(out)
        r = c.put("/v2/_zot/ext/userprefs", params={"action": "toggleStar", "repo": "carol/secret"})
        assert r.status_code == 403
        # its own repository works as before
        r = c.put("/v2/_zot/ext/userprefs", params={"action": "toggleStar", "repo": "ci/app"})
        assert r.status_code == 200
        out = _gql(c, '{ ExpandedRepoInfo(repo: "ci/app") { Images { Tag } } }').json()
        assert out["data"]["ExpandedRepoInfo"]["Images"][0]["Tag"] == "v1"
