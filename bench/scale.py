"""``shardreg bench scale``: how the costs grow with the size of the registry (issue 17).

Starts ``shardreg serve`` (``--shards``, ``--workers``; search and metrics on, a shard metrics
port) on a temporary directory and a free loopback port, then grows ONE registry level by level
(``--levels 1,10,100`` × the bases ``--repos``, ``--tags`` of one repository, ``--blobs`` blob
records) through the real API (bench/scale_build.py), and at each level measures one request at
a time (median and p99 of ``--samples``): catalog pages (first and deep ``last=``), tag-list
pages of the big repository (first and deep), GraphQL pages (newest 10, a deep offset, a text
search, a filtered search), the gateway's and each shard's ``/metrics`` scrape; then a shard's
start-up (SIGTERM, the supervisor restarts it, until its ``/readyz`` is 200), LMDB and blob
directory sizes per shard, and RSS of every process. The machine's ceilings head the report.
Writes NAME.json, NAME.md (and NAME.png with matplotlib) under ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from bench import ceilings, machine
from bench.reshard import positive_int, shard_count
from bench.scale_build import BLOBS_PER_REPO, Builder, BuildError, Counts
from bench.scale_measure import CheckError, Probes, memory, shard_restart, sizes
from bench.scale_report import growth, markdown, write_chart
from bench.targets import TargetError, free_port, start_shardreg

MAX_CONCURRENCY = 256


def levels(text: str) -> list[int]:
    try:
        out = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"comma-separated integers: {text!r}") from e
    if not out or out[0] < 1 or out[-1] > 1000:
        raise argparse.ArgumentTypeError(f"levels must be 1..1000: {text!r}")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shardreg bench scale", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--levels", type=levels, default=[1, 10, 100], help="multiples of the bases (default 1,10,100)")
    p.add_argument("--repos", type=positive_int, default=1000, help="repositories at level 1 (default 1000)")
    p.add_argument("--tags", type=positive_int, default=1000, help="tags of one repository at level 1 (default 1000)")
    p.add_argument("--blobs", type=positive_int, default=10000, help="blob records at level 1 (default 10000)")
    p.add_argument("--shards", type=shard_count, default=2, help="shards (default 2)")
    p.add_argument("--workers", type=positive_int, default=2, help="gateway workers (default 2)")
    p.add_argument("--concurrency", type=positive_int, default=64, help="connections while building (default 64)")
    p.add_argument("--samples", type=positive_int, default=50, help="requests per latency figure (default 50)")
    p.add_argument("--disk-mb", type=int, default=64, help="MiB written to measure the fsync'ed write speed (0 skips)")
    p.add_argument("--restarts", type=int, default=1, help="shard restarts timed per level (default 1; 0 skips)")
    p.add_argument("--out", default="bench-results", help="directory of the JSON and Markdown results")
    p.add_argument("--name", help="result file name stem (default: date-scale)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.concurrency > MAX_CONCURRENCY:
        p.error(f"--concurrency must be 1..{MAX_CONCURRENCY}")
    if not 0 <= args.disk_mb <= 4096:
        p.error("--disk-mb must be 0..4096")
    if not 0 <= args.restarts <= 10:
        p.error("--restarts must be 0..10")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", args.name):
        p.error(f"--name may hold letters, digits, '.', '_' and '-' only: {args.name!r}")
    return args


def free_port_run(count: int) -> int:
    """A port ``p`` with ``p .. p+count-1`` all free (the shards' metrics ports)."""
    import socket

    for _ in range(50):
        base = free_port()
        try:
            for k in range(count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", base + k))
            return base
        except OSError:
            continue
    raise TargetError(f"no {count} consecutive free ports")


def cluster_config(metrics_port: int) -> dict[str, Any]:
    """Search and metrics on (what is measured), GC off (nothing built may go while measuring)."""
    return {"distSpecVersion": "1.1.0", "storage": {"rootDirectory": "/nonexistent", "gc": False},
            "http": {"address": "127.0.0.1", "port": 5000},
            "extensions": {"search": {"enable": True}, "metrics": {"enable": True}},
            "cluster": {"shardMetricsPort": metrics_port}}


async def measure_level(args: argparse.Namespace, url: str, data_dir: str, metrics_port: int, level: int,
                        builder: Builder, counts: Counts, say: Callable[[str], None]) -> dict[str, Any]:
    repos, tags, blobs = args.repos * level, args.tags * level, args.blobs * level
    # each repository adds one blob record (its config), the tags repository one, the blob repos one
    extra = max(0, blobs - repos - 2)
    say(f"level {level}x: building to {repos} repositories, {tags} tags, ~{blobs} blob records")
    build = await builder.grow(counts, repos, tags, extra, say)
    say(f"level {level}x: built in {build['seconds']} s ({build['requests']} requests); measuring")
    metrics_urls = [f"http://127.0.0.1:{metrics_port + i}/metrics" for i in range(args.shards)]
    probes = Probes(url, builder.session, metrics_urls)
    await asyncio.sleep(1.0)  # let background work after the build (search keys) settle
    blob_repos = -(-extra // BLOBS_PER_REPO)
    lat = await probes.latencies(repos, tags, args.samples, 1 + blob_repos)
    restarts = []
    for k in range(args.restarts):
        shard = (k + args.levels.index(level)) % args.shards  # another shard each level: no doubled back-off
        r = await shard_restart(builder.session, data_dir, shard, f"http://127.0.0.1:{metrics_port + shard}/readyz")
        restarts.append(r | {"shard": shard})
        say(f"  shard {shard} restart: SIGTERM to ready {r['sigterm_to_ready_s']} s, its own start-up "
            f"{r['process_start_to_ready_s']} s")
        await wait_gateway_ready(builder.session, url)
    totals = await blob_totals(builder.session, metrics_urls)
    return {"level": level, "repos": repos + 1 + blob_repos, "tags": tags,
            "blob_records": totals["count"], "blob_bytes": totals["bytes"], "build": build,
            "latency": lat, "restarts": restarts, "sizes": sizes(data_dir, args.shards), "rss": memory(data_dir),
            "rss_anon": memory(data_dir, "RssAnon")}


async def wait_gateway_ready(session: aiohttp.ClientSession, url: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            async with session.get(url + "/readyz") as r:
                await r.read()
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise CheckError("the gateway is not ready after a shard restart")


async def blob_totals(session: aiohttp.ClientSession, metrics_urls: list[str]) -> dict[str, int]:
    """Blob records and bytes over the shards, from their metrics (the counters)."""
    count = size = 0
    for u in metrics_urls:
        async with session.get(u) as r:
            text = (await r.read()).decode()
        for line in text.splitlines():
            if line.startswith("shardreg_shard_blob_count{"):
                count += int(float(line.rsplit(" ", 1)[1]))
            elif line.startswith("shardreg_shard_blob_bytes{"):
                size += int(float(line.rsplit(" ", 1)[1]))
    return {"count": count, "bytes": size}


async def run(args: argparse.Namespace, say: Callable[[str], None] = print) -> dict[str, Any]:
    started = datetime.now(UTC)
    disk = machine.disk_write_speed(None, args.disk_mb, min(16, args.disk_mb), rounds=1) if args.disk_mb > 0 else None
    limits = ceilings.measure(disk)
    say(ceilings.summary_line(limits))
    metrics_port = free_port_run(args.shards)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cluster_config(metrics_port), f)
    try:
        target = start_shardreg(shards=args.shards, workers=args.workers, label="scale",
                                extra_args=["--config", f.name])
    finally:
        os.unlink(f.name)
    results: list[dict[str, Any]] = []
    error = None
    try:
        assert target.data_dir is not None
        conn = aiohttp.TCPConnector(limit=args.concurrency + 8, keepalive_timeout=60)
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
            builder = Builder(target.url, session, args.concurrency)
            counts = Counts()
            for level in args.levels:
                results.append(await measure_level(args, target.url, target.data_dir, metrics_port, level,
                                                   builder, counts, say))
    except (BuildError, CheckError, aiohttp.ClientError) as e:
        error = f"{type(e).__name__}: {e}"
        say(f"stopped: {error}")
    finally:
        target.stop()
    return {"name": args.name, "format": 1, "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine.describe(), "ceilings": limits,
            "options": {k: getattr(args, k) for k in ("levels", "repos", "tags", "blobs", "shards", "workers",
                                                       "concurrency", "samples", "restarts")},
            "levels": results, "growth": growth(results), "error": error}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name = args.name or datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-scale"
    args.name = name
    os.makedirs(args.out, exist_ok=True)
    try:
        doc = asyncio.run(run(args, say=lambda line: print(line, flush=True)))
    except TargetError as e:
        print(f"shardreg bench scale: {e}", file=sys.stderr)
        return 3
    doc["command"] = "shardreg bench scale " + shlex.join(sys.argv[2:] if argv is None else argv)
    base = os.path.join(args.out, name)
    with open(base + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(markdown(doc))
    png = write_chart(doc, base + ".png")
    print(markdown(doc))
    print(f"results: {base}.json, {base}.md" + (f", {png}" if png else ""))
    bad = doc["error"] or any(v["errors"] for lv in doc["levels"] for v in lv["latency"].values())
    return 1 if bad else 0
