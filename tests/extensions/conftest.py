from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.cluster import Cluster
from tests.extensions.fixtures import FULL_EXTENSIONS, Pushed, populate


@pytest.fixture(scope="session")
def ext_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Three shards, every extension on, no auth."""
    with Cluster(tmp_path_factory.mktemp("ext") / "data", shards=3, workers=1,
                 config={"extensions": FULL_EXTENSIONS}) as c:
        yield c


@pytest.fixture(scope="session")
def ext_client(ext_cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=ext_cluster.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def pushed(ext_client: httpx.Client) -> Pushed:
    return populate(ext_client)


def gql(client: httpx.Client, query: str, variables: dict | None = None, **kwargs) -> dict:
    r = client.post("/v2/_zot/ext/search", json={"query": query, "variables": variables or {}}, **kwargs)
    assert r.status_code == 200, r.text
    return r.json()
