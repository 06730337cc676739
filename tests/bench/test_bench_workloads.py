"""Each workload runs a few operations against real registries and yields a well-formed report."""

from __future__ import annotations

import json

import pytest

from bench.cli import main
from bench.targets import Target
from bench.workloads import WORKLOADS

SMALL = ["--blob-size", "2MiB", "--chunk-size", "512KiB", "--list-repos", "30", "--list-tags", "25",
         "--page-size", "7", "--referrers", "6", "--small-repos", "5", "--disk-mb", "4", "--timeout", "15", "-q",
         "--page-cache", "0"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def load_report(out, name: str) -> dict:
    with open(out / f"{name}.json") as f:
        doc = json.load(f)
    png = (out / f"{name}.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 2000
    return doc


def check_result(r: dict, ops: int) -> None:
    assert r["valid"], (r["error_samples"], r["setup_error"])
    assert r["ops"] == ops and r["errors"] == 0
    lat = r["latency"]
    assert lat["count"] == ops
    assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"] <= lat["max_ms"]
    assert r["ops_per_s"] > 0 and r["wall_s"] > 0
    assert r["cpu_s"]["generator"] >= 0 and "generator" in r["cpu_ms_per_op"]


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_workload_against_shardreg_and_distribution(workload: str, shardreg_target: Target,
                                                    distribution_target: Target, tmp_path) -> None:
    rc = main([shardreg_target.url, "--pid", str(shardreg_target.root_pid), "--label", "shardreg",
               "--compare", distribution_target.url, "--compare-pid", str(distribution_target.root_pid),
               "-w", workload, "-c", "1,2", "-n", "4", "--out", str(tmp_path), "--name", "run", *SMALL])
    assert rc == 0
    doc = load_report(tmp_path, "run")
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["python"]
    assert doc["disk"]["mb_per_s"] > 0 and doc["disk"]["bytes"] == 4 << 20
    assert [t["label"] for t in doc["targets"]] == ["shardreg", f"127.0.0.1:{distribution_target.url.rsplit(':', 1)[1]}"]
    mine = [r for r in doc["results"] if r["target"] == "shardreg"]
    other = [r for r in doc["results"] if r["target"] != "shardreg"]
    assert [r["concurrency"] for r in mine] == [1, 2] and [r["concurrency"] for r in other] == [1, 2]
    for r in mine:
        check_result(r, 4)
        # CPU is charged to shardreg's components, read from /proc.
        assert "gateway" in r["cpu_s"] and "shards" in r["cpu_s"] and "server" in r["cpu_s"]
        assert any(k.startswith("shard-") for k in r["cpu_s"])
        if WORKLOADS[workload].headline == "MB/s":
            assert r["bytes"] == 4 * (2 << 20) and r["mb_per_s"] > 0 and "server" in r["cpu_ms_per_mb"]
    for r in other:
        assert "distribution" in r["cpu_s"] or not r["valid"]
    assert len(doc["comparisons"]) == 2
    for c in doc["comparisons"]:
        assert set(c["ratio"]) >= {"ops_per_s", "mb_per_s", "p99_ms", "server_cpu_ms_per_op"}


def test_cli_starts_both_registries_itself(tmp_path) -> None:
    rc = main(["-w", "push-large,pull-large", "-c", "2", "-n", "3", "--compare", "distribution",
               "--shards", "2", "--out", str(tmp_path), "--name", "self", *SMALL, "--page-cache", "8"])
    assert rc == 0
    doc = load_report(tmp_path, "self")
    assert doc["page_cache_fill"]["mib"] == 8 and doc["page_cache_fill"]["seconds"] >= 0
    assert [t["kind"] for t in doc["targets"]] == ["shardreg", "distribution"]
    assert doc["targets"][1]["version"].startswith(("v2", "2"))
    for r in doc["results"]:
        check_result(r, 3)
        assert r["mb_per_s"] > 0
    assert {g["goal"].split(" ")[0] for g in doc["goals"]} >= {"push-large", "pull-large"}
    # Both registries were stopped: their processes are gone.
    for t in doc["targets"]:
        with pytest.raises(FileNotFoundError):
            open(f"/proc/{t['pid']}/stat").close()


def test_refuses_remote_registry_without_flag(tmp_path) -> None:
    assert main(["http://192.0.2.1:5000", "--out", str(tmp_path), "-q"]) == 2


def test_a_registry_that_answers_wrongly_does_not_score(distribution_target: Target, tmp_path) -> None:
    # Distribution 2.8.2 has no referrers API: every listing is a 404, which the bench must count
    # as errors, mark invalid, and report with a non-zero exit status.
    rc = main([distribution_target.url, "--pid", str(distribution_target.root_pid), "-w", "referrers",
               "-c", "1", "-n", "3", "--out", str(tmp_path), "--name", "wrong", *SMALL])
    assert rc == 1
    doc = load_report(tmp_path, "wrong")
    [r] = doc["results"]
    assert not r["valid"] and r["ops"] == 0 and r["errors"] == 3
    assert "404" in r["error_samples"][0]
    assert r["latency"]["p99_ms"] is None and doc["comparisons"] == []


def test_rounds_are_pooled_and_their_spread_kept(shardreg_target: Target, tmp_path) -> None:
    rc = main([shardreg_target.url, "--pid", str(shardreg_target.root_pid), "-w", "head-check", "-c", "2",
               "-n", "5", "--rounds", "3", "--out", str(tmp_path), "--name", "rounds", *SMALL])
    assert rc == 0
    [r] = load_report(tmp_path, "rounds")["results"]
    check_result(r, 15)
    assert len(r["rounds"]) == 3 and all(x["ops_per_s"] > 0 and x["errors"] == 0 for x in r["rounds"])


def test_pull_large_pulls_the_same_few_blobs_whatever_ran_before(shardreg_target: Target) -> None:
    """push-large leaves its blobs for pull-large; a level still pulls only max(2, min(c, 8)) of them,
    so that its working set (and whether it fits the page cache) does not depend on the run's order,
    and pulls each once before measuring."""
    import asyncio
    import os

    import aiohttp

    from bench.client import BlobFactory, Registry
    from bench.workloads import Options, PullLarge, PushLarge, TargetState

    class Counting(Registry):
        """The real client, counting the blobs it pulls."""

        def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
            super().__init__(url, session)
            self.pulls: list[str] = []

        async def pull_blob(self, repo: str, digest: str, size: int) -> int:
            self.pulls.append(digest)
            return await super().pull_blob(repo, digest, size)

    async def scenario() -> None:
        opts = Options(run_id=f"order{os.getpid()}", blob_size=256 << 10)
        state, factory = TargetState(), BlobFactory(os.urandom(1 << 20), "order")
        async with aiohttp.ClientSession() as session:
            reg = Counting(shardreg_target.url, session)
            push = PushLarge(opts, factory, state)
            for seq in range(5):
                await push.op(reg, 0, seq)
            pull = PullLarge(opts, factory, state)
            await pull.setup(reg, 1)
            assert len(state.large) == 5 and pull.pulled == state.large[:2]
            assert reg.pulls == [b.digest for _, b in state.large[:2]]  # each pulled once in the setup
            pulled = [await pull.op(reg, 0, seq) for seq in range(4)]
            assert [r.nbytes for r in pulled] == [256 << 10] * 4
            await pull.setup(reg, 32)  # eight at most: three more are pushed
            assert len(state.large) == 8 and pull.pulled == state.large

    asyncio.run(scenario())
