"""Helpers of the resharding tests (issue 12): client load, fast repository creation, and a
read-only consistency check of every shard's LMDB and files after a resize."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import lmdb
import msgpack

from common.ring import shard_for
from tests.oci import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, digest

SHARED = b"shared layer of the resharding tests"
CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()


def tiny_manifest(layer: bytes = SHARED, nonce: str = "") -> bytes:
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": OCI_CONFIG, "digest": digest(CONFIG), "size": len(CONFIG)},
           "layers": [{"mediaType": OCI_LAYER, "digest": digest(layer), "size": len(layer)}],
           "annotations": {"nonce": nonce}}
    return json.dumps(doc).encode()


def put_manifest(client: httpx.Client, repo: str, tag: str, body: bytes) -> httpx.Response:
    return client.put(f"/v2/{repo}/manifests/{tag}", content=body, headers={"Content-Type": OCI_MANIFEST})


def make_repos(url: str, names: list[str], threads: int = 8) -> None:
    """One tiny manifest per repository, fast: an empty image index (no blobs), one PUT each."""
    def part(chunk: list[str]) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for name in chunk:
                body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [],
                                   "annotations": {"name": name}}).encode()
                r = client.put(f"/v2/{name}/manifests/v1", content=body, headers={"Content-Type": OCI_INDEX})
                assert r.status_code == 201, r.text

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(part, [names[i::threads] for i in range(threads)]))


class Load:
    """``clients`` threads pushing and pulling small images while a resize runs.

    Records every answer ≥ 500, every 404 for an image acknowledged before the pull began, and
    the pushes acknowledged (to pull them all at the end)."""

    def __init__(self, url: str, clients: int = 8, repos: int = 24, seed: int = 0) -> None:
        self.url, self.clients = url, clients
        self.repos = [f"load/app{i}" for i in range(repos)]
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked: dict[tuple[str, str], tuple[str, bytes, list[bytes]]] = {}
        self.errors: list[str] = []
        self.requests = 0
        self.max_pause: dict[str, float] = {}
        self.random = random.Random(seed)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _note(self, what: str, r: httpx.Response) -> None:
        with self.lock:
            self.requests += 1
            if r.status_code >= 500:
                self.errors.append(f"{what}: {r.status_code} {r.text[:200]}")

    def _run(self, index: int) -> None:
        rng = random.Random(index)
        with httpx.Client(base_url=self.url, timeout=60) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                repo = rng.choice(self.repos)
                try:
                    if rng.random() < 0.5 or not self.acked:
                        self._push(client, repo, f"c{index}-{n}", rng)
                    else:
                        with self.lock:
                            key = rng.choice(list(self.acked))
                        self._pull(client, key)
                except httpx.TransportError as exc:
                    # recorded, and the client goes on (it used to end the thread unseen): only a
                    # test that kills a gateway process expects these
                    with self.lock:
                        self.errors.append(f"connection: {type(exc).__name__}: {exc}")

    def _push(self, client: httpx.Client, repo: str, tag: str, rng: random.Random) -> None:
        layer = rng.randbytes(2048)
        for blob in (CONFIG, layer):
            d = digest(blob)
            r = client.post(f"/v2/{repo}/blobs/uploads/")
            self._note("upload start", r)
            if r.status_code != 202:
                return
            r = client.put(r.headers["Location"], params={"digest": d}, content=blob,
                           headers={"Content-Type": "application/octet-stream"})
            self._note("upload put", r)
            if r.status_code != 201:
                return
        body = tiny_manifest(layer, tag)
        started = time.monotonic()
        r = put_manifest(client, repo, tag, body)
        pause = time.monotonic() - started
        self._note("manifest put", r)
        if r.status_code == 201:
            with self.lock:
                self.acked[(repo, tag)] = (digest(body), body, [layer])
                self.max_pause[repo] = max(self.max_pause.get(repo, 0.0), pause)

    def _pull(self, client: httpx.Client, key: tuple[str, str]) -> None:
        repo, tag = key
        expected, body, layers = self.acked[key]
        r = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
        self._note("manifest get", r)
        if r.status_code == 404:
            with self.lock:
                self.errors.append(f"404 for acknowledged {repo}:{tag}")
            return
        if r.status_code == 200 and r.content != body:
            with self.lock:
                self.errors.append(f"{repo}:{tag}: other bytes")
        r = client.get(f"/v2/{repo}/blobs/{digest(layers[0])}")
        self._note("blob get", r)
        if r.status_code == 404 or (r.status_code == 200 and r.content != layers[0]):
            with self.lock:
                self.errors.append(f"blob of {repo}:{tag}: {r.status_code}")

    def verify_all(self) -> None:
        """Every acknowledged push is pullable, byte for byte."""
        with httpx.Client(base_url=self.url, timeout=60) as client:
            for (repo, tag), (_, body, layers) in self.acked.items():
                r = client.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
                assert r.status_code == 200 and r.content == body, (repo, tag, r.status_code)
                r = client.get(f"/v2/{repo}/blobs/{digest(layers[0])}")
                assert r.status_code == 200 and r.content == layers[0], (repo, tag, r.status_code)


def _open(path: Path) -> tuple[Any, dict[str, Any]]:
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=16)
    names = ("repos", "manifests", "links", "blobs", "moves", "system")
    return env, {n: env.open_db(n.encode(), create=False) for n in names}


def check_shards(data: Path, shards: int, seed: int = 0) -> dict[int, set[str]]:
    """After a cluster stopped: each active shard's data is whole and each name on its owner.

    Every manifest's blobs are linked in its repository, every blob record has its file with the
    right digest, every blob file has a record (or is noted by a purge that was stopped between
    its commit and the file's removal: the shard removes it when it starts), no copy is left in
    ``uploads/``, no move record remains. Returns the repositories each shard owns."""
    owned: dict[int, set[str]] = {}
    for index in range(shards):
        root = data / f"shard-{index}"
        env, db = _open(root / "meta")
        owned[index] = set()
        with env.begin() as txn:
            assert txn.stat(db["moves"])["entries"] == 0, f"shard {index}: move records left"
            repos = [bytes(k).decode() for k, _ in txn.cursor(db["repos"])]
            for repo in repos:
                if shard_for(repo, shards, seed) == index:
                    owned[index].add(repo)
            for k, v in txn.cursor(db["manifests"]):
                repo, mdigest = bytes(k).decode().split("\0", 1)
                record = msgpack.unpackb(v, raw=False)
                for blob in record.get("blobs") or []:
                    assert txn.get(f"{repo}\0{blob}".encode(), db=db["links"]) is not None, \
                        f"shard {index}: {repo}@{mdigest} references {blob}, not linked"
            records = {bytes(k).decode() for k, _ in txn.cursor(db["blobs"])}
            # files a purge freed and noted, removed right after it (or at the next start): tracked
            noted = txn.get(b"cluster/purge-files", db=db["system"])
            pending = set(msgpack.unpackb(noted, raw=False)) if noted else set()
        env.close()
        files = set()
        for path in (root / "blobs").rglob("*"):
            if path.is_file():
                files.add(f"{path.parent.parent.name}:{path.name}")
        assert files - pending == records, f"shard {index}: files without records {files - records - pending}, " \
                                           f"records without files {records - files}"
        for d in records:
            alg, hexpart = d.split(":", 1)
            content = (root / "blobs" / alg / hexpart[:2] / hexpart).read_bytes()
            assert hashlib.new(alg, content).hexdigest() == hexpart, f"shard {index}: {d} damaged"
        leftovers = [p.name for p in (root / "uploads").iterdir() if p.name.startswith("move-")]
        assert not leftovers, f"shard {index}: copies left in uploads/: {leftovers}"
    return owned


def fence_ok(status: dict[str, Any]) -> float:
    return float(status["progress"]["fence"]["p99"])


__all__ = ["Load", "check_shards", "make_repos", "os"]
