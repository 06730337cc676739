"""Real registries for the bench tests: a local shardreg cluster and CNCF Distribution."""

from __future__ import annotations

import pytest

from bench.targets import Target, start_distribution, start_shardreg


@pytest.fixture(scope="session")
def shardreg_target() -> Target:
    target = start_shardreg(shards=2, workers=1, label="shardreg")
    yield target
    target.stop()


@pytest.fixture(scope="session")
def distribution_target() -> Target:
    target = start_distribution(label="distribution")
    yield target
    target.stop()
