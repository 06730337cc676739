"""``shardreg bench scale`` (issue 17): its arguments, the growth flags, the machine's ceilings, and one
tiny real run (a real cluster, two levels, every request checked) that writes its JSON and Markdown."""

from __future__ import annotations

import json

import pytest

from bench import ceilings
from bench.cli import main as cli_main
from bench.scale import main as scale_main
from bench.scale import parse_args
from bench.scale_report import growth


def test_arguments() -> None:
    args = parse_args([])
    assert (args.levels, args.repos, args.tags, args.blobs) == ([1, 10, 100], 1000, 1000, 10000)
    assert (args.shards, args.workers, args.concurrency, args.samples, args.restarts) == (2, 2, 64, 50, 1)
    args = parse_args(["--levels", "10,1", "--repos", "5", "--tags", "7", "--blobs", "9", "--name", "scale-1"])
    assert (args.levels, args.repos, args.tags, args.blobs, args.name) == ([1, 10], 5, 7, 9, "scale-1")
    for bad in (["--levels", "0"], ["--levels", "x"], ["--levels", ""], ["--repos", "0"], ["--concurrency", "300"],
                ["--restarts", "-1"], ["--name", "../x"], ["--shards", "300"], ["--disk-mb", "-1"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(bad)
        assert exc.value.code == 2, bad


def test_the_cli_dispatches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["scale", "--help"])
    assert exc.value.code == 0
    assert "shardreg bench scale" in capsys.readouterr().out


def _level(level: int, repos: int, catalog_ms: float, metrics_ms: float) -> dict:
    lat = {"catalog-first": {"median_ms": catalog_ms, "p99_ms": catalog_ms * 2},
           "metrics-gateway": {"median_ms": metrics_ms, "p99_ms": metrics_ms}}
    return {"level": level, "repos": repos, "tags": repos, "latency": lat,
            "restarts": [{"process_start_to_ready_s": 0.7, "sigterm_to_ready_s": 1.5}], "rss": {"shard-0": 64 << 20}}


def test_growth_flags_what_grows_faster_than_log_n() -> None:
    rows = {g["figure"]: g for g in growth([_level(1, 1000, 2.0, 5.0), _level(100, 100_000, 2.4, 250.0)])}
    assert rows["catalog-first median"]["ratio"] == 1.2 and not rows["catalog-first median"]["flag"]
    assert rows["metrics-gateway median"]["ratio"] == 50.0 and rows["metrics-gateway median"]["flag"]
    assert rows["catalog-first median"]["log_n_ratio"] == pytest.approx(1.67, abs=0.01)
    assert rows["catalog-first median"]["n_ratio"] == 100.0
    assert not rows["shard start-up (process start to ready)"]["flag"]
    assert growth([_level(1, 1000, 2.0, 5.0)]) == []


def test_ceilings_are_measured_and_figures_read_as_shares() -> None:
    limits = ceilings.measure({"mb_per_s": 400.0}, loopback_s=0.1, sha_s=0.05, rounds=1)
    assert limits["loopback"]["mb_per_s"] > 0 and limits["loopback"]["bytes"] > 0
    assert limits["sha256"]["mb_per_s"] > 0 and limits["sha256"]["ms_per_mb"] == pytest.approx(
        1000 / limits["sha256"]["mb_per_s"], rel=0.01)
    doc = {"ceilings": {"loopback": {"mb_per_s": 2000.0}, "sha256": {"ms_per_mb": 2.0},
                        "disk_fsync": {"mb_per_s": 400.0}},
           "targets": [{"label": "shardreg"}],
           "results": [
               {"target": "shardreg", "workload": "pull-large", "concurrency": 8, "valid": True, "bytes": 1,
                "mb_per_s": 500.0},
               {"target": "shardreg", "workload": "push-large", "concurrency": 8, "valid": True, "bytes": 1,
                "mb_per_s": 200.0, "cpu_ms_per_mb": {"server": 3.0}},
               {"target": "other", "workload": "pull-large", "concurrency": 8, "valid": True, "bytes": 1,
                "mb_per_s": 900.0},
               {"target": "shardreg", "workload": "pull-small", "concurrency": 1, "valid": True,
                "bytes": 1024 << 20, "mb_per_s": 100.0, "disk_read_mb": {"gateway": 256.0, "server": 256.0}}]}
    shares = {(f["workload"], f["ceiling"]): f["share"] for f in ceilings.fractions(doc)}
    assert shares == {("pull-large", "loopback"): 0.25, ("push-large", "disk fsync"): 0.5,
                      ("push-large", "SHA-256 ms/MB"): 1.5, ("pull-small", "loopback"): 0.05,
                      ("pull-small", "MB served"): 0.25}
    texts = [ceilings.fraction_text(f) for f in ceilings.fractions(doc)]
    assert "pull-large c=8: MB/s 500.0 = 25% of loopback (2000.0)" in texts
    assert "push-large c=8: server CPU ms/MB 3.0 = 1.50x SHA-256 ms/MB (2.0)" in texts
    assert "pull-small c=1: MB read from disk 256.0 = 25% of MB served (1024.0)" in texts


def test_a_tiny_real_run(tmp_path) -> None:
    """Two levels of a real cluster: every request answered and checked, counters as built."""
    code = scale_main(["--levels", "1,2", "--repos", "12", "--tags", "8", "--blobs", "130", "--samples", "3",
                       "--concurrency", "8", "--workers", "1", "--disk-mb", "0", "--out", str(tmp_path), "--name", "tiny"])
    doc = json.loads((tmp_path / "tiny.json").read_text())
    assert doc["error"] is None and code == 0
    one, two = doc["levels"]
    # 12 repositories (a config each), the tags repository (its config), 116 tiny layers + their config
    assert (one["repos"], one["tags"], one["blob_records"]) == (14, 8, 12 + 1 + 116 + 1)
    assert (two["repos"], two["tags"], two["blob_records"]) == (26, 16, 24 + 1 + 234 + 1)
    for level in (one, two):
        assert set(level["latency"]) >= {"catalog-first", "catalog-deep", "tags-first", "tags-deep", "gql-newest",
                                         "gql-global", "gql-filter", "metrics-gateway", "metrics-shard0",
                                         "metrics-shard1"}
        for name, lat in level["latency"].items():
            assert lat["errors"] == 0 and lat["n"] >= 3 and lat["median_ms"] > 0, (name, lat)
        (restart,) = level["restarts"]
        assert restart["sigterm_to_ready_s"] > 0 and restart["process_start_to_ready_s"] > 0
        assert all(s["lmdb_meta_bytes"] > 0 for s in level["sizes"])
        assert sum(s["blob_dir"]["files"] for s in level["sizes"]) == level["blob_records"]
        assert level["rss"]["shard-0"] and level["rss"]["shard-1"]
        assert 0 < level["rss_anon"]["shard-0"] <= level["rss"]["shard-0"]
    assert doc["growth"] and doc["ceilings"]["loopback"]["mb_per_s"] > 0
    md = (tmp_path / "tiny.md").read_text()
    assert "machine ceilings: loopback TCP" in md and "| catalog-deep |" in md and "## Growth from 1x to 2x" in md


def test_the_main_bench_prints_its_figures_as_shares_of_the_ceilings() -> None:
    """A stored main-bench document with ceilings: the summary and the Markdown name them, and
    each pull/push figure as a share of its limit, within 80 columns."""
    import io
    from pathlib import Path

    from rich.console import Console

    from bench import report

    doc = json.loads((Path(__file__).resolve().parents[2] / "bench" / "results" / "full-4.json").read_text())
    doc["ceilings"] = {"loopback": {"mb_per_s": 2000.0}, "sha256": {"mb_per_s": 500.0, "ms_per_mb": 2.0},
                       "disk_fsync": {"mb_per_s": doc["disk"]["mb_per_s"]}}
    doc["fractions"] = ceilings.fractions(doc)
    kinds = {(f["workload"], f["ceiling"]) for f in doc["fractions"]}
    assert {("pull-large", "loopback"), ("push-large", "disk fsync"), ("push-large", "SHA-256 ms/MB")} <= kinds
    out = io.StringIO()
    report.print_tables(doc, Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert "machine ceilings: loopback TCP 2000 MB/s" in text and "of loopback (2000.0)" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "machine ceilings" in report.markdown(doc) and "x SHA-256 ms/MB" in report.markdown(doc)
