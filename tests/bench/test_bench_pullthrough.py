"""The `pull-through` bench scenario's own pieces: arguments, the upstream's access log, the CPU and
ratio figures, and the report. The scenario itself runs Distribution and a cluster (docs/performance.md)."""

from __future__ import annotations

import argparse
import json
from collections import Counter

import pytest

from bench.cli import main as cli_main
from bench.command import parse_workloads
from bench.pullthrough import cpu_figures, markdown, median, parse_args, summarize, upstream_requests

SETUP = {"images": 4, "layers": 3, "layer_size": 4 << 20, "clients": 16, "shards": 2, "workers": 2,
         "req_concurrent": 8, "rounds": 5}


def phase(seconds: float, mb_per_s: float, **cpu: float) -> dict:
    nbytes = int(seconds * mb_per_s * 1e6)
    return {"seconds": seconds, "mb_per_s": mb_per_s, "bytes": nbytes, "cpu_s": cpu,
            "cpu_ms_per_mb": cpu_figures(cpu, nbytes)}


def test_arguments() -> None:
    args = parse_args([])
    assert (args.images, args.layers, args.layer_size, args.clients) == (4, 3, 4 << 20, 16)
    assert (args.shards, args.workers, args.req_concurrent, args.rounds) == (2, 2, 8, 5)
    assert args.out == "bench-results" and args.name is None
    args = parse_args(["--images", "2", "--layers", "1", "--layer-size", "512k", "--clients", "8", "--shards", "3",
                       "--workers", "1", "--req-concurrent", "4", "--rounds", "3", "--out", "bench/results",
                       "--name", "pull-through-1"])
    assert (args.images, args.layers, args.layer_size, args.clients) == (2, 1, 512 << 10, 8)
    assert (args.shards, args.workers, args.req_concurrent, args.rounds) == (3, 1, 4, 3)
    assert args.out == "bench/results" and args.name == "pull-through-1"
    for bad in (["--images", "0"], ["--layers", "-1"], ["--layer-size", "12 apples"], ["--layer-size", "100"],
                ["--layer-size", "2GiB"], ["--clients", "0"], ["--clients", "257"], ["--shards", "300"],
                ["--rounds", "x"], ["--name", "../escape"], ["--unknown"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(bad)
        assert exc.value.code == 2, bad


def test_the_cli_dispatches_and_the_workload_list_points_there(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["pull-through", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "shardreg bench pull-through" in out and "--req-concurrent" in out
    with pytest.raises(argparse.ArgumentTypeError, match="shardreg bench pull-through --help"):
        parse_workloads("pull-large,pull-through")


def test_upstream_requests_from_the_access_log() -> None:
    log = "\n".join([
        '127.0.0.1 - - [06/Dec/2026:22:00:00 +0000] "GET /v2/pt/img0/manifests/1 HTTP/1.1" 200 1234 "" "python-httpx"',
        '127.0.0.1 - - [06/Dec/2026:22:00:00 +0000] "GET /v2/pt/img0/blobs/sha256:aa HTTP/1.1" 200 9 "" "httpx"',
        '127.0.0.1 - - [06/Dec/2026:22:00:01 +0000] "GET /v2/pt/img0/blobs/sha256:aa HTTP/1.1" 200 9 "" "httpx"',
        '127.0.0.1 - - [06/Dec/2026:22:00:01 +0000] "HEAD /v2/pt/img0/manifests/1 HTTP/1.1" 200 0 "" "httpx"',
        '127.0.0.1 - - [06/Dec/2026:22:00:01 +0000] "GET /v2/pt/img1/manifests/2 HTTP/1.1" 404 0 "" "httpx"',
        '127.0.0.1 - - [06/Dec/2026:22:00:01 +0000] "GET /v2/local/x/manifests/1 HTTP/1.1" 200 10 "" "httpx"',
        'time="2026-12-06T22:00:01Z" level=error msg="unrelated"',
    ])
    counted = upstream_requests(log, "/v2/pt/")
    assert counted == Counter({"/v2/pt/img0/manifests/1": 1, "/v2/pt/img0/blobs/sha256:aa": 2})


def test_cpu_per_mb_charges_the_serving_registry() -> None:
    # the direct phase: only the upstream and the client spent CPU, and the upstream is the server
    direct = cpu_figures({"upstream": 2.0, "generator": 1.0}, 100_000_000)
    assert direct == {"server": 20.0, "generator": 10.0, "upstream": 20.0}
    # through the cache: the cache's components are the server, the upstream stays apart
    cold = cpu_figures({"gateway": 1.5, "shards": 0.5, "supervisor": 0.0, "upstream": 1.0, "generator": 0.5},
                       50_000_000)
    assert cold["server"] == 40.0 and cold["gateway"] == 30.0 and cold["shards"] == 10.0
    assert cold["upstream"] == 20.0 and cold["generator"] == 10.0
    assert cpu_figures({"gateway": 1.0}, 0) == {"server": None, "gateway": None}


def test_median_round() -> None:
    rounds = [{"seconds": s} for s in (3.0, 1.0, 2.0, 9.0, 4.0)]
    assert median(rounds)["seconds"] == 3.0
    assert median(rounds[:4])["seconds"] == 2.0
    assert median(rounds[:1])["seconds"] == 3.0


def test_summary_and_markdown_report() -> None:
    phases = {"direct": phase(8.0, 100.0, upstream=4.0, generator=3.0),
              "cold": phase(10.0, 80.0, gateway=6.0, shards=2.0, supervisor=0.1, upstream=1.0, generator=3.0),
              "warm": phase(8.8, 91.0, gateway=5.0, shards=1.5, generator=3.0),
              "local": phase(8.0, 100.0, gateway=5.0, shards=1.2, generator=3.0)}
    requests = Counter({f"/v2/pt/img{i}/blobs/{k}": 1 for i in range(4) for k in range(5)})
    doc = summarize(SETUP, phases, requests)
    assert doc["upstream_requests"] == 20 and doc["distinct_objects"] == 20 and doc["max_requests_per_object"] == 1
    assert doc["cold_vs_direct_throughput"] == 0.8 and doc["warm_vs_local_time"] == 1.1 and doc["warm_target_met"]
    doc |= {"command": "shardreg bench pull-through --clients 16", "started": "2026-12-06T22:30:00+00:00",
            "upstream_version": "2.8.2"}
    lines = markdown(doc).splitlines()
    assert "4 images of 3 × 4.0 MiB, 16 clients, 2 shards, 2 gateway workers" in lines[0]
    assert "Distribution 2.8.2" in lines[0]
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header == ["phase", "s", "client MB/s", "server CPU ms/MB", "upstream CPU ms/MB", "client CPU ms/MB"]
    rows = {r[0]: r[1:] for r in ([c.strip() for c in line.strip("|").split("|")] for line in lines[4:8])}
    assert rows["direct from the upstream"] == ["8.0", "100", "5.0", "–", "3.8"]
    # cold: (6 + 2 + 0.1) s of the cache's CPU for 800 MB; the upstream's 1 s apart
    assert rows["cold, through shardreg (empty cache)"] == ["10.0", "80.0", "10.1", "1.2", "3.8"]
    assert rows["warm, from the cache"][:3] == ["8.8", "91.0", "8.1"]
    assert rows["local (pushed to shardreg)"][:3] == ["8.0", "100", "7.8"]
    assert "**20 for 20 distinct objects** (at most 1 per object)" in lines[9]
    assert "Cold/direct throughput 0.80;" in lines[9] and "**1.10** (target ≤ 1.1: met)" in lines[9]

    # a slow cache hit and a duplicated upstream fetch show as such
    phases["warm"] = phase(12.0, 67.0, gateway=5.0)
    requests["/v2/pt/img0/blobs/0"] += 2
    slow = summarize(SETUP, phases, requests) | {"command": "x", "started": "y"}
    assert slow["warm_vs_local_time"] == 1.5 and not slow["warm_target_met"]
    assert slow["upstream_requests"] == 22 and slow["max_requests_per_object"] == 3
    text = markdown(slow)
    assert "**1.50** (target ≤ 1.1: not met)" in text and "(at most 3 per object)" in text
    assert "upstream Distribution ?" in text


def test_the_scenario_end_to_end(tmp_path) -> None:
    """A tiny run through `shardreg bench pull-through`: real Distribution upstream, real cluster."""
    rc = cli_main(["pull-through", "--images", "2", "--layers", "1", "--layer-size", "64KiB", "--clients", "3",
                   "--shards", "1", "--workers", "1", "--rounds", "1", "--out", str(tmp_path), "--name", "tiny"])
    assert rc == 0
    doc = json.loads((tmp_path / "tiny.json").read_text())
    assert doc["kind"] == "pull-through" and doc["command"].startswith("shardreg bench pull-through --images 2")
    # 2 images of a manifest, a config and a layer: each fetched once although 3 clients missed it
    assert doc["upstream_requests"] == doc["distinct_objects"] == 6 and doc["max_requests_per_object"] == 1
    for name in ("direct", "cold", "warm", "local"):
        m = doc["phases"][name]
        assert m["bytes"] > 3 * 2 * (64 << 10) and m["mb_per_s"] > 0
        assert m["cpu_ms_per_mb"]["server"] is not None and "generator" in m["cpu_s"]
    assert "upstream" in doc["phases"]["cold"]["cpu_s"] and {"gateway", "shards"} <= set(doc["phases"]["warm"]["cpu_s"])
    assert (tmp_path / "tiny.md").read_text() == markdown(doc)
