"""What the bench shows: 80-column tables, the phase in the live label, where results go, the chart,
and the message when the bench extras are missing. Rendered from stored results; no load runs."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from rich.console import Console
from rich.progress import Progress

from bench import report
from bench.client import BlobFactory, Registry
from bench.command import DEFAULT_OUT, _one_level, build_parser
from bench.targets import Target
from bench.workloads import OpResult, Options, TargetState, Workload

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
WIDE_COLUMNS = ("workload", "c", "registry", "ops", "err", "ops/s", "MB/s", "p50", "p95", "p99",
                "srv CPU/op", "srv CPU/MB", "gen CPU/op", "by component (CPU/op)")


def load(name: str) -> dict:
    with open(RESULTS / f"{name}.json") as f:
        return json.load(f)


def render(doc: dict, width: int, wide: bool = False) -> list[str]:
    out = io.StringIO()
    report.print_tables(doc, Console(file=out, width=width, color_system=None), wide=wide)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("name", ["full-4", "issue9-before-after"])
def test_default_tables_fit_80_columns_without_squeezing(name: str) -> None:
    doc = load(name)
    # A console far wider than 80 (a pipe, a wide terminal): the default view still fits in 80 ...
    lines = render(doc, 200)
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    # ... and at its natural width: every result is one intact row (no folded cells).
    rows = [line.split() for line in lines]
    for r in doc["results"]:
        assert [r["workload"], str(r["concurrency"]), r["target"]] in [row[:3] for row in rows], r["workload"]
    assert render(doc, 80) == lines


def test_a_long_registry_label_wraps_in_its_column() -> None:
    doc = load("issue9-before-after")
    long = "registry.build.example.internal:5000"
    for r in doc["results"]:
        r["target"] = long if r["target"] != "after" else r["target"]
    for c in doc["comparisons"]:
        c["other"] = long
    lines = render(doc, 200)
    assert max(len(line) for line in lines) <= 80
    assert any(long[:15] in line for line in lines)


def test_wide_shows_every_column() -> None:
    doc = load("full-4")
    wide = "\n".join(render(doc, 250, wide=True))
    header = next(line for line in wide.splitlines() if "workload" in line and "registry" in line)
    cells = [c.strip() for c in header.strip("┃ ").split("┃")]
    assert cells == list(WIDE_COLUMNS)
    assert "under " in wide  # the disk line's details (rounds, directory)
    narrow = render(doc, 250)
    assert not any("p95" in line or "by component" in line for line in narrow)


def test_results_go_outside_the_source_tree_by_default() -> None:
    assert build_parser().parse_args([]).out == DEFAULT_OUT == "bench-results"
    assert not os.path.isabs(DEFAULT_OUT) and not DEFAULT_OUT.startswith("bench" + os.sep)
    ignored = subprocess.run(["git", "check-ignore", "-q", f"{DEFAULT_OUT}/run.json"], cwd=ROOT)
    assert ignored.returncode == 0, ".gitignore must list bench-results/"


def test_chart_panels_have_titles_value_labels_and_direction() -> None:
    doc = load("full-4")
    fig = report.chart(doc)
    assert fig.get_suptitle().startswith("shardreg vs distribution: throughput and p99 latency")
    workloads = list(dict.fromkeys(r["workload"] for r in doc["results"]))
    axes = fig.axes
    assert len(axes) == 2 * len(workloads)
    for i, w in enumerate(workloads):
        tput, lat = axes[2 * i], axes[2 * i + 1]
        assert tput.get_title().startswith(f"{w}: throughput") and tput.get_title().endswith("higher is better")
        assert lat.get_title().startswith(f"{w}: p99 latency") and lat.get_title().endswith("lower is better")
        assert tput.get_ylabel() in ("MB/s", "ops/s") and lat.get_ylabel() == "p99 ms"
        labels = {t.get_text() for t in tput.texts}, {t.get_text() for t in lat.texts}
        for r in doc["results"]:
            if r["workload"] != w or not r["valid"]:
                continue
            figure = r["mb_per_s"] if tput.get_ylabel() == "MB/s" else r["ops_per_s"]
            assert report._num(figure) in labels[0]
            assert report._num(r["latency"]["p99_ms"]) in labels[1]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert set(legend) == {"shardreg", "distribution", "disk write speed (fsync)"}


class _Stub(Workload):
    """Stands in for a workload: a setup step, then operations that need no registry."""

    name = "stub"

    async def setup(self, reg: Registry, concurrency: int, progress: Any = None) -> None:
        progress("push images", 1, 2)
        progress("push images", 2, 2)

    async def op(self, reg: Registry, worker: int, seq: int) -> OpResult:
        await asyncio.sleep(0)
        return OpResult()


class _Recording(Progress):
    def __init__(self) -> None:
        super().__init__(disable=True)
        self.labels: list[str] = []

    def update(self, task_id: Any, **kw: Any) -> None:  # type: ignore[override]
        if kw.get("description"):
            self.labels.append(kw["description"])
        super().update(task_id, **kw)


def test_progress_label_names_the_phase() -> None:
    args = argparse.Namespace(count=3, duration=None, rounds=1, quiet=True)
    target = Target(label="reg", url="http://127.0.0.1:9", kind="external")
    progress = _Recording()
    workload = _Stub(Options(), BlobFactory(b"x" * 4096, "t"), TargetState())

    async def scenario() -> int:
        async with aiohttp.ClientSession() as session:
            res = await _one_level(args, target, session, workload, "stub", 1, progress,
                                   Console(file=io.StringIO()), 0)
        return res.ops

    assert asyncio.run(scenario()) == 3
    assert progress.labels == ["stub c=1 reg · setup", "stub c=1 reg · setup: push images 1/2",
                               "stub c=1 reg · setup: push images 2/2", "stub c=1 reg · measuring 3 ops"]


@pytest.mark.parametrize("module", ["rich", "matplotlib", "aiohttp"])
def test_missing_bench_extras_say_how_to_install_them(module: str) -> None:
    code = (f"import sys; sys.modules[{module!r}] = None; from common.cli import main; "
            "raise SystemExit(main(['bench', '--help']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "usage:" not in proc.stdout
    assert f"{module} is not installed" in proc.stderr
    assert "pip install 'shardreg[bench]'" in proc.stderr and "pip install -e '.[bench]'" in proc.stderr
