"""A tiny real HTTP registry that can lie (wrong bytes for a digest) or trickle a blob slowly.

It speaks just enough of the distribution API for a pull: ``/v2/``, manifests by tag and by
digest, blobs. Every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests import oci


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    def __init__(self) -> None:
        self.manifests: dict[str, dict[str, bytes]] = {}  # repo → reference → bytes
        self.blobs: dict[str, bytes] = {}
        #: digest → bytes served instead of the real ones
        self.lies: dict[str, bytes] = {}
        #: digest → seconds between two 64 KiB pieces
        self.slow: dict[str, float] = {}
        self.requests: list[tuple[str, str]] = []
        #: requests for manifests and blobs being answered now, the most at once, and when each started
        self.inflight = 0
        self.max_inflight = 0
        self.starts: list[float] = []
        self.lock = threading.Lock()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self.answer(head=True)

            def do_GET(self) -> None:
                self.answer(head=False)

            def answer(self, head: bool) -> None:
                with registry.lock:
                    registry.requests.append((self.command, self.path))
                parts = self.path.split("?")[0].split("/")
                if self.path in ("/v2/", "/v2"):
                    return self.send(200, b"{}", "application/json", head)
                if len(parts) < 5 or parts[1] != "v2":
                    return self.send(404, b"{}", "application/json", head)
                repo, kind, ref = "/".join(parts[2:-2]), parts[-2], parts[-1]
                with registry.lock:
                    registry.inflight += 1
                    registry.max_inflight = max(registry.max_inflight, registry.inflight)
                    registry.starts.append(time.monotonic())
                try:
                    self.content(repo, kind, ref, head)
                finally:
                    with registry.lock:
                        registry.inflight -= 1

            def content(self, repo: str, kind: str, ref: str, head: bool) -> None:
                if kind == "manifests":
                    body = registry.manifests.get(repo, {}).get(ref)
                    if body is None:
                        return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', "application/json", head)
                    served = registry.lies.get(ref, body)
                    return self.send(200, served, oci.OCI_MANIFEST, head, {"Docker-Content-Digest": sha256(body)})
                if kind == "blobs" and ref in registry.blobs:
                    served = registry.lies.get(ref, registry.blobs[ref])
                    return self.send(200, served, "application/octet-stream", head, delay=registry.slow.get(ref, 0.0))
                return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', "application/json", head)

            def send(self, status: int, body: bytes, content_type: str, head: bool,
                     headers: dict[str, str] | None = None, delay: float = 0.0) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if head:
                    return
                try:
                    for i in range(0, len(body), 65536):
                        self.wfile.write(body[i:i + 65536])
                        self.wfile.flush()
                        if delay:
                            time.sleep(delay)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_image(self, repo: str, tag: str, layer_size: int = 4096) -> tuple[str, list[str]]:
        """An image (config + one layer); (manifest digest, [config digest, layer digest])."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}).encode()
        layer = os.urandom(layer_size)
        body = oci.image_manifest(config, [layer])
        for blob in (config, layer):
            self.blobs[sha256(blob)] = blob
        self.manifests.setdefault(repo, {})[tag] = body
        self.manifests[repo][sha256(body)] = body
        return sha256(body), [sha256(config), sha256(layer)]

    def count(self, needle: str) -> int:
        with self.lock:
            return sum(1 for _, path in self.requests if needle in path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
