"""Connections that cost the gateway nothing once the client is gone or too slow (issue 10, items 13, 14).

Real processes: this is about Hypercorn's sockets, which the in-process registry does not have.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster import Cluster

READ_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def slow_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    config = {"http": {"readTimeout": f"{READ_TIMEOUT:g}s"}}
    with Cluster(tmp_path_factory.mktemp("connections") / "data", shards=1, workers=1, config=config) as c:
        yield c


def _connect(cluster: Cluster) -> socket.socket:
    host, port = cluster.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; fails the test if it is still open after ``limit``."""
    started, data = time.monotonic(), b""
    sock.settimeout(limit)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pytest.fail(f"the gateway held the connection for more than {limit}s (got {data[:80]!r})")
    return data, time.monotonic() - started


def test_half_closed_connection_is_closed_at_once(slow_cluster: Cluster) -> None:
    sock = _connect(slow_cluster)
    sock.shutdown(socket.SHUT_WR)  # sends nothing, half-closes
    data, elapsed = _read_until_closed(sock, 10)
    assert data == b"" and elapsed < 5  # was held for the keep-alive timeout (75 s)
    sock.close()
    # a request followed by a half-close is answered, then the connection closes
    sock = _connect(slow_cluster)
    sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n\r\n")
    sock.shutdown(socket.SHUT_WR)
    data, elapsed = _read_until_closed(sock, 10)
    assert data.startswith(b"HTTP/1.1 200") and elapsed < 5
    sock.close()


def _start_upload(cluster: Cluster) -> str:
    r = httpx.post(f"{cluster.url}/v2/slow/loris/blobs/uploads/")
    assert r.status_code == 202
    return r.headers["Location"]


def _patch_head(location: str, length: int) -> bytes:
    return (f"PATCH {location} HTTP/1.1\r\nHost: registry\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


@pytest.mark.parametrize("length", [1_000_000, 3_000_000], ids=["asgi-body", "tapped-body"])
def test_trickling_upload_body_is_abandoned(slow_cluster: Cluster, length: int) -> None:
    """Read as ASGI messages, or (above 1 MiB on plain HTTP/1.1) spliced by the body tap: the same rule."""
    location = _start_upload(slow_cluster)
    sock = _connect(slow_cluster)
    sock.sendall(_patch_head(location, length))
    started = time.monotonic()
    sock.settimeout(0.25)
    answer = b""
    while time.monotonic() - started < 20:  # 4 bytes/s, far below the minimum rate
        try:
            sock.sendall(b"x")
        except OSError:
            break
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        answer += chunk
        if not chunk:
            break
    elapsed = time.monotonic() - started
    sock.close()
    assert elapsed < 4 * READ_TIMEOUT, f"trickling body held for {elapsed:.1f}s"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    # the upload session itself is still usable: the abandoned PATCH was undone
    r = httpx.get(f"{slow_cluster.url}{location}")
    assert r.status_code == 204 and r.headers["Range"] == "0-0"


def test_slow_but_steady_upload_body_is_accepted(slow_cluster: Cluster) -> None:
    location = _start_upload(slow_cluster)
    body = b"y" * (24 * 1024)
    sock = _connect(slow_cluster)
    sock.sendall(_patch_head(location, len(body)))
    for offset in range(0, len(body), 2048):  # ~8 KiB/s for 3 s: slow, but above the minimum rate
        sock.sendall(body[offset:offset + 2048])
        time.sleep(0.25)
    sock.settimeout(10)
    answer = sock.recv(65536)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]
    r = httpx.get(f"{slow_cluster.url}{location}")
    assert r.headers["Range"] == f"0-{len(body) - 1}"
