"""Upload bodies through the shard's spool directory (issue 17, push-large): real processes.

A cluster whose gateway shares the shards' filesystem (the embedded default) writes a PATCH body
of more than 1 MiB to ``<shard>/spool/<uuid>.<start>`` instead of sending it over ZeroMQ; on plain
HTTP/1.1 with a Content-Length the server's body tap moves it there from the socket with
``splice``, and ``shardreg_http_body_tap_bytes_total`` counts those bytes, so each test proves
which path carried the body. What is stored must be exactly what was sent on every path, the
connection must stay usable (keep-alive, pipelining, 100-continue), and a client that leaves
mid-body must leave nothing behind.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster import Cluster
from tests.oci import digest

METRICS = {"extensions": {"metrics": {"enable": True, "prometheus": {"path": "/metrics"}}}}
TAPPED = "shardreg_http_body_tap_bytes_total"
MB = 1_000_000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("spool") / "data", shards=2, workers=1, config=METRICS) as c:
        yield c


def tapped(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == TAPPED)


def spool_files(cluster: Cluster) -> list[Path]:
    return [p for d in cluster.data.glob("shard-*/spool") for p in d.iterdir()]


def leftovers(cluster: Cluster) -> list[Path]:
    """Spool files still there after a moment (the shard removes them once a PATCH is over)."""
    deadline = time.monotonic() + 5
    while (files := spool_files(cluster)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return files


def start(client: httpx.Client, repo: str) -> str:
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202
    return r.headers["Location"]


def pulled(client: httpx.Client, repo: str, d: str) -> bytes:
    r = client.get(f"/v2/{repo}/blobs/{d}")
    assert r.status_code == 200
    return r.content


def connect(cluster: Cluster) -> socket.socket:
    host, port = cluster.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def read_answer(sock: socket.socket, buffered: bytes = b"") -> tuple[bytes, bytes]:
    """One HTTP/1.1 answer with a Content-Length body, and whatever followed it."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(rest) < length:
        rest += sock.recv(65536)
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def test_every_path_stores_exactly_the_bytes_sent(cluster: Cluster) -> None:
    repo = "spool/exact"
    with httpx.Client(base_url=cluster.url, timeout=60) as client, \
            httpx.Client(base_url=cluster.url, http1=False, http2=True, timeout=60) as h2:
        # Monolithic PUT with a Content-Length: tapped (all but what arrived with the headers).
        blob = os.urandom(5 * MB + 7)
        before = tapped(client)
        r = client.put(start(client, repo), params={"digest": digest(blob)}, content=blob)
        assert r.status_code == 201, r.text
        assert len(blob) - 1024 * 1024 <= tapped(client) - before <= len(blob)
        assert pulled(client, repo, digest(blob)) == blob

        # PATCHes: the first starts the upload (its spool file is adopted), the second is copied
        # into it, the third is small (frames over ZeroMQ); then a PUT without a body.
        parts = [os.urandom(3 * MB), os.urandom(2 * MB + 1), os.urandom(100)]
        whole = b"".join(parts)
        location, offset = start(client, repo), 0
        for part in parts:
            r = client.patch(location, content=part, headers={
                "Content-Range": f"{offset}-{offset + len(part) - 1}", "Content-Type": "application/octet-stream"})
            assert r.status_code == 202, r.text
            offset += len(part)
            assert r.headers["Range"] == f"0-{offset - 1}"
            location = r.headers["Location"]
        r = client.put(location, params={"digest": digest(whole)})
        assert r.status_code == 201, r.text
        assert pulled(client, repo, digest(whole)) == whole

        # Chunked transfer encoding (no Content-Length) and HTTP/2: no tap; spooled from memory.
        blob = os.urandom(6 * MB + 3)
        before = tapped(client)
        r = client.patch(start(client, repo), content=(blob[i:i + 100_000] for i in range(0, len(blob), 100_000)))
        assert r.status_code == 202 and r.headers["Range"] == f"0-{len(blob) - 1}", r.text
        assert client.put(r.headers["Location"], params={"digest": digest(blob)}).status_code == 201
        assert pulled(client, repo, digest(blob)) == blob
        blob2 = os.urandom(3 * MB)
        location = start(client, repo)
        r = h2.put(location, params={"digest": digest(blob2)}, content=blob2)
        assert r.status_code == 201 and r.http_version == "HTTP/2", r.text
        assert pulled(client, repo, digest(blob2)) == blob2
        assert tapped(client) == before

        # A wrong digest is refused as before: 400, nothing stored under it.
        wrong = digest(b"something else")
        r = client.put(start(client, repo), params={"digest": wrong}, content=os.urandom(2 * MB))
        assert r.status_code == 400 and r.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert client.head(f"/v2/{repo}/blobs/{wrong}").status_code == 404
    assert leftovers(cluster) == []


def test_kept_alive_and_pipelined_requests_follow_a_tapped_body(cluster: Cluster) -> None:
    repo = "spool/pipe"
    with httpx.Client(base_url=cluster.url, timeout=60) as client:
        location = start(client, repo)
        before = tapped(client)
    body = os.urandom(2 * MB + 11)
    sock = connect(cluster)
    # The PATCH, its body and the next request in one write: the tap must take exactly the body.
    sock.sendall(f"PATCH {location} HTTP/1.1\r\nHost: registry\r\nContent-Length: {len(body)}\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + body
                 + b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n\r\n")
    first, rest = read_answer(sock)
    assert first.startswith(b"HTTP/1.1 202"), first[:300]
    assert f"range: 0-{len(body) - 1}".encode() in first.lower()
    second, rest = read_answer(sock, rest)
    assert second.startswith(b"HTTP/1.1 200") and rest == b""
    # Expect: 100-continue on the same connection: the body is sent once the server asks for it.
    location2 = start(httpx.Client(base_url=cluster.url), repo)
    body2 = os.urandom(3 * MB)
    sock.sendall(f"PUT {location2}?digest={digest(body2)} HTTP/1.1\r\nHost: registry\r\n"
                 f"Content-Length: {len(body2)}\r\nExpect: 100-continue\r\n\r\n".encode())
    interim = sock.recv(65536)
    assert interim.startswith(b"HTTP/1.1 100"), interim
    sock.sendall(body2)
    third, rest = read_answer(sock, interim.split(b"\r\n\r\n", 1)[1])
    assert third.startswith(b"HTTP/1.1 201"), third[:300]
    sock.close()
    with httpx.Client(base_url=cluster.url, timeout=60) as client:
        assert tapped(client) - before >= len(body) + len(body2) - 2 * 1024 * 1024
        r = client.put(location, params={"digest": digest(body)})
        assert r.status_code == 201, r.text
        assert pulled(client, repo, digest(body)) == body
        assert pulled(client, repo, digest(body2)) == body2
    assert leftovers(cluster) == []


def test_a_client_leaving_mid_body_leaves_nothing_behind(cluster: Cluster) -> None:
    repo = "spool/gone"
    with httpx.Client(base_url=cluster.url, timeout=60) as client:
        location = start(client, repo)
        body = os.urandom(4 * MB)
        sock = connect(cluster)
        sock.sendall(f"PATCH {location} HTTP/1.1\r\nHost: registry\r\nContent-Length: {len(body)}\r\n"
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + body[:2_500_000])
        time.sleep(0.5)  # the gateway is splicing by now
        sock.close()
        deadline = time.monotonic() + 10
        while (r := client.get(location)).headers.get("Range") != "0-0" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r.status_code == 204 and r.headers["Range"] == "0-0"  # the PATCH was undone
        assert leftovers(cluster) == []
        # the upload takes the whole body afterwards
        r = client.patch(location, content=body, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202 and r.headers["Range"] == f"0-{len(body) - 1}", r.text
        assert client.put(r.headers["Location"], params={"digest": digest(body)}).status_code == 201
        assert pulled(client, repo, digest(body)) == body


def test_without_a_spool_directory_bodies_go_over_zeromq(cluster: Cluster) -> None:
    """As with a shard of an older version (no spool/) or one the gateway may not write: frames."""
    repo = "spool/none"
    spools = sorted(cluster.data.glob("shard-*/spool"))
    for directory in spools:
        directory.rmdir()
    try:
        with httpx.Client(base_url=cluster.url, timeout=60) as client:
            before = tapped(client)
            blob = os.urandom(5 * MB)
            r = client.put(start(client, repo), params={"digest": digest(blob)}, content=blob)
            assert r.status_code == 201, r.text
            chunked = os.urandom(3 * MB)
            r = client.patch(start(client, repo), content=(chunked[i:i + 65536] for i in range(0, len(chunked), 65536)))
            assert r.status_code == 202, r.text
            assert client.put(r.headers["Location"], params={"digest": digest(chunked)}).status_code == 201
            assert pulled(client, repo, digest(blob)) == blob
            assert pulled(client, repo, digest(chunked)) == chunked
            assert tapped(client) == before
    finally:
        for directory in spools:
            directory.mkdir(mode=0o700)


def test_skopeo_round_trips_an_image_with_a_large_layer(cluster: Cluster, tmp_path: Path) -> None:
    """A real client on the spool path: a 6 MB layer pushed and pulled back byte-exact."""
    import shutil
    import subprocess

    from tests.auth.test_skopeo import oci_layout

    skopeo = shutil.which("skopeo")
    assert skopeo, "skopeo is installed by .ci/run"
    src = oci_layout(tmp_path / "src", "v1", payload_size=6 * MB)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    target = f"docker://127.0.0.1:{cluster.port}/spool/skopeo:v1"

    def run(*args: str) -> None:
        r = subprocess.run([skopeo, "--insecure-policy", *args], capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr

    run("copy", "--dest-tls-verify=false", f"oci:{src}:v1", target)
    run("copy", "--src-tls-verify=false", target, f"oci:{tmp_path / 'out'}:v1")
    sent = {p.name: p.read_bytes() for p in (src / "blobs" / "sha256").iterdir()}
    assert max(len(b) for b in sent.values()) > 6 * MB  # the layer (gzip cannot shrink random bytes)
    for name, data in sent.items():  # layer, config and manifest, byte-exact
        assert (tmp_path / "out" / "blobs" / "sha256" / name).read_bytes() == data
    assert leftovers(cluster) == []
