"""``shardreg bench`` / ``python -m bench``: run workloads against one or two registries.

With no URL a local shardreg cluster is started on a temporary data directory (``--shards``,
``--workers``) and stopped afterwards; ``--compare distribution`` does the same with CNCF
Distribution, and the two are measured alternately, level by level, in the same run.
Two scenarios have arguments of their own: ``shardreg bench reshard --help`` and
``shardreg bench pull-through --help`` (and ``shardreg bench scale --help``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shlex
import sys
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from bench import ceilings, machine, report
from bench.client import BlobFactory
from bench.goals import goals
from bench.runner import LevelResult, run_level
from bench.targets import Target, TargetError, external, is_loopback, start_distribution, start_shardreg
from bench.workloads import WORKLOADS, Options, TargetState, Workload

SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmg]?)(i?b?)$", re.IGNORECASE)
MAX_CONCURRENCY = 256
MAX_BLOB = 1 << 30
#: Results go next to where the bench runs, not into the source tree (``.gitignore`` lists it).
DEFAULT_OUT = "bench-results"
#: Scenarios with their own arguments and report: ``shardreg bench NAME`` (bench/cli.py dispatches them).
SCENARIOS = ("reshard", "pull-through", "scale")


def parse_size(text: str) -> int:
    """``64MiB``, ``8M``, ``512k``, ``1048576`` -> bytes (K/M/G are powers of 1024)."""
    m = SIZE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    return int(float(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()])


def parse_page_cache(text: str) -> int | None:
    """``auto`` -> None (fill the free memory when a workload stores bytes), else MiB (0: leave it)."""
    if text == "auto":
        return None
    try:
        mib = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not 'auto' or a number of MiB: {text!r}") from e
    if mib < 0:
        raise argparse.ArgumentTypeError("the page-cache fill is 0 or more MiB")
    return mib


def parse_levels(text: str) -> list[int]:
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from e
    if not levels or any(c < 1 or c > MAX_CONCURRENCY for c in levels):
        raise argparse.ArgumentTypeError(f"concurrency levels must be 1..{MAX_CONCURRENCY}")
    return levels


def parse_workloads(text: str) -> list[str]:
    if text == "all":
        return list(WORKLOADS)
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    scenarios = [n for n in unknown if n in SCENARIOS]
    if scenarios:
        raise argparse.ArgumentTypeError(f"{scenarios[0]} is a scenario of its own: shardreg bench {scenarios[0]} --help")
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shardreg bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", nargs="?", help="registry to measure (default: start a local shardreg cluster; "
                                          "'distribution' starts CNCF Distribution instead)")
    p.add_argument("-w", "--workloads", type=parse_workloads, default=list(WORKLOADS),
                   help=f"comma-separated, or 'all' (default): {', '.join(WORKLOADS)}")
    p.add_argument("-c", "--concurrency", type=parse_levels, default=[1, 8],
                   help="comma-separated concurrency levels (default 1,8)")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("-d", "--duration", type=float, help="seconds per workload, level and registry (default 10)")
    stop.add_argument("-n", "--count", type=int, help="operations per workload, level and registry")
    p.add_argument("-r", "--rounds", type=int, default=1,
                   help="alternated rounds per level and registry, pooled (their spread is kept in the JSON)")
    p.add_argument("--compare", metavar="URL|distribution",
                   help="also measure this registry, alternating; 'distribution' starts CNCF Distribution")
    p.add_argument("--shards", type=int, default=2, help="shards of the local cluster (default 2)")
    p.add_argument("--workers", type=int, default=1, help="gateway workers of the local cluster (default 1)")
    p.add_argument("--pid", type=int, help="root PID of the registry at URL, to read its CPU time")
    p.add_argument("--compare-pid", type=int, help="root PID of the --compare registry at URL")
    p.add_argument("--label", help="name of the measured registry in the report")
    p.add_argument("--blob-size", type=parse_size, default=64 << 20, help="large blob size (default 64MiB)")
    p.add_argument("--chunk-size", type=parse_size, default=8 << 20, help="push-chunked PATCH size (default 8MiB)")
    p.add_argument("--small-repos", type=int, default=100, help="repositories push-small spreads over")
    p.add_argument("--list-repos", type=int, default=10_000, help="repositories the list workload needs")
    p.add_argument("--list-tags", type=int, default=1_000, help="tags of the list workload's repository")
    p.add_argument("--page-size", type=int, default=100, help="n= of catalog and tags pages")
    p.add_argument("--referrers", type=int, default=100, help="signatures/SBOMs attached for 'referrers'")
    p.add_argument("--disk-mb", type=int, default=256,
                   help="MiB written to measure the disk's fsync'ed sequential write speed (0: skip)")
    p.add_argument("--page-cache", type=parse_page_cache, default=None, metavar="auto|MiB",
                   help="fill the page cache first with this many MiB of a sparse file's pages, so that "
                        "stored bytes land on reclaimed memory as on a server that has run a while; "
                        "auto (default): all free memory but 2 GiB (at most 64 GiB) when a workload stores bytes, "
                        "0: leave it")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"directory for JSON and PNG (default ./{DEFAULT_OUT}/, relative to where you run it)")
    p.add_argument("--name", help="file name stem of the results (default: time and registries)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds a socket read may wait before the operation counts as an error")
    p.add_argument("--seed", type=int, default=1, help="seed of the random choices")
    p.add_argument("--allow-remote", action="store_true", help="allow a registry URL that is not on loopback")
    p.add_argument("--markdown", action="store_true", help="also write the tables as NAME.md")
    p.add_argument("--wide", action="store_true",
                   help="tables with every column (p95, CPU per MB and per component); default: 80 columns")
    p.add_argument("-q", "--quiet", action="store_true", help="no live progress display")
    return p


def _label_for(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else (parts.hostname or url)


def _start_targets(args: argparse.Namespace) -> list[Target]:
    targets: list[Target] = []
    try:
        if args.url == "distribution":
            targets.append(start_distribution())
        elif args.url:
            targets.append(external(args.url, args.label or _label_for(args.url), args.pid))
        else:
            targets.append(start_shardreg(args.shards, args.workers, label=args.label or "shardreg"))
        if args.compare == "distribution":
            targets.append(start_distribution())
        elif args.compare:
            targets.append(external(args.compare, _label_for(args.compare), args.compare_pid))
        if len(targets) == 2 and targets[0].label == targets[1].label:
            targets[1].label += "-2"
    except BaseException:
        for t in targets:
            t.stop()
        raise
    return targets


async def _run_all(args: argparse.Namespace, targets: list[Target], opts: Options, console: Console) -> list[dict]:
    factory = BlobFactory(os.urandom(max(args.blob_size, opts.small_max, 1 << 20)), opts.run_id)
    states = {t.label: TargetState() for t in targets}
    results: list[dict] = []
    sessions = {}
    limit = max(args.concurrency) + 32
    for t in targets:
        sessions[t.label] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=args.timeout),
            auto_decompress=False)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.fields[ops]} ops, {task.fields[err]} errors"), TimeElapsedColumn(),
                        console=console, transient=True, disable=args.quiet)
    try:
        with progress:
            for name in args.workloads:
                instances: dict[str, Workload] = {t.label: WORKLOADS[name](opts, factory, states[t.label])
                                                  for t in targets}
                for k, level in enumerate(args.concurrency):
                    pooled: dict[str, LevelResult] = {}
                    for rnd in range(args.rounds):
                        # alternate the registries, flipping the order at every level and round
                        order = targets if (k + rnd) % 2 == 0 else list(reversed(targets))
                        for t in order:
                            res = await _one_level(args, t, sessions[t.label], instances[t.label], name, level,
                                                   progress, console, rnd)
                            if t.label in pooled:
                                pooled[t.label].merge(res)
                            else:
                                pooled[t.label] = res
                    for t in order:
                        results.append(pooled[t.label].to_json())
    finally:
        for s in sessions.values():
            await s.close()
    return results


async def _one_level(args: argparse.Namespace, t: Target, session: aiohttp.ClientSession, workload: Workload,
                     name: str, level: int, progress: Progress, console: Console, rnd: int) -> LevelResult:
    desc = f"{name} c={level} {t.label}" + (f" round {rnd + 1}/{args.rounds}" if args.rounds > 1 else "")
    total = args.count if args.count else args.duration
    window = f"{args.count} ops" if args.count else f"{args.duration:g} s"
    task = progress.add_task(f"{desc} · starting", total=total, ops=0, err=0)
    t0 = time.monotonic()

    def tick(ops: int, err: int) -> None:
        done = ops + err if args.count else time.monotonic() - t0
        progress.update(task, completed=done, ops=ops, err=err)

    def setup_progress(what: str, done: int, of: int) -> None:
        # the bar follows the setup step, then restarts for the measured window
        progress.update(task, description=f"{desc} · setup: {what} {done}/{of}", completed=done, total=of)

    def phase(step: str) -> None:
        nonlocal t0
        if step == "measuring":
            t0 = time.monotonic()
            progress.update(task, description=f"{desc} · measuring {window}", completed=0, total=total)
        else:
            progress.update(task, description=f"{desc} · {step}")

    res = await run_level(t, session, workload, level, None if args.count else args.duration, args.count,
                          setup_progress, tick, phase)
    progress.remove_task(task)
    doc = res.to_json()
    state = "ok" if doc["valid"] else f"[red]{doc['errors']} errors[/]"
    if doc["setup_error"]:
        state = f"[red]setup failed: {doc['setup_error']}[/]"
    if not args.quiet:
        figure = f"{doc['mb_per_s']:.1f} MB/s" if doc["headline"] == "MB/s" else f"{doc['ops_per_s']:.1f} ops/s"
        console.print(f"{desc}: {doc['ops']} ops, {figure}, p99 {doc['latency']['p99_ms']} ms, {state}")
    return res


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.duration is None and args.count is None:
        args.duration = 10.0
    if (args.duration is not None and args.duration <= 0) or (args.count is not None and args.count < 1) \
            or args.rounds < 1:
        print("shardreg bench: --duration and --count must be positive", file=sys.stderr)
        return 2
    if not 1 << 10 <= args.blob_size <= MAX_BLOB or args.chunk_size < 1 << 10:
        print("shardreg bench: --blob-size must be 1KiB..1GiB and --chunk-size >= 1KiB", file=sys.stderr)
        return 2
    for url in (args.url, args.compare):
        if url == "distribution":
            continue
        if url and not args.allow_remote and not is_loopback(url):
            print(f"shardreg bench: {url} is not on loopback; pass --allow-remote to measure it", file=sys.stderr)
            return 2
    console = Console(stderr=False, width=None if sys.stdout.isatty() else 200)
    started = datetime.now(UTC)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    run_id = "r" + started.strftime("%Y%m%dt%H%M%S") + f"{os.getpid() % 1000:03d}"
    opts = Options(run_id=run_id, blob_size=args.blob_size, chunk_size=args.chunk_size,
                   small_repos=args.small_repos, list_repos=args.list_repos, list_tags=args.list_tags,
                   page_size=args.page_size, referrers=args.referrers, seed=args.seed)
    stack = contextlib.ExitStack()
    try:
        targets = _start_targets(args)
    except TargetError as e:
        print(f"shardreg bench: {e}", file=sys.stderr)
        return 3
    fill_mib = args.page_cache
    if fill_mib is None and not any(WORKLOADS[w].stores for w in args.workloads):
        fill_mib = 0
    try:
        filled = stack.enter_context(machine.page_cache_filled(targets[0].data_dir, fill_mib))
        if filled["mib"]:
            console.print(f"page cache filled first: {filled['mib']} MiB in {filled['seconds']} s "
                          f"(free memory {filled['free_mib_before']} -> {filled['free_mib_after']} MiB)")
        disk = None
        if args.disk_mb > 0:
            disk = machine.disk_write_speed(targets[0].data_dir, args.disk_mb, min(64, args.blob_size >> 20 or 1))
            console.print(f"disk sequential write with fsync: {disk['mb_per_s']:.0f} MB/s, median of "
                          f"{disk['rounds_mb_per_s']} (physical limit of push-large)")
        limits = ceilings.measure(disk)  # loopback TCP, SHA-256 per core (issue 17)
        console.print(ceilings.summary_line(limits))
        results = asyncio.run(_run_all(args, targets, opts, console))
    finally:
        stack.close()
        for t in targets:
            t.stop()
    name = args.name or (started.strftime("%Y%m%d-%H%M%S") + "-" + "-vs-".join(t.label for t in targets))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    doc: dict[str, Any] = {
        "name": name,
        "format": 1,
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "shardreg bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": machine.describe() | {"loadavg_start": load_at_start},
        "disk": disk,
        "page_cache_fill": filled,
        "ceilings": limits,
        "options": {"workloads": args.workloads, "concurrency": args.concurrency, "duration_s": args.duration,
                    "count": args.count, "rounds": args.rounds, "blob_size": args.blob_size, "chunk_size": args.chunk_size,
                    "small_repos": args.small_repos, "list_repos": args.list_repos, "list_tags": args.list_tags,
                    "page_size": args.page_size, "referrers": args.referrers, "shards": args.shards,
                    "workers": args.workers, "seed": args.seed, "run_id": run_id},
        "targets": [t.describe() for t in targets],
        "results": results,
        "comparisons": report.comparisons(results, targets[0].label, targets[1].label) if len(targets) > 1 else [],
    }
    doc["goals"] = goals(doc)
    doc["fractions"] = ceilings.fractions(doc)
    json_path = os.path.join(args.out, name + ".json")
    png_path = os.path.join(args.out, name + ".png")
    report.write_json(doc, json_path)
    report.write_chart(doc, png_path)
    if args.markdown:
        with open(os.path.join(args.out, name + ".md"), "w") as f:
            f.write(report.markdown(doc))
    report.print_tables(doc, console, wide=args.wide)
    for g in doc["goals"]:
        mark = "[green]met[/]" if g["met"] else "[red]not met[/]"
        console.print(f"target: {g['goal']}: {g['value']} {mark}")
    console.print(f"results: {json_path}, {png_path}")
    primary = targets[0].label
    return 0 if all(r["valid"] for r in results if r["target"] == primary) else 1
