"""Zero-copy pulls (issue 17): blob bodies on plain HTTP/1.1 go from the file to the socket with sendfile.

A real cluster (`shardreg serve`, the gateway sharing the shards' filesystem) with metrics on: the
gateway's ``shardreg_http_zerocopy_sent_bytes_total`` counts exactly the body bytes it sent with
sendfile, so each test proves which path served it. Every answer is compared with the copying path
(HTTP/2 on the same cluster, h2c with prior knowledge) byte for byte: status, headers, body; a
multipart body only differs by its random boundary. TLS (HTTP/1.1 and HTTP/2) never uses sendfile.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import Cluster
from tests.integration.test_http2 import _self_signed
from tests.oci import digest, push_blob

METRICS = {"extensions": {"metrics": {"enable": True, "prometheus": {"path": "/metrics"}}}}
ZC = "shardreg_http_zerocopy_sent_bytes_total"
REPO = "zc/app"
#: Headers that legitimately differ between two answers to the same request.
VOLATILE = {"date", "x-request-id", "content-type", "server", "connection", "keep-alive"}


def metric(client: httpx.Client, name: str) -> float:
    text = client.get("/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, bytes, str]]:
    directory = tmp_path_factory.mktemp("zerocopy")
    with Cluster(directory / "data", config=METRICS, workers=1) as cluster:
        blob = os.urandom(24 * 1024 * 1024 + 4099)
        with httpx.Client(base_url=cluster.url, timeout=60) as client:
            assert push_blob(client, REPO, blob) == digest(blob)
        yield cluster, blob, digest(blob)


def same_answer(zero: httpx.Response, copied: httpx.Response) -> None:
    assert zero.status_code == copied.status_code
    assert zero.http_version == "HTTP/1.1" and copied.http_version == "HTTP/2"
    headers = {k: v for k, v in zero.headers.items() if k not in VOLATILE}
    assert headers == {k: v for k, v in copied.headers.items() if k not in VOLATILE}
    ztype, ctype = zero.headers.get("content-type", ""), copied.headers.get("content-type", "")
    if ztype.startswith("multipart/byteranges"):
        zb, cb = ztype.split("boundary=")[1], ctype.split("boundary=")[1]
        assert zero.content.replace(zb.encode(), b"B") == copied.content.replace(cb.encode(), b"B")
    else:
        assert ztype == ctype and zero.content == copied.content


def test_large_and_ranged_pulls_go_through_sendfile(plain: tuple[Cluster, bytes, str]) -> None:
    cluster, blob, d = plain
    url = f"/v2/{REPO}/blobs/{d}"
    size = len(blob)
    with httpx.Client(base_url=cluster.url, timeout=60) as h1, \
            httpx.Client(base_url=cluster.url, http1=False, http2=True, timeout=60) as h2:
        before = metric(h1, ZC)
        # The whole blob, twice on one kept-alive connection: the framing stays right after a sendfile.
        for _ in range(2):
            r = h1.get(url)
            assert r.status_code == 200 and r.content == blob and r.headers["content-length"] == str(size)
        assert metric(h1, ZC) - before == 2 * size
        # Ranges: a middle one, an open-ended one, a suffix, the last byte; each exactly those bytes.
        cases = {"bytes=1000-1048575": blob[1000:1048576], f"bytes={size - 5000}-": blob[size - 5000:],
                 "bytes=-777": blob[-777:], f"bytes={size - 1}-{size - 1}": blob[-1:],
                 "bytes=x": blob}  # a malformed Range is ignored: the whole blob, 200
        before = metric(h1, ZC)
        for header, want in cases.items():
            r = h1.get(url, headers={"Range": header})
            assert r.status_code == (200 if want is blob else 206) and r.content == want, header
            same_answer(r, h2.get(url, headers={"Range": header}))
        assert metric(h1, ZC) - before == sum(len(w) for w in cases.values())
        # Several ranges: multipart/byteranges, the parts sent with sendfile between the framing bytes.
        before = metric(h1, ZC)
        r = h1.get(url, headers={"Range": "bytes=0-99,5000000-5999999,-10"})
        assert r.status_code == 206 and r.headers["content-type"].startswith("multipart/byteranges")
        assert int(r.headers["content-length"]) == len(r.content)
        for part in (blob[:100], blob[5000000:6000000], blob[-10:]):
            assert part in r.content
        assert metric(h1, ZC) - before == 100 + 1000000 + 10
        same_answer(r, h2.get(url, headers={"Range": "bytes=0-99,5000000-5999999,-10"}))


def test_head_errors_and_http2_keep_the_copying_path(plain: tuple[Cluster, bytes, str]) -> None:
    cluster, blob, d = plain
    url = f"/v2/{REPO}/blobs/{d}"
    with httpx.Client(base_url=cluster.url, timeout=60) as h1, \
            httpx.Client(base_url=cluster.url, http1=False, http2=True, timeout=60) as h2:
        before = metric(h1, ZC)
        sent_before = metric(h1, "shardreg_http_sent_bytes_total")
        r = h1.head(url)
        assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == str(len(blob))
        same_answer(r, h2.head(url))
        missing = f"/v2/{REPO}/blobs/{digest(b'not here')}"
        for path, headers in ((missing, {}), (url, {"Range": f"bytes={len(blob)}-"}),
                              (f"/v2/{REPO}/blobs/sha256:abc", {})):
            r = h1.get(path, headers=headers)
            assert r.status_code >= 400, (path, headers, r.status_code)
            same_answer(r, h2.get(path, headers=headers))
        r = h2.get(url)
        assert r.http_version == "HTTP/2" and r.content == blob
        assert metric(h1, ZC) == before, "HEAD, errors and HTTP/2 must not use sendfile"
        assert metric(h1, "shardreg_http_sent_bytes_total") - sent_before >= len(blob)


def test_a_client_gone_mid_body_does_not_disturb_the_gateway(plain: tuple[Cluster, bytes, str]) -> None:
    cluster, blob, d = plain
    port = int(cluster.url.rsplit(":", 1)[1])
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(f"GET /v2/{REPO}/blobs/{d} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            got = s.recv(65536)
            assert got.startswith(b"HTTP/1.1 200")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    with httpx.Client(base_url=cluster.url, timeout=60) as h1:
        r = h1.get(f"/v2/{REPO}/blobs/{d}", headers={"Range": "bytes=10-19"})
        assert r.status_code == 206 and r.content == blob[10:20]
        assert h1.get(f"/v2/{REPO}/blobs/{d}").content == blob


def test_tls_never_uses_sendfile(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    config = {**METRICS, "http": {"tls": {"cert": str(cert), "key": str(key)}}}
    blob = os.urandom(3 * 1024 * 1024 + 11)
    with Cluster(tmp_path / "data", config=config, workers=1) as cluster:
        ctx = ssl.create_default_context(cafile=str(cert))
        for http2 in (False, True):
            with httpx.Client(base_url=cluster.url, verify=ctx, http2=http2, timeout=60) as client:
                if not http2:
                    push_blob(client, REPO, blob)
                r = client.get(f"/v2/{REPO}/blobs/{digest(blob)}")
                assert r.content == blob and r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
                r = client.get(f"/v2/{REPO}/blobs/{digest(blob)}", headers={"Range": "bytes=5-9"})
                assert r.status_code == 206 and r.content == blob[5:10]
                assert metric(client, ZC) == 0
                assert metric(client, "shardreg_http_sent_bytes_total") >= len(blob)
