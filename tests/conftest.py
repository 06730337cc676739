from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.cluster import Cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One registry for the whole session (2 shards, 2 gateway workers), embedded defaults."""
    with Cluster(tmp_path_factory.mktemp("registry") / "data") as c:
        yield c


@pytest.fixture()
def client(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=60) as c:
        yield c
