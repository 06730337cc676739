"""A fuzz of the manifest, GraphQL, blob and upload endpoints: hostile input is a 4xx, never a 5xx
nor a traceback in the logs (issue 10, "Tests and docs").

The inputs are generated from a fixed seed (reproducible), around the shapes that broke before:
deep nesting, huge alias counts, overlapping ranges, long names and references, and random
mutations of valid manifests and requests. In process: the real gateway app and shards, every
log record of both is inspected.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.extensions.fixtures import FULL_EXTENSIONS
from tests.inprocess import InProcessRegistry
from tests.oci import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, digest, push_blob, push_image

SEED = 20261206
ROUNDS = 60
SEARCH = "/v2/_zot/ext/search"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR or "Traceback" in record.getMessage():
            self.bad.append(record)


@pytest.fixture(scope="module")
def fuzz_registry() -> Iterator[tuple[httpx.Client, _Records, dict[str, Any]]]:
    records = _Records()
    root = logging.getLogger()
    root.addHandler(records)
    try:
        with InProcessRegistry(shards=2, config={"extensions": FULL_EXTENSIONS}) as registry:
            with registry.client(timeout=120) as c:
                seed: dict[str, Any] = {}
                seed["digest"], seed["manifest"] = push_image(c, "fuzz/base", "v1")
                seed["blob"] = os.urandom(4096)
                seed["blob_digest"] = push_blob(c, "fuzz/base", seed["blob"])
                yield c, records, seed
    finally:
        root.removeHandler(records)


def _deep(rng: random.Random) -> str:
    depth = rng.choice([65, 600, 1000, 5000, 10_000, 50_000])
    kind = rng.choice(["list", "object", "unbalanced", "mixed"])
    if kind == "list":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "0" + "}" * depth
    if kind == "unbalanced":
        return "[" * depth
    return '{"schemaVersion": 2, "layers": ' + '[{"x":' * depth + "1" + "}]" * depth + "}"


def _name(rng: random.Random) -> str:
    part = rng.choice(["a", "fuzz", "x" * 60, "A", "é", "..", "a-", "a__b", "%2F", "a.b"])
    name = "/".join([part] * rng.randint(1, 6))
    return rng.choice([name, "fuzz/" + "n" * rng.choice([200, 249, 250, 300, 5000]), "f/" * 200 + "z", name])


def _reference(rng: random.Random) -> str:
    return rng.choice(["v1", "t" * 128, "t" * 129, "sha256:" + "0" * 64, "sha512:" + "f" * 128, "sha256:zz",
                       "sha999:" + "1" * 64, "-x", "a" * 5000, "%00", "v1@sha256:" + "0" * 64])


def _mutated_manifest(rng: random.Random, valid: bytes) -> bytes:
    doc = json.loads(valid)
    for _ in range(rng.randint(1, 4)):
        mutation = rng.randrange(10)
        if mutation == 0:
            doc.pop(rng.choice(list(doc)), None)
        elif mutation == 1:
            doc["layers"] = [{**json.loads(valid)["layers"][0], "size": rng.choice([-1, 2**63, 2**70, "1", None, 1.5])}]
        elif mutation == 2:
            doc["config"] = {**json.loads(valid)["config"]}
            doc["config"]["digest"] = rng.choice(["sha512:" + "a" * 128, "sha256:" + "A" * 64, "", "x" * 10_000])
        elif mutation == 3:
            doc["annotations"] = {f"k{i}" * rng.randint(1, 50): "v" * rng.randint(0, 5000) for i in range(50)}
        elif mutation == 4:
            doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": rng.choice(["sha512:" + "b" * 128,
                                                                              "sha256:" + "c" * 64]), "size": 1}
        elif mutation == 5:
            doc["mediaType"] = rng.choice([OCI_INDEX, "application/x-evil", 7, None])
        elif mutation == 6:
            doc["manifests"] = [{"mediaType": OCI_MANIFEST, "digest": "sha256:" + "d" * 64, "size": 10,
                                 "platform": {"os": "linux", "features": [[[[]]]] * 10}}] * rng.randint(0, 300)
        elif mutation == 7:
            doc["layers"] = json.loads(valid)["layers"] * rng.randint(100, 2000)
        elif mutation == 8:
            doc["schemaVersion"] = rng.choice([1, 3, "2", None, True])
        else:
            doc["artifactType"] = rng.choice(["", "a" * 10_000, 1, {"x": []}])
    return json.dumps(doc).encode()


def _manifest_request(rng: random.Random, seed: dict[str, Any]) -> tuple[str, str, dict[str, str], bytes]:
    content_type = rng.choice([OCI_MANIFEST, OCI_INDEX, "application/json", "", "text/plain", "x" * 3000])
    body = rng.choice([_deep(rng).encode(), _mutated_manifest(rng, seed["manifest"]), os.urandom(64),
                       b"", b"null", b"[]", seed["manifest"]])
    name = rng.choice(["fuzz/base", "fuzz/m", _name(rng)])
    method = rng.choice(["PUT", "PUT", "PUT", "GET", "HEAD", "DELETE"])
    headers = {"Content-Type": content_type} if content_type else {}
    if method != "PUT":
        body = b""
        headers = {"Accept": rng.choice([OCI_MANIFEST, "*/*", "x" * 4000, ",".join([OCI_INDEX] * 500)])}
    return method, f"/v2/{name}/manifests/{_reference(rng)}", headers, body


def _graphql_request(rng: random.Random) -> tuple[str, str, dict[str, str], bytes]:
    field = rng.choice(['ImageList(repo: "")', 'GlobalSearch(query: "a")', 'ExpandedRepoInfo(repo: "fuzz/base")',
                        'ImageList(repo: "' + "r" * 5000 + '")', 'Image(image: "fuzz/base:v1")'])
    selection = rng.choice(["{ Page { TotalCount } }", "{ Results { RepoName Tag Digest } }",
                            "{ Summary { Name } }", "{ Repos { Name } }", "{ Digest }", ""])
    kind = rng.randrange(7)
    if kind == 0:  # aliases
        query = "{ " + " ".join(f"a{i}: {field} {selection}" for i in range(rng.choice([31, 200, 800, 5000]))) + " }"
    elif kind == 1:  # deep query
        depth = rng.choice([21, 200, 3000])
        query = "{ __schema { types { " + "fields { type { " * depth + "name" + " } }" * depth + " } } }"
    elif kind == 2:  # fragments that double at each level, or cycle
        n = rng.choice([10, 40])
        frags = ["fragment F0 on __Type { name kind }"] + [
            f"fragment F{i} on __Type {{ ...F{i - 1} ...F{i - 1} ofType {{ ...F{i - 1} }} }}" for i in range(1, n)]
        if rng.random() < 0.5:
            frags.append(f"fragment C on __Type {{ ...D }} fragment D on __Type {{ ...C ...F{n - 1} }}")
            query = "{ __schema { types { ...C } } } " + " ".join(frags)
        else:
            query = f"{{ __schema {{ types {{ ...F{n - 1} }} }} }} " + " ".join(frags)
    elif kind == 3:  # deep argument literals
        depth = rng.choice([50, 500, 5000])
        query = '{ ImageList(repo: "", requestedPage: ' + "{limit: " * depth + "1" + "}" * depth + ") { Page { TotalCount } } }"
    elif kind == 4:  # garbage
        query = "".join(rng.choice("{}()[]:@$!., \"\\aZ09#\n") for _ in range(rng.randint(1, 3000)))
    else:
        query = f"{{ {field} {selection} }}"
    if rng.random() < 0.3:
        return "GET", f"{SEARCH}?{urlencode({'query': query})[:60_000]}", {}, b""
    payload: Any = {"query": query}
    if rng.random() < 0.3:
        payload = json.loads(json.dumps(payload))
        body = json.dumps(payload)[:-1] + ', "variables": ' + _deep(rng) + "}"
        return "POST", SEARCH, {"Content-Type": "application/json"}, body.encode()
    if rng.random() < 0.1:
        return "POST", SEARCH, {"Content-Type": "application/json"}, _deep(rng).encode()
    return "POST", SEARCH, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _range_header(rng: random.Random, size: int) -> str:
    parts = []
    for _ in range(rng.choice([1, 2, 8, 64, 65, 500])):
        a = rng.choice([0, 1, size - 1, size, size + 10, 2**64, rng.randrange(size)])
        b = rng.choice([None, a, a + 100, size * 10, 2**70])
        parts.append(rng.choice([f"{a}-" if b is None else f"{a}-{b}", f"-{rng.choice([0, 1, size, 2**65])}",
                                 "0-", "x-y", ""]))
    return rng.choice(["bytes=", "bytes = ", "items=", "BYTES="]) + ",".join(parts)


def _blob_request(rng: random.Random, seed: dict[str, Any]) -> tuple[str, str, dict[str, str], bytes]:
    name = rng.choice(["fuzz/base", "fuzz/base", _name(rng)])
    d = rng.choice([seed["blob_digest"], seed["blob_digest"], _reference(rng)])
    return "GET", f"/v2/{name}/blobs/{d}", {"Range": _range_header(rng, len(seed["blob"]))}, b""


def _upload_requests(rng: random.Random, client: httpx.Client) -> list[tuple[str, str, dict[str, str], bytes]]:
    name = rng.choice(["fuzz/up", "fuzz/up", _name(rng)])
    params = rng.choice(["", f"?digest={_reference(rng)}", f"?mount={_reference(rng)}&from={_name(rng)}",
                         "?digest=" + "sha256:" + "e" * 64, "?mount=&from="])
    out = [("POST", f"/v2/{name}/blobs/uploads/{params}", {}, os.urandom(rng.choice([0, 10])))]
    r = client.post("/v2/fuzz/up/blobs/uploads/")
    location = r.headers["Location"]
    for _ in range(rng.randint(1, 4)):
        start = rng.choice([0, 0, 5, 2**63, -1])
        length = rng.choice([0, 10, 1000])
        end = rng.choice([start + length - 1, start, start - 5, 2**64])
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": rng.choice([f"{start}-{end}", f"bytes {start}-{end}/*", "garbage", "0-"])}
        out.append(("PATCH", location, headers, os.urandom(length)))
    final = rng.choice([f"?digest={_reference(rng)}", "?digest=" + digest(b""), "", "?digest=sha256:" + "0" * 64])
    out.append(("PUT", location + final, {"Content-Type": "application/octet-stream"}, os.urandom(rng.choice([0, 3]))))
    out.append((rng.choice(["GET", "DELETE", "PATCH"]), location.replace("-", "") + rng.choice(["", "x" * 300]), {}, b""))
    return out


def test_fuzz_endpoints_never_answer_5xx(fuzz_registry: tuple[httpx.Client, _Records, dict[str, Any]]) -> None:
    client, records, seed = fuzz_registry
    rng = random.Random(SEED)
    requests: list[tuple[str, str, dict[str, str], bytes]] = []
    for _ in range(ROUNDS):
        requests.append(_manifest_request(rng, seed))
        requests.append(_graphql_request(rng))
        requests.append(_blob_request(rng, seed))
        requests.extend(_upload_requests(rng, client))
    failures = []
    for method, url, headers, body in requests:
        r = client.request(method, url, headers=headers, content=body)
        if r.status_code >= 500:
            failures.append(f"{method} {url[:120]} {headers!r:.120} body {body[:60]!r}: {r.status_code} {r.text[:200]}")
        elif method == "GET" and "/blobs/" in url and r.status_code in (200, 206):
            assert len(r.content) <= len(seed["blob"]) + 64 * 1024, url  # ranges never multiply the bytes
    assert not failures, "\n".join(failures[:10])
    assert not records.bad, "\n".join(f"{r.name}: {r.getMessage()[:300]}" for r in records.bad[:10])
    # the registry still serves what it had
    r = client.get(f"/v2/fuzz/base/manifests/{seed['digest']}", headers={"Accept": OCI_MANIFEST})
    assert r.status_code == 200 and r.content == seed["manifest"]


def test_fuzz_manifest_with_deep_config_blob(fuzz_registry: tuple[httpx.Client, _Records, dict[str, Any]]) -> None:
    """A config blob nested 10,000 deep is stored as bytes; indexing it for search must not crash."""
    client, records, _ = fuzz_registry
    config = ('{"os": "linux", "x": ' + "[" * 10_000 + "]" * 10_000 + "}").encode()
    layer = os.urandom(32)
    for blob in (config, layer):
        push_blob(client, "fuzz/deepconfig", blob)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": OCI_CONFIG, "digest": digest(config), "size": len(config)},
                       "layers": [{"mediaType": OCI_LAYER, "digest": digest(layer), "size": 32}]}).encode()
    r = client.put("/v2/fuzz/deepconfig/manifests/v1", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    r = client.post(SEARCH, json={"query": '{ ImageList(repo: "fuzz/deepconfig") { Results { Tag } } }'})
    assert r.status_code == 200 and r.json()["data"]["ImageList"]["Results"] == [{"Tag": "v1"}]
    assert not records.bad, "\n".join(f"{r.name}: {r.getMessage()[:300]}" for r in records.bad[:10])
