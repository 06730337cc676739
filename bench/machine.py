"""What the bench ran on: the machine, and the disk's own sequential write speed with fsync."""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version

MiB = 1 << 20


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / (1 << 20), 2)
    except OSError:
        pass
    return None


def _pkg(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def source_revision() -> str | None:
    """The git commit of the code being measured (with ``-dirty`` if the tree has changes)."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (head + ("-dirty" if dirty else "")) or None


def describe() -> dict:
    """Cores, memory, CPU model, kernel, Python and client library versions."""
    return {
        "hostname": platform.node(),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": _mem_total_gib(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "aiohttp": _pkg("aiohttp"),
        "shardreg": _pkg("shardreg"),
        "shardreg_revision": source_revision(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def disk_write_speed(directory: str | None, total_mib: int = 256, file_mib: int = 64, rounds: int = 3) -> dict:
    """Median of ``rounds`` measurements of :func:`disk_write_round` (a virtual disk is noisy)."""
    runs = [disk_write_round(directory, total_mib, file_mib) for _ in range(max(1, rounds))]
    speeds = sorted(r["mb_per_s"] for r in runs)
    out = dict(runs[0])
    out["mb_per_s"] = speeds[len(speeds) // 2]
    out["rounds_mb_per_s"] = [r["mb_per_s"] for r in runs]
    out["seconds"] = round(sum(r["seconds"] for r in runs), 4)
    return out


def disk_write_round(directory: str | None, total_mib: int = 256, file_mib: int = 64) -> dict:
    """Sequential write speed of the disk under ``directory``, each file fsync'ed like a blob commit.

    Writes ``total_mib`` MiB as files of ``file_mib`` MiB in 1 MiB writes, fsyncs every file and the
    directory, then removes them. This is the physical limit for push-large on this disk.
    """
    file_mib = max(1, min(file_mib, total_mib))
    buf = os.urandom(MiB)
    directory = directory or tempfile.gettempdir()
    os.makedirs(directory, exist_ok=True)
    work = tempfile.mkdtemp(prefix="disk-speed-", dir=directory)
    written = 0
    t0 = time.perf_counter()
    try:
        for i in range(max(1, total_mib // file_mib)):
            path = os.path.join(work, f"f{i}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                for _ in range(file_mib):
                    written += os.write(fd, buf)
                os.fsync(fd)
            finally:
                os.close(fd)
        dfd = os.open(work, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        seconds = time.perf_counter() - t0
    finally:
        for name in os.listdir(work):
            os.unlink(os.path.join(work, name))
        os.rmdir(work)
    return {
        "directory": directory,
        "bytes": written,
        "file_mib": file_mib,
        "seconds": round(seconds, 4),
        "mb_per_s": round(written / MiB / seconds, 1),
    }
