"""Blob pull, push (all upload forms), mount, range and delete, as the OCI suites check them."""

from __future__ import annotations

import hashlib
import os

import pytest

from common.ring import shard_for
from tests.oci import digest, push_blob

DUMMY = digest(b"hello world")

pytestmark = pytest.mark.inprocess  # handler behaviour: the in-process registry serves it (tests/inprocess.py)


def repo_on(shard: int, prefix: str, count: int = 2) -> str:
    for i in range(1000):
        name = f"{prefix}{i}"
        if shard_for(name, count) == shard:
            return name
    raise AssertionError("no name found")


def test_head_and_get_missing_blob_is_404(client):
    assert client.head(f"/v2/blobs-missing/blobs/{DUMMY}").status_code == 404
    r = client.get(f"/v2/blobs-missing/blobs/{DUMMY}")
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] in ("BLOB_UNKNOWN", "NAME_UNKNOWN")


def test_monolithic_post_with_digest_creates_blob(client):
    data = os.urandom(3000)
    d = digest(data)
    r = client.post("/v2/blobs/mono/blobs/uploads/", params={"digest": d}, content=data,
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/blobs/mono/blobs/{d}"
    assert r.headers["Docker-Content-Digest"] == d
    r = client.get(r.headers["Location"])
    assert r.status_code == 200 and r.content == data
    h = client.head(f"/v2/blobs/mono/blobs/{d}")
    assert h.status_code == 200
    assert h.headers["Content-Length"] == str(len(data))
    assert h.headers["Docker-Content-Digest"] == d
    assert h.content == b""


def test_monolithic_post_with_wrong_digest_is_400_and_stores_nothing(client):
    data = b"some bytes"
    wrong = digest(b"other bytes")
    r = client.post("/v2/blobs/mono/blobs/uploads/", params={"digest": wrong}, content=data)
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert client.head(f"/v2/blobs/mono/blobs/{wrong}").status_code == 404


def test_post_then_put_with_body(client):
    data = os.urandom(10_000)
    r = client.post("/v2/blobs/postput/blobs/uploads/")
    assert r.status_code == 202
    assert r.headers["Location"].startswith("/v2/blobs/postput/blobs/uploads/")
    assert r.headers["Range"] == "0-0"
    assert r.headers["Docker-Upload-UUID"] and r.headers["Blob-Upload-UUID"]
    assert int(r.headers["OCI-Chunk-Min-Length"]) >= 1
    r = client.put(r.headers["Location"], params={"digest": digest(data)}, content=data)
    assert r.status_code == 201
    assert r.headers["Location"]
    assert client.get(f"/v2/blobs/postput/blobs/{digest(data)}").content == data


def test_put_without_digest_or_with_bad_digest_is_400(client):
    loc = client.post("/v2/blobs/postput/blobs/uploads/").headers["Location"]
    assert client.put(loc, content=b"x").status_code == 400
    r = client.put(loc, params={"digest": "sha256:nothex"}, content=b"x")
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"


def test_streamed_patch_then_put(client):
    data = os.urandom(200_000)
    loc = client.post("/v2/blobs/stream/blobs/uploads/").headers["Location"]
    r = client.patch(loc, content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = client.put(r.headers["Location"], params={"digest": digest(data)})
    assert r.status_code == 201
    assert client.get(f"/v2/blobs/stream/blobs/{digest(data)}").content == data


def test_chunked_upload_with_out_of_order_and_retry(client):
    data = os.urandom(42)
    chunk1, chunk2 = data[:22], data[22:]
    r = client.post("/v2/blobs/chunked/blobs/uploads/", headers={"Content-Length": "0"})
    loc = r.headers["Location"]
    # out of order first
    r = client.patch(loc, content=chunk2, headers={"Content-Range": "22-41", "Content-Type": "application/octet-stream"})
    assert r.status_code == 416
    r = client.patch(loc, content=chunk1, headers={"Content-Range": "0-21", "Content-Length": "22",
                                                   "Content-Type": "application/octet-stream"})
    assert r.status_code == 202
    assert r.headers["Range"] == "0-21"
    first_location = loc
    loc = r.headers["Location"]
    # retrying the same chunk is out of order now
    assert client.patch(loc, content=chunk1, headers={"Content-Range": "0-21"}).status_code == 416
    # status of the upload, through the URL of the first POST (any earlier URL keeps working)
    r = client.get(first_location)
    assert r.status_code == 204
    assert r.headers["Range"] == "0-21"
    assert r.headers["Location"]
    r = client.patch(r.headers["Location"], content=chunk2, headers={"Content-Range": "22-41"})
    assert r.status_code == 202
    assert r.headers["Range"] == "0-41"
    r = client.put(r.headers["Location"], params={"digest": digest(data)})
    assert r.status_code == 201
    assert client.get(f"/v2/blobs/chunked/blobs/{digest(data)}").content == data


def test_chunked_upload_with_final_chunk_on_put(client):
    data = os.urandom(3 * 1024)
    loc = client.post("/v2/blobs/chunked/blobs/uploads/").headers["Location"]
    loc = client.patch(loc, content=data[:1024], headers={"Content-Range": "0-1023"}).headers["Location"]
    loc = client.patch(loc, content=data[1024:2048], headers={"Content-Range": "1024-2047"}).headers["Location"]
    r = client.put(loc, params={"digest": digest(data)}, content=data[2048:],
                   headers={"Content-Range": "2048-3071"})
    assert r.status_code == 201
    assert client.get(f"/v2/blobs/chunked/blobs/{digest(data)}").content == data


def test_content_range_that_does_not_match_body_is_rejected(client):
    loc = client.post("/v2/blobs/chunked/blobs/uploads/").headers["Location"]
    r = client.patch(loc, content=b"abc", headers={"Content-Range": "0-9"})
    assert r.status_code == 416
    # and the upload is still usable from offset 0
    r = client.patch(loc, content=b"abc", headers={"Content-Range": "0-2"})
    assert r.status_code == 202 and r.headers["Range"] == "0-2"


def test_wrong_digest_on_put_is_400(client):
    loc = client.post("/v2/blobs/wrong/blobs/uploads/").headers["Location"]
    r = client.put(loc, params={"digest": digest(b"not this")}, content=b"this")
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"


def test_cancel_upload(client):
    loc = client.post("/v2/blobs/cancel/blobs/uploads/").headers["Location"]
    client.patch(loc, content=b"partial")
    assert client.delete(loc).status_code == 204
    r = client.get(loc)
    assert r.status_code == 404
    assert r.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    assert client.delete(loc).status_code == 404


def test_unknown_upload_ids_are_404(client):
    for uuid in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", "ABCDEF00-0000-0000-0000-000000000000"):
        r = client.get(f"/v2/blobs/x/blobs/uploads/{uuid}")
        assert r.status_code == 404, uuid
        assert r.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    r = client.get("/v2/blobs/x/blobs/uploads/..%2F..%2Fetc%2Fpasswd")
    assert r.status_code in (400, 404) and r.json()["errors"]


def test_upload_belongs_to_its_repository(client):
    loc = client.post("/v2/blobs/owner/blobs/uploads/").headers["Location"]
    uuid = loc.rsplit("/", 1)[1]
    assert client.get(f"/v2/blobs/thief/blobs/uploads/{uuid}").status_code == 404
    assert client.put(f"/v2/blobs/thief/blobs/uploads/{uuid}", params={"digest": digest(b"")}).status_code == 404


def test_empty_blob(client):
    d = digest(b"")
    r = client.post("/v2/blobs/empty/blobs/uploads/", params={"digest": d}, content=b"")
    assert r.status_code == 201
    r = client.get(f"/v2/blobs/empty/blobs/{d}")
    assert r.status_code == 200 and r.content == b""
    assert client.head(f"/v2/blobs/empty/blobs/{d}").headers["Content-Length"] == "0"


@pytest.mark.parametrize("shards", ["same", "cross"])
def test_cross_repository_mount(client, shards):
    source = repo_on(0, f"mount-src-{shards}-")
    target = repo_on(0 if shards == "same" else 1, f"mount-dst-{shards}-")
    data = os.urandom(3 * 1024 * 1024 + 17)
    d = push_blob(client, source, data)
    assert client.head(f"/v2/{target}/blobs/{d}").status_code == 404
    r = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": d, "from": source})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/{target}/blobs/{d}"
    assert r.headers["Docker-Content-Digest"] == d
    r = client.get(f"/v2/{target}/blobs/{d}")
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == d.split(":")[1]
    # deleting the source does not affect the mounted copy
    assert client.delete(f"/v2/{source}/blobs/{d}").status_code == 202
    assert client.get(f"/v2/{target}/blobs/{d}").content == data


def test_mount_of_missing_blob_or_without_from_opens_an_upload(client):
    r = client.post("/v2/mount-miss/blobs/uploads/", params={"mount": DUMMY, "from": "nowhere"})
    assert r.status_code == 202
    assert r.headers["Location"].startswith("/v2/mount-miss/blobs/uploads/")
    r = client.post("/v2/mount-miss/blobs/uploads/", params={"mount": DUMMY})
    assert r.status_code == 202
    assert r.headers["Location"].startswith("/v2/mount-miss/blobs/uploads/")


def test_range_requests(client):
    data = os.urandom(2048)
    d = push_blob(client, "blobs/range", data)
    url = f"/v2/blobs/range/blobs/{d}"
    cases = {"bytes=500-1499": (500, 1500), "bytes=500-": (500, 2048), "bytes=-500": (1548, 2048),
             "bytes=2000-5000": (2000, 2048), "bytes=0-0": (0, 1)}
    for header, (start, end) in cases.items():
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.headers["Content-Range"] == f"bytes {start}-{end - 1}/2048"
        assert r.headers["Content-Length"] == str(end - start)
        assert r.content == data[start:end]
    for header in ("bytes=500-0", "bytes=5000-10000", "bytes=2048-", "bytes=-0"):
        r = client.get(url, headers={"Range": header})
        assert r.status_code == 416, header
        assert r.headers["Content-Range"] == "bytes */2048"
        assert int(r.headers["Content-Length"]) == len(r.content)
    assert client.get(url, headers={"Range": "items=0-1"}).status_code == 200


def test_blob_delete_is_atomic(client):
    d = push_blob(client, "blobs/delete", os.urandom(100))
    r = client.delete(f"/v2/blobs/delete/blobs/{d}")
    assert r.status_code == 202
    assert client.head(f"/v2/blobs/delete/blobs/{d}").status_code == 404
    assert client.delete(f"/v2/blobs/delete/blobs/{d}").status_code == 404


def test_sha512_blobs(client):
    data = os.urandom(5000)
    d = digest(data, "sha512")
    r = client.post("/v2/blobs/sha512/blobs/uploads/", params={"digest": d}, content=data)
    assert r.status_code == 201
    assert client.get(f"/v2/blobs/sha512/blobs/{d}").content == data
    # POST with digest-algorithm, chunked, then PUT with the sha512 digest
    loc = client.post("/v2/blobs/sha512/blobs/uploads/", params={"digest-algorithm": "sha512"}).headers["Location"]
    data2 = os.urandom(7000)
    loc = client.patch(loc, content=data2[:3000], headers={"Content-Range": "0-2999"}).headers["Location"]
    loc = client.patch(loc, content=data2[3000:], headers={"Content-Range": "3000-6999"}).headers["Location"]
    assert client.put(loc, params={"digest": digest(data2, "sha512")}).status_code == 201
    # an upload hashed as sha256 may still be committed as sha512 (re-hashed from disk)
    loc = client.post("/v2/blobs/sha512/blobs/uploads/").headers["Location"]
    data3 = os.urandom(999)
    assert client.put(loc, params={"digest": digest(data3, "sha512")}, content=data3).status_code == 201
    assert client.get(f"/v2/blobs/sha512/blobs/{digest(data3, 'sha512')}").content == data3
    # mounting by sha512 digest
    r = client.post("/v2/blobs/sha512-copy/blobs/uploads/", params={"mount": d, "from": "blobs/sha512"})
    assert r.status_code == 201


@pytest.mark.parametrize("bad", ["sha256:abc", "sha256:" + "g" * 64, "md5:" + "a" * 32, "sha512:" + "a" * 64,
                                 "nocolon", "sha256:" + "A" * 64])
def test_malformed_digests_are_400(client, bad):
    for method, url in (("GET", f"/v2/blobs/bad/blobs/{bad}"), ("DELETE", f"/v2/blobs/bad/blobs/{bad}")):
        r = client.request(method, url)
        assert r.status_code == 400, (method, bad, r.status_code)
        assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    r = client.post("/v2/blobs/bad/blobs/uploads/", params={"digest": bad}, content=b"x")
    assert r.status_code == 400


def test_large_blob_in_many_frames(client):
    data = os.urandom(9 * 1024 * 1024 + 123)
    loc = client.post("/v2/blobs/large/blobs/uploads/").headers["Location"]
    r = client.patch(loc, content=data)
    assert r.status_code == 202
    assert client.put(r.headers["Location"], params={"digest": digest(data)}).status_code == 201
    r = client.get(f"/v2/blobs/large/blobs/{digest(data)}")
    assert r.content == data


def test_multiple_ranges_answer_multipart_byteranges(client):
    data = os.urandom(4096)
    d = push_blob(client, "blobs/multirange", data)
    r = client.get(f"/v2/blobs/multirange/blobs/{d}", headers={"Range": "bytes=0-9, 100-199, -5"})
    assert r.status_code == 206
    content_type = r.headers["Content-Type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    assert int(r.headers["Content-Length"]) == len(r.content)
    boundary = content_type.split("boundary=")[1].encode()
    parts = r.content.split(b"--" + boundary)
    assert parts[-1] == b"--\r\n"
    bodies = []
    for part in parts[1:-1]:
        head, _, body = part.partition(b"\r\n\r\n")
        assert b"Content-Range: bytes " in head
        bodies.append(body.removesuffix(b"\r\n"))
    assert bodies == [data[0:10], data[100:200], data[-5:]]
