"""Fixtures for the OCI conformance re-implementation: one HTTP client on the session's in-process registry."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import httpx
import pytest

from tests.inprocess import InProcessRegistry


@pytest.fixture(scope="module")
def http(inprocess: InProcessRegistry) -> Iterator[httpx.Client]:
    with inprocess.client() as c:
        yield c


@pytest.fixture(scope="module")
def repos() -> tuple[str, str]:
    """OCI_REPO1 / OCI_REPO2 as zot's CI names them, made unique per module so each starts empty."""
    suffix = secrets.token_hex(4)
    return f"oci-conformance/distribution-test-{suffix}", f"oci-conformance/crossmount-test-{suffix}"
