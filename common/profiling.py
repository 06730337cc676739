"""Profiles of a running process, for ``/v2/_zot/pprof/`` (gateway and shards alike).

* ``profile`` — a CPU profile of the event loop thread for N seconds (cProfile), as text
* ``heap``    — the top-N allocation sites (tracemalloc; the first call starts tracing)
* ``tasks``   — the stack of every asyncio task
* ``threads`` — the stack of every thread
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import sys
import threading
import traceback
import tracemalloc

PROFILES = {
    "profile": "CPU profile of the event loop for ?seconds=N (default 5, at most 60)",
    "heap": "top ?top=N allocation sites (tracemalloc; the first request starts tracing)",
    "tasks": "stacks of all asyncio tasks",
    "threads": "stacks of all threads",
}
MAX_SECONDS = 60.0
_cpu_lock = asyncio.Lock()


async def cpu_profile(seconds: float, top: int = 40) -> str:
    """Profile whatever runs on this event loop for ``seconds``."""
    seconds = max(0.1, min(MAX_SECONDS, seconds))
    if _cpu_lock.locked():
        return "a CPU profile is already running in this process; try again later\n"
    async with _cpu_lock:
        profiler = cProfile.Profile()
        try:
            profiler.enable()
        except ValueError as exc:  # another profiler is active
            return f"cannot start the profiler: {exc}\n"
        try:
            await asyncio.sleep(seconds)
        finally:
            profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    return f"CPU profile of {seconds:g}s\n" + out.getvalue()


def heap_profile(top: int = 25) -> str:
    if not tracemalloc.is_tracing():
        tracemalloc.start(10)
        return "tracemalloc started now; request this profile again to see allocations since\n"
    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.statistics("lineno")
    current, peak = tracemalloc.get_traced_memory()
    lines = [f"traced memory: current {current} bytes, peak {peak} bytes", f"top {top} allocation sites:"]
    lines += [str(stat) for stat in stats[:max(1, top)]]
    return "\n".join(lines) + "\n"


def task_stacks() -> str:
    out = io.StringIO()
    tasks = asyncio.all_tasks()
    out.write(f"{len(tasks)} asyncio tasks\n\n")
    for task in sorted(tasks, key=lambda t: t.get_name()):
        out.write(f"--- {task.get_name()} {task!r:.200}\n")
        task.print_stack(limit=20, file=out)
        out.write("\n")
    return out.getvalue()


def thread_stacks() -> str:
    names = {t.ident: t.name for t in threading.enumerate()}
    frames = sys._current_frames()
    out = io.StringIO()
    out.write(f"{len(frames)} threads\n\n")
    for ident, frame in frames.items():
        out.write(f"--- thread {names.get(ident, '?')} ({ident})\n")
        out.write("".join(traceback.format_stack(frame, limit=30)))
        out.write("\n")
    return out.getvalue()


async def run_profile(kind: str, seconds: float = 5.0, top: int = 25) -> str:
    """One profile by name; raises KeyError for an unknown name."""
    if kind == "profile":
        return await cpu_profile(seconds)
    if kind == "heap":
        return heap_profile(top)
    if kind == "tasks":
        return task_stacks()
    if kind == "threads":
        return thread_stacks()
    raise KeyError(kind)
