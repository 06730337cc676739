"""What the bench ran on: the machine, the disk's own sequential write speed with fsync, and
the page cache filled first so that stored bytes land on memory in a server's steady state."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
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


def mem_free_mib() -> int | None:
    """The machine's free memory (``MemFree``: neither used nor caching anything), in MiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemFree:"):
                    return int(line.split()[1]) >> 10
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


#: Free memory a page-cache fill leaves alone, for the registries' and the generator's own.
FILL_RESERVE_MIB = 2048
#: The most an automatic fill reads (a machine with far more memory would spend minutes on it).
FILL_MAX_MIB = 64 << 10


@contextlib.contextmanager
def page_cache_filled(directory: str | None, mib: int | None = None, readers: int = 2) -> Iterator[dict]:
    """Fill the page cache with the (zero) pages of a sparse file, kept for the block's duration.

    A server that has run for a while has no free memory: what it stores lands on page-cache pages
    it reclaims. A fresh virtual machine has gigabytes free, and on one whose free memory is handed
    back to the host (free page reporting) each first write into such a page faults on the host:
    2-5 ms per MB on this bench's machine, more than all of a registry's own work per pushed MB
    (docs/performance.md, "The page cache filled first"). Filling the cache first puts both the
    registries and the disk ceiling in the server's steady state. ``mib`` None: all free memory but
    :data:`FILL_RESERVE_MIB`, at most :data:`FILL_MAX_MIB`. The file takes no disk space; its pages
    are reclaimed as needed.
    """
    free_before = mem_free_mib()
    if mib is None:
        mib = min(FILL_MAX_MIB, max(0, (free_before or 0) - FILL_RESERVE_MIB))
    info: dict = {"mib": mib, "free_mib_before": free_before}
    if mib <= 0:
        yield info | {"seconds": 0.0, "free_mib_after": free_before}
        return
    directory = directory or tempfile.gettempdir()
    os.makedirs(directory, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="page-cache-fill-", dir=directory)
    try:
        os.ftruncate(fd, mib * MiB)
        t0 = time.perf_counter()
        share = -(-mib // readers)
        threads = [threading.Thread(target=_read_span, args=(fd, i * share, min(mib, (i + 1) * share)))
                   for i in range(readers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        info |= {"seconds": round(time.perf_counter() - t0, 2), "free_mib_after": mem_free_mib()}
        yield info
    finally:
        os.close(fd)
        os.unlink(path)


def _read_span(fd: int, first_mib: int, end_mib: int) -> None:
    buf = bytearray(MiB)
    for i in range(first_mib, end_mib):
        os.preadv(fd, [buf], i * MiB)
