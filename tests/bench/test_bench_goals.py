"""The bench's targets (bench/goals.py) read the right figure of a run and compare it the right way."""

from __future__ import annotations

from typing import Any

from bench.goals import goals


def _result(workload: str, c: int, *, target: str = "shardreg", valid: bool = True, **figures: Any) -> dict:
    return {"workload": workload, "concurrency": c, "target": target, "valid": valid,
            "mb_per_s": figures.get("mb_per_s", 0.0), "cpu_ms_per_mb": figures.get("cpu_ms_per_mb", {}),
            "parts": figures.get("parts", {})}


def _doc(results: list[dict], comparisons: list[dict] | None = None, disk: float | None = 1000.0) -> dict:
    return {"targets": [{"label": "shardreg"}, {"label": "distribution"}], "results": results,
            "comparisons": comparisons or [], "disk": {"mb_per_s": disk} if disk else None}


def _by_goal(doc: dict) -> dict[str, tuple[Any, bool]]:
    return {g["goal"]: (g["value"], g["met"]) for g in goals(doc)}


def test_cpu_per_mb_goals_read_the_named_component() -> None:
    doc = _doc([_result("pull-large", 1, cpu_ms_per_mb={"gateway": 0.16, "server": 0.1}),
                _result("pull-large", 8, cpu_ms_per_mb={"gateway": 0.15, "server": 9.0}),
                _result("push-large", 8, mb_per_s=690.0, cpu_ms_per_mb={"gateway": 9.0, "server": 2.4})])
    got = _by_goal(doc)
    assert got["pull-large gateway CPU <= 0.15 ms/MB (c=1)"] == (0.16, False)
    assert got["pull-large gateway CPU <= 0.15 ms/MB (c=8)"] == (0.15, True)
    assert got["push-large server CPU <= 2.5 ms/MB (c=8)"] == (2.4, True)
    assert got["push-large >= 70% of the disk's fsync'ed write speed (c=8)"] == (0.69, False)


def test_disk_share_only_at_its_level_and_with_a_disk_figure() -> None:
    at_32 = _doc([_result("push-large", 32, mb_per_s=900.0, cpu_ms_per_mb={"server": 1.0})])
    assert not any("fsync" in g for g in _by_goal(at_32))
    no_disk = _doc([_result("push-large", 8, mb_per_s=900.0, cpu_ms_per_mb={"server": 1.0})], disk=None)
    assert not any("fsync" in g for g in _by_goal(no_disk))
    exactly = _doc([_result("push-large", 8, mb_per_s=700.0, cpu_ms_per_mb={"server": 1.0})])
    assert _by_goal(exactly)["push-large >= 70% of the disk's fsync'ed write speed (c=8)"] == (0.7, True)


def test_ratio_goals_at_every_level_with_their_own_thresholds() -> None:
    comparisons = [{"workload": "pull-small", "concurrency": 1, "ratio": {"ops_per_s": 1.49}},
                   {"workload": "pull-small", "concurrency": 32, "ratio": {"ops_per_s": 1.5}},
                   {"workload": "head-check", "concurrency": 8, "ratio": {"ops_per_s": 1.19}},
                   {"workload": "pull-large", "concurrency": 8, "ratio": {"mb_per_s": None}}]
    got = _by_goal(_doc([], comparisons))
    assert got["pull-small ops_per_s >= 1.5x other (c=1)"] == (1.49, False)
    assert got["pull-small ops_per_s >= 1.5x other (c=32)"] == (1.5, True)
    assert got["head-check ops_per_s >= 1.2x other (c=8)"] == (1.19, False)
    assert got["pull-large mb_per_s >= 1.0x other (c=8)"] == (None, False)  # no ratio (a level failed): not met


def test_manifest_p99_goal_at_c32_of_the_measured_registry_only() -> None:
    parts = {"manifest-get": {"p99_ms": 24.9}}
    doc = _doc([_result("mixed-ci", 32, parts=parts), _result("mixed-ci", 8, parts={"manifest-get": {"p99_ms": 1.0}}),
                _result("mixed-ci", 32, target="distribution", parts={"manifest-get": {"p99_ms": 99.0}})])
    assert [(g["goal"], g["value"], g["met"]) for g in goals(doc)] == [
        ("mixed-ci manifest GET p99 <= 25 ms (c=32)", 24.9, True)]
    doc["results"][0]["parts"]["manifest-get"]["p99_ms"] = 25.1
    assert goals(doc)[0]["met"] is False
    doc["results"][0]["parts"]["manifest-get"]["p99_ms"] = 25.0
    assert goals(doc)[0]["met"] is True


def test_invalid_results_set_no_goal() -> None:
    doc = _doc([_result("pull-large", 1, valid=False, cpu_ms_per_mb={"gateway": 0.01}),
                _result("mixed-ci", 32, valid=False, parts={"manifest-get": {"p99_ms": 1.0}})])
    assert goals(doc) == []
