"""Fixtures of the deployment tests: the helm and kubectl binaries, fetched once per machine."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_support import ToolError, ensure_tools  # noqa: E402


@pytest.fixture(scope="session")
def tools() -> dict[str, Path]:
    """``{"helm": path, "kubectl": path}``; a failed download fails the tests, it never skips them."""
    try:
        return ensure_tools()
    except ToolError as exc:
        pytest.fail(f"cannot obtain helm/kubectl: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def helm(tools: dict[str, Path]) -> Path:
    return tools["helm"]


@pytest.fixture(scope="session")
def kubectl(tools: dict[str, Path]) -> Path:
    return tools["kubectl"]
