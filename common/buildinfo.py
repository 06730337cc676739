"""What build is running: the package version and the source revision (``shardreg_build_info``).

The revision comes from ``$SHARDREG_REVISION`` (set by an image build), else from the git checkout
the code runs from, else ``unknown``. Computed once per process.
"""

from __future__ import annotations

import functools
import os
import subprocess
from importlib import metadata
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily

SOURCE = Path(__file__).resolve().parent.parent


@functools.cache
def version() -> str:
    try:
        return metadata.version("shardreg")
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def revision() -> str:
    env = os.environ.get("SHARDREG_REVISION", "").strip()
    if env:
        return env[:64]
    if not (SOURCE / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(["git", "-C", str(SOURCE), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


class BuildInfoCollector:
    """``shardreg_build_info{version,revision} 1``, for any registry."""

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily("shardreg_build_info", "The running build (value is always 1)",
                                   labels=["version", "revision"])
        family.add_metric([version(), revision()], 1)
        return [family]
