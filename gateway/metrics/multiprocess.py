"""prometheus-client multiprocess mode: every gateway worker writes its figures to files in one
directory, and a scrape answered by any worker sums them all (see :mod:`gateway.metrics`)."""

from __future__ import annotations

import fcntl
import fnmatch
import glob
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from common.config import Config
from gateway.metrics.counterfiles import PATTERN, CounterFiles
from gateway.metrics.settings import metrics_settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


# -- the master process: a fresh multiprocess directory -----------------------------------------
PREFIX = "shardreg-metrics-"
#: A file in each directory that its gateway keeps locked (``flock``): the kernel drops the lock
#: when the gateway dies, kill -9 included, so a directory whose lock is free was abandoned.
OWNER = ".owner"


def remove_abandoned(parent: str) -> list[str]:
    """Remove the directories that gateways killed before their clean-up left in ``parent``.

    Only this user's real directories with a free :data:`OWNER` lock go (not an older version's,
    without one, nor one of a gateway that runs, in whatever PID namespace)."""
    removed = []
    for entry in glob.glob(os.path.join(glob.escape(parent), PREFIX + "*")):
        try:
            st = os.lstat(entry)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue
            fd = os.open(os.path.join(entry, OWNER), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # its gateway runs
            continue
        shutil.rmtree(entry, ignore_errors=True)
        os.close(fd)
        removed.append(entry)
    return removed


@contextmanager
def multiprocess_dir(config: Config) -> Iterator[Path | None]:
    """Around ``hypercorn.run``: a fresh ``PROMETHEUS_MULTIPROC_DIR`` for the workers, removed at exit
    (and, should the gateway be killed, by the next one to start there)."""
    if not metrics_settings(config).enable:
        yield None
        return
    previous = os.environ.get(MULTIPROC_ENV)
    parent = None
    if previous:
        try:
            os.makedirs(previous, exist_ok=True)
            parent = previous
        except OSError:
            parent = None
    remove_abandoned(parent or tempfile.gettempdir())
    path = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    owner = os.open(os.path.join(path, OWNER), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    fcntl.flock(owner, fcntl.LOCK_EX)  # held while this gateway lives, however it ends
    os.environ[MULTIPROC_ENV] = path
    try:
        yield Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(owner)
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous


def _multiprocess_mode() -> bool:
    """Whether this process's metric values live in files (decided when prometheus_client loaded)."""
    return prometheus_values.ValueClass is not prometheus_values.MutexValue and bool(os.environ.get(MULTIPROC_ENV))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_PID_FILE = re.compile(r"_(\d+)\.db$")


def sweep_dead_workers(path: str) -> list[int]:
    """``mark_process_dead`` for every worker whose files are here but which is gone."""
    pids = set()
    for name in os.listdir(path):
        match = _PID_FILE.search(name)
        if match:
            pids.add(int(match.group(1)))
    dead = [pid for pid in pids if pid != os.getpid() and not _pid_alive(pid)]
    for pid in dead:
        try:
            mark_process_dead(pid, path)
        except FileNotFoundError:
            pass  # another worker swept it at the same moment
    return dead


def worker_pids() -> list[int]:
    """The live processes writing metric files (every gateway worker), in multiprocess mode."""
    if not _multiprocess_mode():
        return []
    pids = set()
    for name in os.listdir(os.environ[MULTIPROC_ENV]):
        match = _PID_FILE.search(name)
        if match:
            pids.add(int(match.group(1)))
    return sorted(pid for pid in pids if _pid_alive(pid))


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text of ``registry``, or of every worker's files in multiprocess mode."""
    if not _multiprocess_mode():
        return generate_latest(registry)
    path = os.environ[MULTIPROC_ENV]
    sweep_dead_workers(path)
    merged = CollectorRegistry()
    _NotCounters(merged, path=path)
    counters = _COUNTERS.get(path)
    if counters is None:
        counters = _COUNTERS[path] = CounterFiles(path)
    return generate_latest(merged) + counters.text()


class _NotCounters(MultiProcessCollector):
    """The workers' gauges and histograms (their counters: :class:`CounterFiles`)."""

    def collect(self) -> Iterable[Metric]:
        files = [f for f in glob.glob(os.path.join(self._path, "*.db")) if not fnmatch.fnmatch(os.path.basename(f), PATTERN)]
        return self.merge(files, accumulate=True)


#: Per multiprocess directory, this worker's parsed counter files (kept between scrapes).
_COUNTERS: dict[str, CounterFiles] = {}
