"""Bad input gets a clear OCI error, never a 500, and never harms what is stored."""

from __future__ import annotations

import json
import os
import socket

import pytest

from tests.oci import OCI_MANIFEST, digest, push_image

BAD_NAMES = ["UPPER/case", "a//b", "-lead", "trail-", "a/", "a..b", "x" * 256, "%2e%2e/etc"]


@pytest.mark.inprocess
@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_repository_names(client, name):
    for method, path in (("GET", "tags/list"), ("GET", "manifests/latest"), ("POST", "blobs/uploads/"),
                         ("GET", f"blobs/{digest(b'x')}")):
        r = client.request(method, f"/v2/{name}/{path}")
        assert 400 <= r.status_code < 500, (name, method, path, r.status_code)
        assert r.json()["errors"], r.text


@pytest.mark.inprocess
@pytest.mark.parametrize("tag", ["-bad", "a" * 129, "tag with space", "tag!"])
def test_invalid_tags(client, tag):
    d, body = push_image(client, "errors/tags", "good")
    r = client.put(f"/v2/errors/tags/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code in (400, 404), r.status_code
    assert r.json()["errors"]


@pytest.mark.inprocess
def test_unknown_routes_and_methods_get_oci_errors(client):
    r = client.get("/v2/nothing/here")
    assert r.status_code == 404 and r.json()["errors"]
    r = client.post("/v2/errors/x/manifests/latest")
    assert r.status_code == 405 and r.json()["errors"]
    r = client.patch("/v2/errors/x/blobs/uploads/")
    assert r.status_code == 405 and r.json()["errors"]


@pytest.mark.inprocess
def test_error_body_shape(client):
    r = client.get("/v2/errors/none/manifests/latest")
    body = r.json()
    assert set(body) == {"errors"}
    err = body["errors"][0]
    assert {"code", "message", "detail"} <= set(err)
    assert r.headers["Content-Type"].startswith("application/json")


@pytest.mark.inprocess
def test_bad_manifest_does_not_harm_stored_one(client):
    d, body = push_image(client, "errors/keep", "stable")
    for bad in (b"{", b"null", json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()):
        r = client.put("/v2/errors/keep/manifests/stable", content=bad, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 400
    r = client.get("/v2/errors/keep/manifests/stable")
    assert r.status_code == 200 and r.content == body


@pytest.mark.inprocess
def test_fuzzed_requests_never_500(client):
    rng = os.urandom
    paths = ["/v2/", "/v2/_catalog", "/v2/f/manifests/x", "/v2/f/blobs/uploads/", "/v2/f/tags/list",
             "/v2/f/referrers/sha256:" + "a" * 64]
    for i in range(120):
        path = paths[i % len(paths)]
        query = {"n": rng(3).hex(), "last": rng(5).hex(), "digest": rng(4).hex(), "mount": rng(4).hex(),
                 "from": "A" * (i % 3)}
        headers = {"Content-Type": ["application/json", OCI_MANIFEST, "text/plain"][i % 3],
                   "Range": f"bytes={i}-{i // 2}", "Content-Range": f"{i}-{i - 1}", "Accept": rng(4).hex()}
        method = ["GET", "PUT", "POST", "PATCH", "DELETE", "HEAD"][i % 6]
        r = client.request(method, path, params=query, headers=headers, content=rng(i * 7 + 100_000 * (i % 2)))
        assert r.status_code < 500, (method, path, r.status_code, r.text)


def test_aborted_upload_leaves_no_trace(cluster, client):
    loc = client.post("/v2/errors/abort/blobs/uploads/").headers["Location"]
    host, port = "127.0.0.1", cluster.port
    payload = os.urandom(300_000)
    with socket.create_connection((host, port)) as s:
        s.sendall(f"PATCH {loc} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n"
                  f"Content-Type: application/octet-stream\r\n\r\n".encode())
        # the 100 comes once the gateway reads the body: without waiting for it, the PATCH could
        # reach the shard after the PUT below and make the PUT's commit meet "a write in progress"
        s.settimeout(10)
        assert s.recv(4096).startswith(b"HTTP/1.1 100")
        s.sendall(payload)
    # the connection dropped mid-body: the upload is still at offset 0 and usable
    import time

    for _ in range(50):
        r = client.get(loc)
        if r.status_code == 204 and r.headers["Range"] == "0-0":
            break
        time.sleep(0.1)
    assert r.status_code == 204 and r.headers["Range"] == "0-0"
    data = os.urandom(1000)
    r = client.put(loc, params={"digest": digest(data)}, content=data)
    assert r.status_code == 201, r.text
    assert client.get(f"/v2/errors/abort/blobs/{digest(data)}").content == data


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(request)
        s.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


@pytest.mark.parametrize("path", ["/v2/a/../../etc/blobs/uploads/", "/v2/../shard-0/blobs/uploads/",
                                  "/v2/a/..%2F..%2Fmeta/tags/list", "/v2/a/%2e%2e/b/manifests/latest"])
def test_path_traversal_is_rejected(cluster, path):
    method = "POST" if path.endswith("uploads/") else "GET"
    answer = raw_request(cluster.port, f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                                       f"Connection: close\r\n\r\n".encode())
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, (path, answer[:200])


def test_request_smuggling_style_headers(client):
    r = client.put("/v2/errors/cl/manifests/x", content=b"{}", headers={"Content-Type": OCI_MANIFEST,
                                                                         "Content-Length": "2"})
    assert r.status_code == 400
