"""The installable package (what the container image installs) carries every file the code needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_every_package_file(tmp_path):
    # build from a clean copy of the tracked files, as the Containerfile does (no egg-info around)
    tracked = subprocess.run(["git", "ls-files", "pyproject.toml", "README.md", "common", "gateway", "shard",
                              "bench"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    source = tmp_path / "src"
    for name in tracked:
        if (ROOT / name).exists():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
                    str(source)], check=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("shardreg-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    needed = [f for f in tracked if f.startswith(("common/", "gateway/", "shard/", "bench/"))
              and not f.startswith("bench/results/")]
    missing = [f for f in needed if f not in names]
    assert not missing, missing
    assert "gateway/extensions/schema.graphql" in names
