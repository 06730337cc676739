"""CPU time (and bytes read from storage) of processes read from ``/proc``, grouped by component.

A registry under test is described by a root PID (the shardreg supervisor, or a Distribution
process). Its descendants are found by walking ``/proc/<pid>/task/*/children`` and classified
from their command lines, so that CPU seconds can be charged to gateway workers, shards, the
supervisor, or the load generator itself.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    pid: int
    role: str
    cpu_s: float
    start_ticks: int
    #: Bytes this process made the kernel fetch from storage (``/proc/<pid>/io`` ``read_bytes``):
    #: reads served from the page cache do not count. 0 where the file cannot be read.
    read_bytes: int = 0


def read_cpu(pid: int) -> tuple[float, int] | None:
    """(utime + stime in seconds, start time in ticks) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    utime, stime, start = int(fields[11]), int(fields[12]), int(fields[19])
    return (utime + stime) / CLOCK_TICKS, start


def read_storage_bytes(pid: int) -> int:
    """``read_bytes`` of ``/proc/<pid>/io`` (what came from the disk, not the page cache), or 0."""
    try:
        with open(f"/proc/{pid}/io", "rb") as f:
            for line in f:
                if line.startswith(b"read_bytes:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return found


def descendants(root: int) -> list[tuple[int, int]]:
    """(pid, parent pid) of the root and all its descendants, parents before children."""
    order: list[tuple[int, int]] = []
    stack, seen = [(root, 0)], set()
    while stack:
        pid, parent = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        order.append((pid, parent))
        stack.extend((c, pid) for c in children(pid))
    return order


def classify_shardreg(cmd: str, is_root: bool) -> str:
    """Name the shardreg component a command line belongs to."""
    words = cmd.split()
    if "shard" in words:
        if "--index" in words:
            i = words.index("--index")
            if i + 1 < len(words):
                return f"shard-{words[i + 1]}"
        return "shard"
    if is_root:
        return "supervisor"
    if "gateway" in words or "hypercorn" in cmd or "multiprocessing" in cmd:
        return "gateway"
    return "other"


def role_of(kind: str, cmd: str, is_root: bool) -> str:
    if kind == "shardreg":
        return classify_shardreg(cmd, is_root)
    return kind


def sample_tree(root: int, kind: str) -> list[ProcSample]:
    """CPU time of every process in the tree rooted at ``root``."""
    out: list[ProcSample] = []
    roles: dict[int, str] = {}
    for pid, parent in descendants(root):
        got = read_cpu(pid)
        if got is None:
            continue
        role = role_of(kind, cmdline(pid), pid == root)
        if role == "other" and roles.get(parent, "supervisor") != "supervisor":
            role = roles[parent]  # helpers (workers, trackers) belong to their parent component
        roles[pid] = role
        out.append(ProcSample(pid, role, got[0], got[1], read_storage_bytes(pid)))
    return out


def self_cpu() -> float:
    """CPU seconds of this process (all threads), the load generator."""
    return time.process_time()


def _delta(before: list[ProcSample], after: list[ProcSample], figure: str) -> dict[str, Any]:
    """How much of a cumulative ``figure`` each role added between two samples (new processes
    count from zero)."""
    start = {(s.pid, s.start_ticks): getattr(s, figure) for s in before}
    per_role: dict[str, Any] = {}
    for s in after:
        grown = getattr(s, figure) - start.get((s.pid, s.start_ticks), 0)
        per_role[s.role] = per_role.get(s.role, 0) + max(grown, 0)
    return per_role


def cpu_delta(before: list[ProcSample], after: list[ProcSample]) -> dict[str, float]:
    """CPU seconds spent per role between two samples."""
    return _delta(before, after, "cpu_s")


def read_delta(before: list[ProcSample], after: list[ProcSample]) -> dict[str, int]:
    """Bytes read from storage per role between two samples."""
    return _delta(before, after, "read_bytes")


def totals(per_role: dict[str, float]) -> dict[str, float]:
    """Per-role figures of a registry with the shards folded into ``shards`` (each shard kept too)
    and their sum as ``server``."""
    out: dict[str, float] = {}
    for role, value in per_role.items():
        group = group_role(role)
        out[group] = out.get(group, 0) + value
        if group != role:
            out[role] = value
    if per_role:
        out["server"] = sum(per_role.values())
    return out


def group_role(role: str) -> str:
    """Fold per-shard roles into ``shards`` for totals."""
    return "shards" if role.startswith("shard") else role
