"""The bench's own pieces: sizes, percentiles, blob making, verification, CPU attribution."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import time

import aiohttp
import pytest
from aiohttp import web

from bench import machine, procstat, report
from bench.client import Blob, BlobFactory, Registry, VerifyError
from bench.command import parse_levels, parse_page_cache, parse_size, parse_workloads
from bench.report import comparisons
from bench.runner import latency_summary, percentile, run_level
from bench.targets import Target
from bench.workloads import WORKLOADS, OpResult, Options, TargetState, Workload


def test_parse_size_and_levels() -> None:
    assert parse_size("64MiB") == 64 << 20
    assert parse_size("8M") == 8 << 20
    assert parse_size("512k") == 512 << 10
    assert parse_size("1048576") == 1 << 20
    assert parse_levels("1,8,32") == [1, 8, 32]
    assert parse_workloads("all")[0] == "push-large"
    for bad in ("0", "1,x", "1000"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_levels(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        parse_workloads("push-huge")


def test_percentile_nearest_rank() -> None:
    values = [i / 1000 for i in range(1, 101)]
    assert percentile(values, 50) == 0.050
    assert percentile(values, 99) == 0.099
    assert percentile(values, 100) == 0.100
    assert percentile([], 50) is None
    s = latency_summary([0.002, 0.001, 0.003])
    assert (s["p50_ms"], s["p99_ms"], s["count"]) == (2.0, 3.0, 3)


def test_blob_factory_digests_are_true_at_and_around_its_hash_checkpoints() -> None:
    factory = BlobFactory(os.urandom(1 << 20), "run")
    step, suffix = BlobFactory.CHECKPOINT, BlobFactory.SUFFIX
    sizes = [suffix, suffix + 1, step + suffix - 1, step + suffix, step + suffix + 1, 3 * step + suffix,
             (1 << 20) + suffix, 700_001, 70_000, 5 * step + suffix]  # grows, then shrinks, then grows again
    for size in sizes:
        blob = factory.make(size)
        data = b"".join(bytes(p) for p in blob.pieces())
        assert blob.digest == "sha256:" + hashlib.sha256(data).hexdigest(), size
    # Checkpoints are kept up to the largest prefix asked for, not per size.
    assert len(factory._checkpoints) == (1 << 20) // step + 1


def test_blob_factory_makes_distinct_blobs_with_true_digests() -> None:
    factory = BlobFactory(os.urandom(3 << 20), "run")
    seen = set()
    for size in (4096, 2 << 20, 2 << 20, (2 << 20) + 77):
        blob = factory.make(size)
        data = b"".join(bytes(p) for p in blob.pieces(piece=300_000))
        assert len(data) == size == blob.size
        assert blob.digest == "sha256:" + hashlib.sha256(data).hexdigest()
        # Any sub-range reassembles to the same bytes (what chunked PATCHes send).
        mid = b"".join(bytes(p) for p in blob.pieces(size - 1000, size))
        assert mid == data[size - 1000 :]
        seen.add(blob.digest)
    assert len(seen) == 4


def test_pull_blob_rejects_wrong_bytes() -> None:
    good = Blob.of(b"x" * 5000)

    async def serve_blob(request: web.Request) -> web.Response:
        body = b"x" * 4999 + (b"y" if request.match_info["repo"] == "bad" else b"x")
        return web.Response(body=body, headers={"Docker-Content-Digest": good.digest})

    async def scenario() -> None:
        app = web.Application()
        app.router.add_get("/v2/{repo}/blobs/{digest}", serve_blob)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with aiohttp.ClientSession() as s:
                reg = Registry(f"http://127.0.0.1:{port}", s)
                assert await reg.pull_blob("good", good.digest, good.size) == 5000
                with pytest.raises(VerifyError, match="digest"):
                    await reg.pull_blob("bad", good.digest, good.size)
                with pytest.raises(VerifyError, match="Content-Length"):
                    await reg.pull_blob("good", good.digest, good.size + 1)
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_cpu_of_this_process_tree_is_read_from_proc() -> None:
    tree = procstat.sample_tree(os.getpid(), "shardreg")
    assert tree[0].pid == os.getpid() and tree[0].role == "supervisor"
    assert procstat.classify_shardreg("python -m common.cli shard --index 3 --config c", False) == "shard-3"
    assert procstat.classify_shardreg("/x/bin/shardreg serve --shards 2", True) == "supervisor"
    before = [procstat.ProcSample(1, "gateway", 1.0, 5), procstat.ProcSample(2, "shard-0", 2.0, 5)]
    after = [procstat.ProcSample(1, "gateway", 1.5, 5), procstat.ProcSample(2, "shard-0", 2.25, 5),
             procstat.ProcSample(3, "shard-0", 0.5, 9)]  # a restarted shard counts from zero
    assert procstat.cpu_delta(before, after) == {"gateway": 0.5, "shard-0": 0.75}
    before = [procstat.ProcSample(1, "gateway", 0, 5, read_bytes=100)]
    after = [procstat.ProcSample(1, "gateway", 0, 5, read_bytes=300), procstat.ProcSample(3, "shard-0", 0, 9, 50)]
    assert procstat.read_delta(before, after) == {"gateway": 200, "shard-0": 50}


def test_what_a_process_read_from_the_disk_is_counted_and_page_cache_hits_are_not(tmp_path) -> None:
    """A child reads a file evicted from the page cache (counted), then again (cached: not counted)."""
    path = tmp_path / "blob"
    with open(path, "wb") as f:
        f.write(os.urandom(4 << 20))
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    reader = ("import sys\nfor line in sys.stdin:\n    open(sys.argv[1], 'rb').read()\n"
              "    print('read', flush=True)\n")
    child = subprocess.Popen([sys.executable, "-c", reader, str(path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        def read_once() -> int:
            before = procstat.sample_tree(os.getpid(), "shardreg")
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline() == "read\n"
            return procstat.read_delta(before, procstat.sample_tree(os.getpid(), "shardreg")).get("other", 0)
        assert read_once() >= 4 << 20
        assert read_once() < 1 << 20
    finally:
        child.kill()
        child.wait()


def _result(target: str, ops: float, valid: bool = True) -> dict:
    return {"workload": "pull-small", "concurrency": 32, "target": target, "valid": valid, "ops_per_s": ops,
            "mb_per_s": ops * 2, "latency": {"p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 4.0},
            "cpu_ms_per_op": {"server": 2.0}, "cpu_ms_per_mb": {}}


def test_comparisons_are_ratios_and_void_when_either_side_failed() -> None:
    [c] = comparisons([_result("a", 300.0), _result("b", 200.0)], "a", "b")
    assert c["ratio"]["ops_per_s"] == 1.5 and c["ratio"]["p99_ms"] == 1.0
    assert c["ratio"]["server_cpu_ms_per_mb"] is None
    [c] = comparisons([_result("a", 300.0), _result("b", 200.0, valid=False)], "a", "b")
    assert c["ratio"]["ops_per_s"] is None


def test_sizing_prices_load_with_measured_costs() -> None:
    from bench.sizing import Load, cost_model, plan

    def row(workload: str, c: int, per: dict, unit: str) -> dict:
        return {"workload": workload, "target": "shardreg", "concurrency": c, "valid": True,
                "cpu_ms_per_mb": per if unit == "mb" else {}, "cpu_ms_per_op": per if unit == "op" else {}}

    doc = {"targets": [{"label": "shardreg"}], "results": [
        row("push-large", 1, {"gateway": 9.0, "shards": 9.0}, "mb"),
        row("push-large", 8, {"gateway": 3.0, "shards": 2.0}, "mb"),
        row("pull-small", 32, {"gateway": 4.0, "shards": 1.0}, "op"),
    ]}
    model = cost_model(doc)
    assert model["push-large"] == {"gateway": 3.0, "shards": 2.0, "concurrency": 8}
    # 300 MB/s x 3 ms + 100 pulls/s x 4 ms = 1.3 gateway cores; 0.7 shard cores.
    got = plan(model, Load(push_mb_s=300, image_pulls_s=100), utilisation=0.5, shard_disk_mb_s=100)
    assert got["cpu_cores"] == {"gateway": 1.3, "shards": 0.7}
    assert got["gateway_replicas"] == 3  # ceil(1.3 / 0.5)
    assert got["shard_replicas"] == 6  # the disk bounds it: ceil(300 / (100 x 0.5))
    with pytest.raises(ValueError):
        plan(model, Load(pull_mb_s=10))


class _BlockingWorkload(Workload):
    """Each operation holds the generator's loop for 40 ms, as a busy client would."""

    name = "blocking"

    async def op(self, reg: Registry, worker: int, seq: int) -> OpResult:
        time.sleep(0.04)
        await asyncio.sleep(0.01)  # then waits for the registry, letting other callbacks run
        return OpResult(0, (("part", 0.001),))


def test_the_generators_own_loop_lateness_is_reported_beside_the_parts() -> None:
    async def level() -> dict:
        async with aiohttp.ClientSession() as session:
            workload = _BlockingWorkload(Options(), BlobFactory(b"x" * 64, "run"), TargetState())
            target = Target("t", "http://127.0.0.1:9", "external")
            result = await run_level(target, session, workload, 2, None, 6, lambda *a: None)
            return result.to_json()

    r = asyncio.run(level())
    lag = r["generator_lag"]
    assert r["ops"] == 6 and lag["count"] >= 1
    assert lag["max_ms"] >= 30  # the probe waited behind a 40 ms operation at least once
    doc = {"results": [r], "comparisons": []}
    assert [row[1] for row in report._lags(doc)] == [report.GENERATOR_LAG]
    assert f"| blocking | 2 | t | {report.GENERATOR_LAG} | {lag['count']} |" in report.markdown(doc)


def test_the_page_cache_is_filled_with_a_sparse_files_pages_kept_until_the_run_ends(tmp_path) -> None:
    with machine.page_cache_filled(str(tmp_path), 8) as filled:
        (path,) = tmp_path.iterdir()
        st = path.stat()
        assert filled["mib"] == 8 and st.st_size == 8 << 20
        assert st.st_blocks == 0  # no disk space: a hole, read as zero pages
        resident = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                                  capture_output=True, text=True, check=True).stdout
        assert int(resident) == 8 << 20  # every page of it is in the page cache
        assert oct(st.st_mode & 0o777) == "0o600"
    assert list(tmp_path.iterdir()) == []  # gone with the run: its pages are free again
    with machine.page_cache_filled(str(tmp_path), 0) as nothing:
        assert nothing["mib"] == 0 and list(tmp_path.iterdir()) == []


def test_an_automatic_fill_takes_the_free_memory_but_a_reserve(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(machine, "mem_free_mib", lambda: machine.FILL_RESERVE_MIB + 6)
    with machine.page_cache_filled(str(tmp_path)) as filled:
        assert filled["mib"] == 6 and next(tmp_path.iterdir()).stat().st_size == 6 << 20
    monkeypatch.setattr(machine, "mem_free_mib", lambda: machine.FILL_RESERVE_MIB // 2)
    with machine.page_cache_filled(str(tmp_path)) as filled:
        assert filled["mib"] == 0 and list(tmp_path.iterdir()) == []  # less free than the reserve: nothing
    monkeypatch.setattr(machine, "mem_free_mib", lambda: 10 * machine.FILL_MAX_MIB)
    monkeypatch.setattr(machine, "_read_span", lambda fd, first, end: None)  # not 640 GiB of reading here
    with machine.page_cache_filled(str(tmp_path)) as filled:
        assert filled["mib"] == machine.FILL_MAX_MIB


def test_page_cache_option_and_which_workloads_fill_it() -> None:
    assert parse_page_cache("auto") is None and parse_page_cache("0") == 0 and parse_page_cache("512") == 512
    for bad in ("-1", "lots"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_page_cache(bad)
    assert {name for name, w in WORKLOADS.items() if w.stores} == {"push-large", "push-chunked", "push-small",
                                                                   "mixed-ci"}
