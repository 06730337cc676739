from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.cluster import Cluster
from tests.inprocess import InProcessRegistry


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "inprocess: the test's `client` talks to the in-process registry (tests/inprocess.py) "
                   "instead of the session's real cluster")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One registry for the whole session (2 shards, 2 gateway workers), embedded defaults."""
    with Cluster(tmp_path_factory.mktemp("registry") / "data") as c:
        yield c


@pytest.fixture(scope="session")
def inprocess() -> Iterator[InProcessRegistry]:
    """One in-process registry for the whole session (gateway app + 2 shards), embedded defaults."""
    with InProcessRegistry() as registry:
        yield registry


@pytest.fixture()
def client(request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """A client of the session's real cluster, or of the in-process registry for tests marked ``inprocess``."""
    if request.node.get_closest_marker("inprocess"):
        registry: InProcessRegistry = request.getfixturevalue("inprocess")
        with registry.client() as c:
            yield c
        return
    cluster: Cluster = request.getfixturevalue("cluster")
    with httpx.Client(base_url=cluster.url, timeout=60) as c:
        yield c
