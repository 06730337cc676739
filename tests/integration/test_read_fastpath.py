"""The read fast path (gateway/distribution/reads.py): blob and manifest GET/HEAD served without Quart
answer exactly what the Quart views answer, and everything else still goes to Quart."""

from __future__ import annotations

import hashlib
import json
import re

import httpx
import pytest

from gateway.body_guard import call_with_body_guard
from tests.inprocess import BASE_URL, call_asgi

pytestmark = pytest.mark.inprocess


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


LAYER = b"0123456789" * 100
CONFIG = b'{"architecture":"amd64","os":"linux"}'
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(CONFIG), "size": len(CONFIG)},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(LAYER), "size": len(LAYER)}],
}).encode()
OCI = "application/vnd.oci.image.manifest.v1+json"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
B, M, MISSING = _digest(LAYER), _digest(MANIFEST), _digest(b"missing")

#: (method, path, headers): served by the fast path
FAST = [
    ("GET", f"/v2/fast/app/blobs/{B}", {}), ("HEAD", f"/v2/fast/app/blobs/{B}", {}),
    ("GET", f"/v2/fast/app/blobs/{MISSING}", {}), ("HEAD", f"/v2/fast/app/blobs/{MISSING}", {}),
    ("GET", "/v2/fast/app/blobs/sha256:nothex", {}), ("GET", "/v2/fast/app/blobs/notadigest", {}),
    ("GET", f"/v2/nosuchrepo/blobs/{B}", {}),
    ("GET", f"/v2/fast/app/blobs/{B}", {"Range": "bytes=0-9"}),
    ("GET", f"/v2/fast/app/blobs/{B}", {"Range": "bytes=0-9,20-29"}),
    ("GET", f"/v2/fast/app/blobs/{B}", {"Range": "bytes=5000-6000"}),
    ("HEAD", f"/v2/fast/app/blobs/{B}", {"Range": "bytes=0-9"}),
    ("GET", "/v2/fast/app/manifests/v1", {}), ("HEAD", "/v2/fast/app/manifests/v1", {}),
    ("GET", f"/v2/fast/app/manifests/{M}", {}), ("GET", "/v2/fast/app/manifests/v2", {}),
    ("GET", "/v2/fast/app/manifests/bad..ref", {}), ("GET", "/v2/fast/app/manifests/sha256:zz", {}),
    ("GET", "/v2/fast/app/manifests/v1", {"Accept": DOCKER}),
    ("GET", "/v2/fast/app/manifests/v1", {"Accept": f"{DOCKER}, {OCI}"}),
]
#: left to Quart: another method, a name that is not one, a trailing slash
SLOW = [
    ("GET", f"/v2/Fast/app/blobs/{B}", {}), ("GET", "/v2/fast/app/manifests/v1/", {}),
    ("POST", "/v2/fast/app/manifests/v1", {}), ("DELETE", "/v2/fast/app/manifests/sha256:zz", {}),
    ("GET", f"/v2//fast/blobs/{B}", {}),
]


@pytest.fixture(scope="module")
def pushed(inprocess):
    with inprocess.client() as client:
        for blob in (LAYER, CONFIG):
            assert client.post("/v2/fast/app/blobs/uploads/", params={"digest": _digest(blob)},
                               content=blob).status_code == 201
        assert client.put("/v2/fast/app/manifests/v1", content=MANIFEST,
                          headers={"Content-Type": OCI}).status_code == 201
    return inprocess


def _normalized(answer: tuple[int, list[tuple[bytes, bytes]], bytes]) -> tuple[int, list, bytes]:
    status, headers, body = answer
    kind = dict(headers).get(b"content-type", b"")
    found = re.search(rb"boundary=([0-9a-f]+)", kind)  # multipart/byteranges: a random boundary
    boundary = found.group(1) if found else None
    kept = sorted((k, v.replace(boundary, b"B") if boundary else v) for k, v in headers if k != b"x-request-id")
    return status, kept, body.replace(boundary, b"B") if boundary else body


def _serve(registry, app, method: str, path: str, headers: dict[str, str]):
    request = httpx.Request(method, BASE_URL + path, headers=headers)
    return _normalized(registry.run(call_asgi(app, request, [])))


@pytest.mark.parametrize(("method", "path", "headers"), FAST)
def test_the_fast_path_answers_what_quart_answers(pushed, method, path, headers):
    gateway = pushed.app
    quart = gateway.quart

    async def quart_app(scope, receive, send):
        await call_with_body_guard(quart, scope, receive, send)

    async def no_quart(scope, receive, send):
        raise AssertionError(f"{method} {path} reached Quart")

    expected = _serve(pushed, quart_app, method, path, headers)
    gateway.quart = no_quart
    try:
        got = _serve(pushed, gateway, method, path, headers)
    finally:
        gateway.quart = quart
    assert got == expected
    if path == f"/v2/fast/app/blobs/{B}" and method == "GET" and not headers:
        assert got[0] == 200 and got[2] == LAYER, got


@pytest.mark.parametrize(("method", "path", "headers"), SLOW)
def test_other_requests_still_go_to_quart(pushed, method, path, headers):
    gateway = pushed.app
    quart, reached = gateway.quart, []

    async def counting(scope, receive, send):
        reached.append(scope["path"])
        await quart(scope, receive, send)

    gateway.quart = counting
    try:
        status = _serve(pushed, gateway, method, path, headers)[0]
    finally:
        gateway.quart = quart
    assert reached == [path] and status >= 400


def test_the_fast_paths_requests_may_run_in_their_connections_task(pushed):
    """gateway/inline_requests.py asks the app: its read fast path's requests, and nothing else."""
    gateway = pushed.app
    for method, path, _ in FAST:
        assert gateway.serves_inline({"type": "http", "method": method, "path": path}), (method, path)
    for method, path, _ in SLOW:
        assert not gateway.serves_inline({"type": "http", "method": method, "path": path}), (method, path)
