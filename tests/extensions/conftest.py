from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.cluster import Cluster
from tests.extensions.fixtures import FULL_EXTENSIONS, Pushed, populate
from tests.inprocess import InProcessRegistry


@pytest.fixture(scope="session")
def ext_registry() -> Iterator[InProcessRegistry]:
    """Three shards, every extension on, no auth: in process (tests/inprocess.py)."""
    with InProcessRegistry(shards=3, config={"extensions": FULL_EXTENSIONS}) as registry:
        yield registry


@pytest.fixture(scope="session")
def ext_client(ext_registry: InProcessRegistry) -> Iterator[httpx.Client]:
    with ext_registry.client() as c:
        yield c


@pytest.fixture(scope="session")
def ext_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The same as real processes, for what profiles a process (pprof)."""
    with Cluster(tmp_path_factory.mktemp("ext") / "data", shards=3, workers=1,
                 config={"extensions": FULL_EXTENSIONS}) as c:
        yield c


@pytest.fixture(scope="session")
def pushed(ext_client: httpx.Client) -> Pushed:
    return populate(ext_client)


def gql(client: httpx.Client, query: str, variables: dict | None = None, **kwargs) -> dict:
    r = client.post("/v2/_zot/ext/search", json={"query": query, "variables": variables or {}}, **kwargs)
    assert r.status_code == 200, r.text
    return r.json()
