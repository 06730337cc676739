"""Event delivery against real processes: a real nats-server and a real aiohttp receiver, a sink
that is down while images are pushed, and shards killed (SIGKILL) between the commit of a
change and the sending of its event. Every event arrives at least once, in per-repository order."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from tests.cluster import Cluster, free_port
from tests.lifecycle.receiver import Receiver
from tests.oci import push_image

pytestmark = pytest.mark.timeout(180)
REPOS = ("alpha/app", "beta/app")
PER_REPO = 6


class NatsServer:
    """``nats-server`` (Debian package) on 127.0.0.1 and a free port, with a subscriber thread."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        binary = shutil.which("nats-server")
        assert binary, "nats-server is installed by .ci/run (Debian package nats-server)"
        self.process = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(self.port)],
                                        stdout=(tmp / "nats.log").open("wb"), stderr=subprocess.STDOUT)
        self.messages: list[tuple[dict[str, str], bytes]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._nc: Any = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def subscribe(self, subject: str) -> None:
        async def run() -> None:
            for _ in range(100):
                try:
                    self._nc = await nats.connect(self.url, connect_timeout=1)
                    break
                except Exception:  # noqa: BLE001 - the server is still starting
                    await asyncio.sleep(0.1)

            async def on(msg: Any) -> None:
                self.messages.append((dict(msg.headers or {}), msg.data))
            await self._nc.subscribe(subject, cb=on)
            await self._nc.flush()
        asyncio.run_coroutine_threadsafe(run(), self._loop).result(30)

    def stop(self) -> None:
        if self._nc is not None:
            asyncio.run_coroutine_threadsafe(self._nc.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, NatsServer, int]]:
    tmp = tmp_path_factory.mktemp("events")
    server = NatsServer(tmp)
    server.subscribe("registry.events")
    http_port = free_port()  # nothing listens there until the test starts the receiver
    config = {"extensions": {"events": {"enable": True, "sinks": [
        {"type": "nats", "address": server.url, "channel": "registry.events", "timeout": "5s"},
        {"type": "http", "address": f"http://127.0.0.1:{http_port}/events", "timeout": "2s"}]}}}
    with Cluster(tmp / "data", config=config) as cluster:
        yield cluster, server, http_port
    server.stop()


def _updated(bodies: list[bytes]) -> dict[str, list[str]]:
    """Per repository, the references of the image.updated events, in arrival order."""
    out: dict[str, list[str]] = {}
    for body in bodies:
        event = json.loads(body)
        if event["type"] == "zotregistry.image.updated":
            out.setdefault(event["data"]["name"], []).append(event["data"]["reference"])
    return out


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_nats_down_http_sink_and_kill_between_commit_and_send(setup: tuple[Cluster, NatsServer, int]) -> None:
    cluster, server, http_port = setup
    expected: dict[str, list[str]] = {repo: [] for repo in REPOS}
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        for i in range(PER_REPO):
            for repo in REPOS:
                push_image(client, repo, f"t{i}", layers=1, layer_size=64)
                expected[repo].append(f"t{i}")

    # nats: delivered while the http sink is down, as structured CloudEvents, in per-repository order
    _wait(lambda: all(len(_updated([b for _, b in server.messages]).get(r, [])) >= PER_REPO for r in REPOS),
          60, "nats events")
    first = json.loads(server.messages[0][1])
    assert first["specversion"] == "1.0" and first["source"] == "zotregistry.dev" and first["id"]
    assert first["type"] == "zotregistry.repository.created"
    assert _updated([b for _, b in server.messages]) == expected

    # the http sink has been down all along: its events wait in the outbox. Kill both shards (SIGKILL):
    # the events were committed with the pushes, so they are sent after the restart.
    for name in ("shard-0", "shard-1"):
        old = cluster.kill_child(name)
        cluster.wait_restarted(name, old)
    receiver = Receiver(http_port).start()
    try:
        receiver.wait_for(lambda got: all(len(_updated([b for _, _, b in got]).get(r, [])) >= PER_REPO
                                          for r in REPOS), 60)
        got = _updated([b for _, _, b in receiver.received])
        for repo in REPOS:
            # at least once and in order: duplicates (a kill between send and cursor commit) repeat a prefix
            assert set(got[repo]) == set(expected[repo])
            deduped = list(dict.fromkeys(got[repo]))
            assert deduped == expected[repo], got[repo]
        types = {json.loads(b)["type"] for _, _, b in receiver.received}
        assert "zotregistry.repository.created" in types
    finally:
        receiver.stop()
