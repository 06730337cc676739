"""Fixtures for the OCI conformance re-implementation: one HTTP client on the session registry."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from tests.cluster import Cluster


@pytest.fixture(scope="module")
def http(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cluster.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def repos() -> tuple[str, str]:
    """OCI_REPO1 / OCI_REPO2 as zot's CI names them, made unique per module so each starts empty."""
    suffix = secrets.token_hex(4)
    return f"oci-conformance/distribution-test-{suffix}", f"oci-conformance/crossmount-test-{suffix}"
