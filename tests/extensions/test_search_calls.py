"""Which shards a GraphQL search calls, and that it calls them at once (issue 17): a query about
one repository asks only the shard owning it, its repository and image summaries in parallel."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from common.ring import shard_for
from tests.extensions.conftest import gql
from tests.inprocess import InProcessRegistry

#: How long each recorded shard call is held, so that calls made one after another cannot overlap.
HOLD = 0.05


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []
        self.inflight = 0
        self.most = 0


@pytest.fixture()
def recorded(ext_registry: InProcessRegistry) -> Iterator[Recorder]:
    """Every search call (``ShardClient.call``) of the gateway (shard, op), held ``HOLD`` seconds,
    while the test runs; other calls (the resize watcher polls shard 0 every few seconds) pass."""
    client = ext_registry.app.state.client  # type: ignore[attr-defined]
    original = client.call
    recorder = Recorder()

    async def call(shard: int, request: Any, *args: Any, **kwargs: Any) -> Any:
        if not request.wire.op.value.startswith("search."):  # e.g. the resize watcher's poll every 5 s
            return await original(shard, request, *args, **kwargs)
        recorder.calls.append((shard, request.wire.op.value))
        recorder.inflight += 1
        recorder.most = max(recorder.most, recorder.inflight)
        try:
            await asyncio.sleep(HOLD)
            return await original(shard, request, *args, **kwargs)
        finally:
            recorder.inflight -= 1

    client.call = call
    try:
        yield recorder
    finally:
        del client.call  # the class's method again


def _ops(recorder: Recorder) -> list[tuple[int, str]]:
    return sorted(recorder.calls)


def test_global_search_of_a_tag_asks_the_owner_only_and_in_parallel(ext_client, pushed, recorded):
    out = gql(ext_client, '{ GlobalSearch(query: "library/alpine:3.1", filter: {Os: ["linux"]}) '
                          '{ Images { RepoName Tag } Repos { Name } } }')
    assert "errors" not in out, out
    assert sorted(i["Tag"] for i in out["data"]["GlobalSearch"]["Images"]) == ["3.18", "3.19"]
    owner = shard_for("library/alpine", 3, 0)
    assert _ops(recorded) == [(owner, "search.images"), (owner, "search.repos")]
    assert recorded.most == 2  # both at once, not one after the other


def test_search_over_every_shard_calls_them_at_once(ext_client, pushed, recorded):
    out = gql(ext_client, '{ GlobalSearch(query: "a", filter: {Arch: ["amd64"]}) { Repos { Name } } }')
    assert "errors" not in out, out
    assert sorted(shard for shard, _ in recorded.calls) == [0, 1, 2]
    assert recorded.most == 3


def test_image_list_of_one_repository_asks_its_shard(ext_client, pushed, recorded):
    out = gql(ext_client, '{ ImageList(repo: "library/alpine") { Results { Tag } } }')
    assert "errors" not in out, out
    assert [shard for shard, _ in recorded.calls] == [shard_for("library/alpine", 3, 0)]
