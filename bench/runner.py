"""Runs one workload at one concurrency against one registry and measures it.

The measured window starts after the workload's setup: ``concurrency`` tasks take operation
numbers from a shared counter until ``count`` operations were started or ``duration`` seconds
passed (operations in flight then finish and count). CPU time of the registry's processes and
of this process is read from ``/proc`` just before and just after the window.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench import procstat
from bench.client import Registry, VerifyError
from bench.targets import Target
from bench.workloads import Progress, Workload

MB = float(1 << 20)
#: A level stops early once this many operations failed and none succeeded.
GIVE_UP_AFTER = 20
ERROR_SAMPLES = 5
#: How often the generator looks at its own loop's lateness (LagProbe): 200 cheap wake-ups a second.
LAG_INTERVAL = 0.005


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(values: list[float]) -> dict:
    v = sorted(values)

    def ms(x: float | None) -> float | None:
        return None if x is None else round(x * 1000, 3)

    return {
        "count": len(v),
        "p50_ms": ms(percentile(v, 50)),
        "p95_ms": ms(percentile(v, 95)),
        "p99_ms": ms(percentile(v, 99)),
        "max_ms": ms(v[-1] if v else None),
        "mean_ms": ms(sum(v) / len(v) if v else None),
    }


def _add_into(totals: dict[str, Any], more: dict[str, Any]) -> None:
    for role, value in more.items():
        totals[role] = totals.get(role, 0) + value


@dataclass
class LevelResult:
    workload: str
    target: str
    concurrency: int
    headline: str
    ops: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    nbytes: int = 0
    latencies: list[float] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)  # the generator's own loop delays (LagProbe)
    cpu_s: dict[str, float] = field(default_factory=dict)
    read_bytes: dict[str, int] = field(default_factory=dict)  # from storage, per role (procstat)
    setup_s: float = 0.0
    setup_error: str | None = None
    rounds: list[dict] = field(default_factory=list)

    def round_figures(self) -> dict:
        mb = self.nbytes / MB
        return {"ops_per_s": round(self.ops / self.wall_s, 3) if self.wall_s > 0 else 0.0,
                "mb_per_s": round(mb / self.wall_s, 3) if self.wall_s > 0 else 0.0,
                "errors": self.errors}

    def merge(self, other: LevelResult) -> None:
        """Pool another round of the same workload, level and registry into this one."""
        if not self.rounds:
            self.rounds.append(self.round_figures())
        self.rounds.append(other.round_figures())
        self.ops += other.ops
        self.errors += other.errors
        self.error_samples.extend(other.error_samples[: max(0, ERROR_SAMPLES - len(self.error_samples))])
        self.wall_s += other.wall_s
        self.nbytes += other.nbytes
        self.latencies.extend(other.latencies)
        for label, values in other.samples.items():
            self.samples.setdefault(label, []).extend(values)
        self.lags.extend(other.lags)
        _add_into(self.cpu_s, other.cpu_s)
        _add_into(self.read_bytes, other.read_bytes)
        self.setup_s += other.setup_s
        self.setup_error = self.setup_error or other.setup_error

    def to_json(self) -> dict:
        mb = self.nbytes / MB
        ops_per_s = self.ops / self.wall_s if self.wall_s > 0 else 0.0
        grouped = procstat.totals({r: s for r, s in self.cpu_s.items() if r != "generator"})
        if "generator" in self.cpu_s:
            grouped["generator"] = self.cpu_s["generator"]
        per_op = {k: round(v * 1000 / self.ops, 4) for k, v in grouped.items()} if self.ops else {}
        read_mb = procstat.totals({r: n / MB for r, n in self.read_bytes.items()})
        per_mb = {k: round(v * 1000 / mb, 4) for k, v in grouped.items()} if mb >= 1 else {}
        return {
            "workload": self.workload,
            "target": self.target,
            "concurrency": self.concurrency,
            "headline": self.headline,
            "valid": self.errors == 0 and self.ops > 0 and self.setup_error is None,
            "ops": self.ops,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "setup_error": self.setup_error,
            "setup_s": round(self.setup_s, 3),
            "rounds": self.rounds or [self.round_figures()],
            "wall_s": round(self.wall_s, 4),
            "bytes": self.nbytes,
            "ops_per_s": round(ops_per_s, 3),
            "mb_per_s": round(mb / self.wall_s, 3) if self.wall_s > 0 else 0.0,
            "latency": latency_summary(self.latencies),
            "parts": {k: latency_summary(v) for k, v in sorted(self.samples.items())},
            "generator_lag": latency_summary(self.lags),
            "cpu_s": {k: round(v, 4) for k, v in grouped.items()},
            "cpu_ms_per_op": per_op,
            "cpu_ms_per_mb": per_mb,
            "disk_read_mb": {k: round(v, 3) for k, v in read_mb.items()},
        }


class LagProbe:
    """How late the generator's own event loop runs a callback that is due: every latency the bench
    measures includes it (a reply that arrived waits for the loop like any callback). On a machine
    where the generator shares the cores with the registry, it is the part of a p99 that is the
    client's, not the server's."""

    def __init__(self, interval: float = LAG_INTERVAL) -> None:
        self.interval = interval
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.lags.append(max(0.0, loop.time() - due))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> list[float]:
        if self._task is not None:
            self._task.cancel()
        return self.lags


def _describe(e: BaseException) -> str:
    if isinstance(e, VerifyError):
        return str(e)
    return f"{type(e).__name__}: {e}"[:300]


async def run_level(target: Target, session: aiohttp.ClientSession, workload: Workload, concurrency: int,
                    duration: float | None, count: int | None, progress: Progress,
                    tick: Callable[[int, int], None] | None = None,
                    phase: Callable[[str], None] | None = None) -> LevelResult:
    """Set the workload up, then measure it; ``phase`` hears "setup" and "measuring" as each begins."""
    result = LevelResult(workload.name, target.label, concurrency, workload.headline)
    reg = Registry(target.url, session)
    if phase:
        phase("setup")
    t_setup = time.perf_counter()
    try:
        await workload.setup(reg, concurrency, progress)
    except (TimeoutError, VerifyError, aiohttp.ClientError, KeyError, ValueError) as e:
        result.setup_error = _describe(e)
        return result
    finally:
        result.setup_s = time.perf_counter() - t_setup

    next_seq = 0
    stop = False
    kind = target.kind if target.kind != "external" else "server"

    async def worker(w: int) -> None:
        nonlocal next_seq, stop
        while not stop:
            seq = next_seq
            if count is not None and seq >= count:
                return
            next_seq += 1
            t0 = time.perf_counter()
            try:
                got = await workload.op(reg, w, seq)
            except Exception as e:  # noqa: BLE001 - any failure of one operation is that operation's error
                result.errors += 1
                if len(result.error_samples) < ERROR_SAMPLES:
                    result.error_samples.append(_describe(e))
                if result.errors >= GIVE_UP_AFTER and result.ops == 0:
                    stop = True
                continue
            result.latencies.append(time.perf_counter() - t0)
            result.ops += 1
            result.nbytes += got.nbytes
            for label, seconds in got.samples:
                result.samples.setdefault(label, []).append(seconds)
            if tick:
                tick(result.ops, result.errors)

    async def timer() -> None:
        nonlocal stop
        if duration is not None:
            await asyncio.sleep(duration)
            stop = True

    if phase:
        phase("measuring")
    before = procstat.sample_tree(target.root_pid, kind) if target.root_pid else []
    gen0 = procstat.self_cpu()
    t0 = time.perf_counter()
    timer_task = asyncio.create_task(timer())
    probe = LagProbe()
    probe.start()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    result.wall_s = time.perf_counter() - t0
    timer_task.cancel()
    result.lags = probe.stop()
    gen1 = procstat.self_cpu()
    after = procstat.sample_tree(target.root_pid, kind) if target.root_pid else []
    result.cpu_s = procstat.cpu_delta(before, after)
    result.read_bytes = procstat.read_delta(before, after)
    result.cpu_s["generator"] = gen1 - gen0
    return result
