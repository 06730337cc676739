"""Keep-alive connections spread over the gateway's workers (issue 17, head-check and pull-small).

Every worker shares the one listening socket; a worker that woke up used to accept every queued
connection at once, so a burst of clients (a CI fleet, the bench) ended up on one worker while the
other idled. Counted here from the kernel's own tables: which worker process holds each
established connection to the registry's port.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.cluster import Cluster


def _established_inodes(port: int) -> set[str]:
    """Socket inodes of established TCP connections whose local port is ``port`` (IPv4 and IPv6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def _workers(cluster: Cluster) -> list[int]:
    """The gateway's worker processes (children of the gateway process)."""
    gateway = cluster.children()["gateway"]
    children = [int(pid) for pid in Path(f"/proc/{gateway}/task/{gateway}/children").read_text().split()]
    # the spawned workers, not multiprocessing's resource tracker
    return [pid for pid in children if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]


def connections_per_worker(cluster: Cluster) -> dict[int, int]:
    inodes = _established_inodes(cluster.port)
    counts = {}
    for pid in _workers(cluster):
        held = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
        counts[pid] = held
    return counts


async def _open_burst(port: int, n: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``n`` keep-alive connections opened at the same moment, each answered once (so accepted)."""

    async def one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /v2/ HTTP/1.1\r\nHost: registry\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        return reader, writer

    return list(await asyncio.gather(*(one() for _ in range(n))))


def _wait_until_both_serve(cluster: Cluster, timeout: float = 30) -> None:
    """The cluster answers as soon as one worker is up; wait until the other one serves too."""
    deadline = time.monotonic() + timeout

    async def pair() -> dict[int, int]:
        held = await _open_burst(cluster.port, 2)
        try:
            return connections_per_worker(cluster)
        finally:
            for _, writer in held:
                writer.close()

    while time.monotonic() < deadline:
        if sorted(asyncio.run(pair()).values()) == [1, 1]:
            return
        time.sleep(0.2)
    raise AssertionError("the second worker never took a connection")


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    with Cluster(tmp_path_factory.mktemp("spread") / "data", shards=1, workers=2) as cluster:
        _wait_until_both_serve(cluster)
        yield cluster


@pytest.mark.parametrize("clients", [8, 32])
def test_a_burst_of_connections_spreads_over_both_workers(two_workers, clients):
    async def scenario() -> dict[int, int]:
        held = await _open_burst(two_workers.port, clients)
        try:
            return connections_per_worker(two_workers)
        finally:
            for _, writer in held:
                writer.close()

    counts = asyncio.run(scenario())
    assert len(counts) == 2 and sum(counts.values()) == clients, counts
    # each worker holds at least a quarter of the connections (an even split is clients / 2)
    assert min(counts.values()) >= clients // 4, counts
