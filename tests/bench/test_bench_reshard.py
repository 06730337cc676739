"""The `reshard` bench scenario's own pieces: arguments, the status documents of the resize API
(/work/wt/RESHARD-API.md), and the report. The scenario itself needs a cluster that can resize."""

from __future__ import annotations

import copy

import pytest

from bench.client import VerifyError
from bench.reshard import (
    ClientLoad,
    StatusSample,
    finished,
    markdown,
    move_figures,
    parse_args,
    plan,
    progress_line,
    step_report,
)

#: The status document of the contract, mid-move.
RUNNING = {
    "epoch": 5, "phase": "transition", "shards": 3, "from": 2, "to": 3,
    "resize": {"id": "r7", "state": "running", "started": 1765000000.0, "finished": None, "maxMbps": 50.0,
               "error": None},
    "driver": {"holder": "gateway pid 1234", "leaseAge": 1.2},
    "progress": {"names": {"done": 312, "left": 688}, "bytes": {"done": 4100000000, "left": 7900000000},
                 "bytesPerSecond": 38000000.0, "etaSeconds": 190.0, "fence": {"p50": 0.004, "p99": 0.041},
                 "busyRetries": 0, "uploadsRefused": 0},
    "shardStates": [{"index": 0, "up": True, "epoch": 5, "role": "source", "owned": 400, "moving": 12,
                     "switched": 100, "bytesLeft": 123}],
    "errors": [],
}


def done_doc(shards: int = 3) -> dict:
    doc = copy.deepcopy(RUNNING)
    doc.update(phase="stable", shards=shards, **{"from": shards, "to": shards})
    doc["resize"].update(state="done", finished=1765000120.0)
    doc["progress"].update(names={"done": 1000, "left": 0}, bytes={"done": 12000000000, "left": 0})
    return doc


def test_arguments() -> None:
    args = parse_args([])
    assert (args.shards, args.grow_to, args.repos, args.clients, args.max_mbps) == (2, 3, 200, 8, None)
    assert args.plan == [(2, 3), (3, 2)] and args.url is None
    args = parse_args(["http://127.0.0.1:5000", "--shards", "3", "--grow-to", "5", "--no-shrink", "--max-mbps", "40",
                       "--repos", "1000", "--clients", "16", "--user", "admin", "--password-stdin"])
    assert args.plan == [(3, 5)] and args.max_mbps == 40.0 and args.url == "http://127.0.0.1:5000"
    assert plan(2, 4) == [(2, 4), (4, 2)]
    for bad in (["--grow-to", "2"], ["--shards", "0"], ["--grow-to", "300"], ["--max-mbps", "0"],
                ["--clients", "x"], ["--password-stdin"], ["--poll", "-1"]):
        with pytest.raises(SystemExit) as exc:
            parse_args(bad)
        assert exc.value.code == 2, bad


def test_finished_follows_the_cli_rule() -> None:
    assert finished(RUNNING, 3) is None
    assert finished(done_doc(3), 3) is True
    assert finished(done_doc(2), 3) is None  # a done resize to another count is not this one
    for state in ("failed", "aborted"):
        doc = copy.deepcopy(RUNNING)
        doc["resize"]["state"] = state
        assert finished(doc, 3) is False
    assert finished({"epoch": 1, "phase": "stable", "shards": 2, "resize": None}, 3) is None


def test_move_figures_from_status_polls() -> None:
    samples = [StatusSample.of(10.0, RUNNING), StatusSample.of(40.0, done_doc())]
    assert samples[0].names_done == 312 and samples[0].bytes_left == 7900000000 and samples[0].state == "running"
    figures = move_figures(samples, done_doc())
    assert figures["seconds"] == 40.0 and figures["names_moved"] == 1000 and figures["bytes_moved"] == 12000000000
    assert figures["names_per_s"] == 25.0
    assert figures["mb_per_s"] == round(12000000000 / (1 << 20) / 40, 3)
    assert figures["fence_p50_ms"] == 4.0 and figures["fence_p99_ms"] == 41.0
    assert figures["reported_bytes_per_s"] == 38000000.0 and figures["errors"] == []
    # No poll at all (the POST was refused): zeros, no division.
    empty = move_figures([], {"errors": ["HTTP 409"]})
    assert empty["names_per_s"] is None and empty["bytes_moved"] == 0 and empty["errors"] == ["HTTP 409"]
    assert "312/1000 repos" in progress_line(3, samples[0]) and "running" in progress_line(3, samples[0])


def test_client_errors_are_counted_by_status() -> None:
    load = ClientLoad()
    load.latencies["pull"] += [0.010, 0.020, 0.030]
    load.latencies["push"] += [0.100]
    load.error("pull", VerifyError("get blob: HTTP 404, expected 200"))
    load.error("push", VerifyError("put manifest: HTTP 503, expected 201"))
    load.error("push", VerifyError("put manifest: HTTP 503, expected 201"))
    load.error("pull", TimeoutError("slow"))
    summary = load.summary()
    assert summary["errors"] == 4 and summary["errors_5xx"] == 2 and summary["errors_404"] == 1
    assert summary["errors_by_kind"] == {"pull HTTP 404": 1, "pull TimeoutError": 1, "push HTTP 503": 2}
    assert summary["ops"] == {"push": 1, "pull": 3}
    assert summary["latency"]["pull"]["p50_ms"] == 20.0 and summary["latency"]["pull"]["p99_ms"] == 30.0


def test_markdown_report() -> None:
    load = ClientLoad()
    load.latencies["pull"] += [0.012, 0.050]
    load.latencies["push"] += [0.090, 0.300]
    grow = step_report(2, 3, [StatusSample.of(40.0, done_doc(3))], done_doc(3), load.summary(), "done")
    refused = step_report(3, 2, [], {"errors": ["POST: HTTP 409"]}, ClientLoad().summary(), "refused")
    doc = {"command": "shardreg bench reshard --repos 1000", "started": "2026-12-06T21:00:00+00:00",
           "options": {"repos": 1000, "clients": 8, "max_mbps": 50.0}, "steps": [grow, refused]}
    text = markdown(doc)
    lines = text.splitlines()
    assert "1000 repositories, 8 clients, limit 50.0 MB/s" in lines[0]
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header[:3] == ["resize", "outcome", "s"] and "client errors (5xx, 404)" in header
    row = [c.strip() for c in lines[4].strip("|").split("|")]
    assert row[:5] == ["2→3", "done", "40.0", "1000", "25.0"]
    assert row[5] == "11444" and row[6] == "286" and row[7] == "41.0"
    assert row[8] == "12.0/50.0" and row[9] == "90.0/300" and row[10] == "0 (0, 0)"
    assert [c.strip() for c in lines[5].strip("|").split("|")][:2] == ["3→2", "refused"]
    assert grow["polls"][0]["names_done"] == 1000
