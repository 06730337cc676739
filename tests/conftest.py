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


# Modules that kill processes at chosen moments, resize under load, watch memory or descriptor
# limits, or run the benchmarks. Under xdist (tests/run) they form one unit, "machine": they run
# one after another on one worker and never beside each other; the other worker runs the rest.
# See docs/testing.md.
MACHINE = frozenset({
    "tests/integration/test_chaos.py",
    "tests/integration/test_reshard_kill.py",
    "tests/integration/test_reshard_load.py",
    "tests/integration/test_reshard_fraction.py",
    "tests/integration/test_reshard_stale_gateway.py",
    "tests/integration/test_reshard_users.py",
    "tests/integration/test_memory.py",
    "tests/integration/test_upload_descriptors.py",
    "tests/bench/test_bench_scale.py",
    "tests/bench/test_bench_workloads.py",
    "tests/bench/test_bench_pullthrough.py",
    "tests/bench/test_bench_reshard.py",
})


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``--dist loadfile`` (tests/run): a module is the unit a worker gets, so its module-scoped
    servers start once, except that the ``MACHINE`` modules are one unit together."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class MachineGrouped(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = _module(nodeid)
            return "machine" if module in MACHINE else module

    return MachineGrouped(config, log)  # type: ignore[arg-type]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On an xdist worker, the ``MACHINE`` modules come first: the scheduler hands out units in
    collection order (tests/run passes --no-loadscope-reorder), and the longest unit must start
    first rather than form the tail of the run. Every module keeps its own order."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: _module(item.nodeid) not in MACHINE)


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
