"""Real upstream registries on loopback for the sync tests: CNCF Distribution with its access log."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.cluster import free_port

CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
{auth}"""

_LINE = re.compile(r'"(GET|HEAD|PUT|POST|PATCH|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


class Distribution:
    """``docker-registry serve`` on a free port; :meth:`requests` reads its access log."""

    def __init__(self, htpasswd: Path | None = None, tls: dict[str, Path] | None = None) -> None:
        """With ``htpasswd`` (bcrypt), every request needs Basic credentials; with ``tls`` (tlscerts.make_pki),
        HTTPS that requires a client certificate the CA signed (mTLS)."""
        self.tmp = Path(tempfile.mkdtemp(prefix="sync-upstream-"))
        self.port = free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        (self.tmp / "data").mkdir()
        auth = f"auth:\n  htpasswd:\n    realm: upstream\n    path: {htpasswd}\n" if htpasswd else ""
        if tls:
            auth = (f"  tls:\n    certificate: {tls['server_cert']}\n    key: {tls['server_key']}\n"
                    f"    clientcas:\n      - {tls['ca']}\n") + auth
        (self.tmp / "config.yml").write_text(CONFIG.format(root=self.tmp / "data", port=self.port, auth=auth))
        self.log_path = self.tmp / "registry.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Distribution:
        binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([binary, "serve", str(self.tmp / "config.yml")], stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.tmp)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.tls or httpx.get(self.url + "/v2/", timeout=1).status_code in (200, 401):
                    if self.tls:
                        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                            pass
                    return self
            except (httpx.HTTPError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def mark(self) -> int:
        """The access log's current length: :meth:`requests` after it counts only later lines."""
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def requests(self, since: int = 0) -> Counter[tuple[str, str, int]]:
        """(method, path, status) → how many times, from the access log."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            text = f.read().decode(errors="replace")
        return Counter((m.group(1), m.group(2).split("?")[0], int(m.group(3))) for m in _LINE.finditer(text))


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def sync_config(url: str, **registry: object) -> dict[str, object]:
    """A shardreg config whose ``extensions.sync`` pulls through from ``url`` (zot's format)."""
    entry: dict[str, object] = {"urls": [url], "onDemand": True, "tlsVerify": False}
    entry.update(registry)
    return {"distSpecVersion": "1.1.1", "storage": {"rootDirectory": "unused"},
            "http": {"address": "127.0.0.1", "port": "0"},
            "extensions": {"sync": {"enable": True, "registries": [entry]}}}


def env_without_proxy() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


def push_blob(client: httpx.Client, repo: str, data: bytes) -> str:
    """A monolithic upload that keeps the Location's query (Distribution's ``_state``)."""
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = client.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    location = r.headers["Location"]
    location += ("&" if "?" in location else "?") + f"digest={digest}"
    r = client.put(location, content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return digest


def push_image(client: httpx.Client, repo: str, tag: str | None, layers: int = 2, layer_size: int = 1024,
               **extra: object) -> tuple[str, bytes, list[bytes]]:
    """config + random layers + manifest into an upstream; (manifest digest, manifest, blobs)."""
    import json

    from tests import oci

    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "nonce": os.urandom(8).hex()}).encode()
    blobs = [config, *(os.urandom(layer_size) for _ in range(layers))]
    for blob in blobs:
        push_blob(client, repo, blob)
    body = oci.image_manifest(config, blobs[1:], **extra)
    d = oci.digest(body)
    r = client.put(f"/v2/{repo}/manifests/{tag or d}", content=body, headers={"Content-Type": oci.OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return d, body, blobs
