"""Blob bytes stream end to end: pushing and pulling a 1 GiB blob keeps every process's RSS
within ~100 MiB of its idle size (gateway workers and shards)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.cluster import Cluster

BLOB_SIZE = 1024 * 1024 * 1024
CHUNK = 1024 * 1024
ALLOWED_GROWTH = 100 * 1024 * 1024


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Sampler(threading.Thread):
    def __init__(self, pids: list[int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = {pid: rss(pid) for pid in pids}
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            for pid in self.pids:
                try:
                    self.peak[pid] = max(self.peak[pid], rss(pid))
                except OSError:
                    pass
            time.sleep(0.05)


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("memory") / "data") as c:
        yield c


def test_one_gib_push_and_pull_in_bounded_memory(big):
    pids = [p for p in descendants(big.process.pid)
            if "resource_tracker" not in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]
    assert len(pids) >= 4  # 2 shards, gateway master, 2 workers
    with httpx.Client(base_url=big.url, timeout=120) as client:
        # warm up every process so that idle sizes include imports and buffers
        for _ in range(4):
            client.get("/v2/_catalog")
        idle = {pid: rss(pid) for pid in pids}
        sampler = Sampler(pids)
        sampler.start()
        pattern = os.urandom(CHUNK)
        hasher = hashlib.sha256()

        def body():
            for i in range(BLOB_SIZE // CHUNK):
                chunk = pattern[i % 7:] + pattern[: i % 7]
                hasher.update(chunk)
                yield chunk

        loc = client.post("/v2/memory/big/blobs/uploads/").headers["Location"]
        r = client.patch(loc, content=body(), headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        digest = "sha256:" + hasher.hexdigest()
        r = client.put(r.headers["Location"], params={"digest": digest})
        assert r.status_code == 201, r.text
        pulled = hashlib.sha256()
        size = 0
        with client.stream("GET", f"/v2/memory/big/blobs/{digest}") as response:
            assert response.status_code == 200
            for data in response.iter_bytes(CHUNK):
                pulled.update(data)
                size += len(data)
        sampler.stop_event.set()
        sampler.join()
    assert size == BLOB_SIZE
    assert "sha256:" + pulled.hexdigest() == digest
    growth = {pid: sampler.peak[pid] - idle[pid] for pid in pids}
    assert max(growth.values()) < ALLOWED_GROWTH, {p: g // 1024 // 1024 for p, g in growth.items()}
