"""Manifest GETs answered in place reach their shard as batched ``manifest.pulls`` notices
(``gateway.pull_notices``, the ``manifest.pulls`` handler): gathered per shard, sent after
PULLS_DELAY, at MAX_PULLS, or before anything else the worker sends that shard; never answered;
counted only for manifests the shard stores in repositories it serves."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from common import messages
from common.protocol import Op
from common.ring import shard_for
from gateway import pull_notices
from gateway.shard_client import ShardClient
from shard.hooks import Hooks
from shard.ops.manifests import ManifestOps
from shard.service import ShardService
from tests.inprocess import InProcessRegistry
from tests.oci import digest, push_image
from tests.unit.test_local_reads import downloads

pytestmark = pytest.mark.inprocess


@pytest.fixture
def registry() -> Iterator[InProcessRegistry]:
    with InProcessRegistry(shards=2) as reg:
        yield reg


def count_notices(reg: InProcessRegistry) -> Counter[str]:
    """From now on: how many ``manifest.pulls`` notices the shards ran ("notices") and the pairs they carried ("pairs")."""
    seen: Counter[str] = Counter()
    for server in reg.shards:
        original = server.handlers[Op.MANIFEST_PULLS]

        async def counted(args: Any, frames: Any, _original: Any = original) -> Any:
            seen["notices"] += 1
            seen["pairs"] += len(args["pulls"]) if isinstance(args.get("pulls"), list) else 0
            return await _original(args, frames)

        server.handlers[Op.MANIFEST_PULLS] = counted
    return seen


def client_of(reg: InProcessRegistry) -> ShardClient:
    client: ShardClient = reg.app.state.client  # type: ignore[attr-defined]
    return client


def pushed(reg: InProcessRegistry, repo: str) -> str:
    with reg.client() as c:
        manifest_digest, _ = push_image(c, repo, "v1")
    return manifest_digest


def note_pulls(reg: InProcessRegistry, repo: str, manifest_digest: str, times: int) -> None:
    """The gateway's worker notes ``times`` GETs of ``repo``'s manifest answered in place."""
    client, shard = client_of(reg), shard_for(repo, 2)

    async def note() -> None:
        for _ in range(times):
            client.pulls.note(shard, repo, manifest_digest)

    reg.run(note())


def wait_until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_pulls_noted_together_leave_as_one_notice(registry: InProcessRegistry) -> None:
    repo = "notes/one"
    manifest_digest = pushed(registry, repo)
    seen = count_notices(registry)
    note_pulls(registry, repo, manifest_digest, 5)
    wait_until(lambda: seen["pairs"] == 5, f"the pulls never arrived: {seen}")
    time.sleep(pull_notices.PULLS_DELAY * 5)
    assert seen == Counter({"notices": 1, "pairs": 5})
    assert downloads(registry, repo, manifest_digest) == 5


def test_anything_else_sent_to_the_shard_carries_the_pulls_before_it(registry: InProcessRegistry,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pull_notices, "PULLS_DELAY", 600.0)  # only the next message can send them
    repo = "notes/order"
    manifest_digest = pushed(registry, repo)
    shard, other = shard_for(repo, 2), 1 - shard_for(repo, 2)
    seen = count_notices(registry)
    client = client_of(registry)

    async def note_then_ping(target: int) -> int:
        client.pulls.note(shard, repo, manifest_digest)
        await client.call(target, messages.PING({}))
        return seen["pairs"]

    assert registry.run(note_then_ping(other)) == 0  # another shard's traffic leaves them waiting
    assert registry.run(note_then_ping(shard)) == 2  # the shard's own: both counted before the ping's answer
    assert downloads(registry, repo, manifest_digest) == 2
    # (through HTTP, a GET then a search on the same worker: tests/extensions/test_search.py::test_download_counts)


def test_a_full_batch_leaves_at_once(registry: InProcessRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pull_notices, "PULLS_DELAY", 600.0)
    repo = "notes/full"
    manifest_digest = pushed(registry, repo)
    seen = count_notices(registry)
    note_pulls(registry, repo, manifest_digest, messages.MAX_PULLS + 1)
    wait_until(lambda: seen["pairs"] == messages.MAX_PULLS, f"a full batch did not leave: {seen}")
    time.sleep(0.1)
    assert seen == Counter({"notices": 1, "pairs": messages.MAX_PULLS})  # the one after it waits
    assert downloads(registry, repo, manifest_digest) == messages.MAX_PULLS


def test_a_notice_is_never_answered_and_bad_ones_harm_nothing(registry: InProcessRegistry) -> None:
    repo = "notes/quiet"
    manifest_digest = pushed(registry, repo)
    shard = shard_for(repo, 2)
    seen = count_notices(registry)
    client = client_of(registry)
    pair = [repo, manifest_digest]
    notices: list[Any] = [
        {"pulls": [pair]},
        {"pulls": "not a list"},
        {"pulls": [[repo]]},  # not a pair
        {"pulls": [pair] * (messages.MAX_PULLS + 1)},  # too many: refused whole
        {"pulls": [["x" * 600, manifest_digest], pair]},  # a name too long for a key: no such manifest
    ]

    async def send_raw() -> list[bool]:
        answers = []
        for args in notices:  # as a gateway would send them, each with an id a reply could name
            rid, message = client._message(messages.MANIFEST_PULLS(args))
            answers.append(client._awaiting(rid, shard, "manifest.pulls"))
            await client._connect(shard).send_multipart(message)
        await client.call(shard, messages.PING({}))  # answered after every notice ran
        await asyncio.sleep(0.2)
        return [future.done() for future in answers]

    assert registry.run(send_raw()) == [False] * len(notices)
    assert seen["notices"] == len(notices)
    assert downloads(registry, repo, manifest_digest) == 2
    with registry.client() as c:
        assert c.get(f"/v2/{repo}/manifests/v1").status_code == 200


def test_only_stored_manifests_of_served_repositories_count(tmp_path: Any) -> None:
    async def scenario() -> list[tuple[str, str]]:
        service = ShardService(tmp_path, 0, 1, durable=False)
        hooks = Hooks()
        counted: list[tuple[str, str]] = []
        hooks.on_pull.append(lambda repo, d: counted.append((repo, d)))
        ops = ManifestOps(service, hooks)
        ops.serves = lambda repo, epoch: repo != "elsewhere/app"
        body = b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}'
        stored = digest(body)
        for repo in ("here/app", "elsewhere/app"):
            await ops.put({"repo": repo, "digest": stored, "media_type": "application/vnd.oci.image.index.v1+json",
                           "tags": ["v1"], "blobs": [], "children": [], "subject": None, "artifact_type": None,
                           "annotations": None, "config": None, "pushed_by": "",
                           "may_create": True, "may_update": True}, [body])
        await ops.pulls({"pulls": [["here/app", stored], ["here/app", digest(b"never pushed")],
                                   ["elsewhere/app", stored], ["here/app", stored]]}, [])
        service.close()
        return counted

    assert asyncio.run(scenario()) == [("here/app", digest(
        b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}'))] * 2


def test_the_routing_check_of_each_name(registry: InProcessRegistry) -> None:
    own = next(f"r/{i}" for i in range(100) if shard_for(f"r/{i}", 2) == 0)
    other = next(f"r/{i}" for i in range(100) if shard_for(f"r/{i}", 2) == 1)
    routing = registry.shards[0].routing
    epoch = routing.epoch
    assert epoch >= 1
    assert routing.serves(own, epoch) and not routing.serves(other, epoch)
    assert not routing.serves(own, epoch - 1)  # a stale map: not counted here


def test_a_stopping_worker_tells_its_shards_the_pulls_it_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pull_notices, "PULLS_DELAY", 600.0)
    repo = "notes/stop"
    with InProcessRegistry(shards=2) as reg:
        manifest_digest = pushed(reg, repo)
        note_pulls(reg, repo, manifest_digest, 3)
        assert downloads(reg, repo, manifest_digest) == 0
        reg.run(reg._lifespan("shutdown"))  # the gateway stops (after_serving); its shards still run
        reg.lifespan = None  # (stopped already: the fixture's stop does not ask again)
        assert downloads(reg, repo, manifest_digest) == 3
