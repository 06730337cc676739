"""A name that answers TRYAGAIN (being imported, or switching owner in a resize) is retried for a
time budget, not for a number of redirects: a switch longer than eight quick retries (on a loaded
machine) is waited for rather than answered 503, and one that never ends still gets a 503."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from common.errors import ErrorCode, RegistryError
from common.protocol import Op
from common.ring import shard_for
from gateway import shard_client
from tests.extensions.fixtures import push_image
from tests.inprocess import InProcessRegistry

pytestmark = pytest.mark.inprocess
REPO = "switching/app"


@pytest.fixture(scope="module")
def reg() -> Iterator[InProcessRegistry]:
    with InProcessRegistry(shards=2) as registry:
        yield registry


def _switching_for(reg: InProcessRegistry, seconds: float) -> list[float]:
    """Make the owner of REPO answer TRYAGAIN to tag listings for ``seconds`` (an op only the shard
    answers: manifest GETs are read in place); returns the times tried."""
    server: Any = reg.shards[shard_for(REPO, 2)]
    original = server.handlers[Op.TAGS_LIST]
    until = time.monotonic() + seconds
    tries: list[float] = []

    async def switching(*args: Any, **kwargs: Any) -> Any:
        tries.append(time.monotonic())
        if time.monotonic() < until:
            raise RegistryError(ErrorCode.TRYAGAIN, f"repository {REPO} is switching owner")
        return await original(*args, **kwargs)

    server.handlers[Op.TAGS_LIST] = switching
    reg.stop_switching = lambda: server.handlers.__setitem__(Op.TAGS_LIST, original)  # type: ignore[attr-defined]
    return tries


def test_a_switch_longer_than_the_redirects_is_waited_for(reg: InProcessRegistry) -> None:
    with reg.client() as client:
        push_image(client, REPO, "v1")
        tries = _switching_for(reg, 1.2)
        try:
            started = time.monotonic()
            response = client.get(f"/v2/{REPO}/tags/list")
            elapsed = time.monotonic() - started
        finally:
            reg.stop_switching()  # type: ignore[attr-defined]
    # Answered once the switch was over: eight redirects 50 ms apart (the old rule) gave up after
    # 0.4 s with a 503. How many tries that took depends on the machine's load, so it is not asserted.
    assert response.status_code == 200, response.text
    assert elapsed >= 1.2 and len(tries) >= 2, tries


def test_a_switch_that_never_ends_is_a_503_after_the_budget(reg: InProcessRegistry,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shard_client, "TRYAGAIN_BUDGET", 1.0)
    with reg.client() as client:
        push_image(client, REPO, "v2")
        tries = _switching_for(reg, 3600)
        try:
            response = client.get(f"/v2/{REPO}/tags/list")
        finally:
            reg.stop_switching()  # type: ignore[attr-defined]
        assert response.status_code == 503, response.text
        assert response.json()["errors"][0]["code"] == "UNAVAILABLE"
        assert tries[-1] - tries[0] >= 1.0 - shard_client.TRYAGAIN_MAX_PAUSE  # retried for the budget
        assert client.get(f"/v2/{REPO}/tags/list").status_code == 200  # and served once it ends


def test_a_shard_ahead_of_the_home_is_waited_for_not_answered_503(reg: InProcessRegistry) -> None:
    """At the end of a resize the new map reaches the shards one by one, the home (shard 0) among the
    last: a shard that already has it answers STALE_MAP while the home still gives the old map. That
    once made eight quick redirects and a 503 (tests/integration/test_reshard_load.py); now the
    gateway waits for the home, within the TRYAGAIN budget."""
    server: Any = reg.shards[shard_for(REPO, 2)]
    original = server.handlers[Op.TAGS_LIST]
    until = time.monotonic() + 1.0
    tries: list[float] = []

    async def ahead(*args: Any, **kwargs: Any) -> Any:
        tries.append(time.monotonic())
        if time.monotonic() < until:  # the home, asked for the map, still answers the gateway's own
            raise RegistryError(ErrorCode.STALE_MAP, "this shard has a newer cluster map", detail={"view": None})
        return await original(*args, **kwargs)

    with reg.client() as client:
        push_image(client, REPO, "v3")
        server.handlers[Op.TAGS_LIST] = ahead
        try:
            response = client.get(f"/v2/{REPO}/tags/list")
        finally:
            server.handlers[Op.TAGS_LIST] = original
    assert response.status_code == 200, response.text
    assert tries[-1] >= until and len(tries) >= 2, tries
