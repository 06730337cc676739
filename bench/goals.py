"""The performance targets (docs/performance.md, "The targets"), evaluated on one run's figures.

Informative only: a run's exit status never depends on them. Each goal names the figure, the
level and the threshold; ``value`` is the run's figure (None when the run has no such figure, e.g.
no second registry for a ratio), ``met`` whether it reaches the threshold.
"""

from __future__ import annotations

from typing import Any

#: The measured registry's CPU per MB (ms): (workload, component, at most).
CPU_PER_MB = (("pull-large", "gateway", 0.15), ("push-large", "server", 2.5))
#: Ratios to the other registry, at every level: (workload, figure, at least).
RATIOS = (("push-large", "mb_per_s", 1.0), ("pull-large", "mb_per_s", 1.0),
          ("head-check", "ops_per_s", 1.2), ("pull-small", "ops_per_s", 1.5))
#: push-large's MB/s as a share of the disk's fsync'ed write speed, at these levels.
DISK_SHARE = 0.7
DISK_SHARE_LEVELS = (8,)
#: mixed-ci's manifest GET p99 (ms), at these levels.
MANIFEST_P99_MS = 25.0
MANIFEST_P99_LEVELS = (32,)


def _goal(goal: str, value: float | None, met: bool) -> dict[str, Any]:
    return {"goal": goal, "value": value, "met": value is not None and met}


def goals(doc: dict) -> list[dict[str, Any]]:
    """Every target that this run has figures for, in the order of docs/performance.md's table."""
    out: list[dict[str, Any]] = []
    primary = doc["targets"][0]["label"]
    mine = [r for r in doc["results"] if r["target"] == primary and r["valid"]]
    for workload, component, most in CPU_PER_MB:
        for r in mine:
            if r["workload"] == workload:
                value = r["cpu_ms_per_mb"].get(component)
                out.append(_goal(f"{workload} {component} CPU <= {most} ms/MB (c={r['concurrency']})", value,
                                 value is not None and value <= most))
    disk = (doc.get("disk") or {}).get("mb_per_s")
    for r in mine:
        if r["workload"] == "push-large" and r["concurrency"] in DISK_SHARE_LEVELS and disk:
            share = round(r["mb_per_s"] / disk, 3)
            out.append(_goal(f"push-large >= {DISK_SHARE:.0%} of the disk's fsync'ed write speed "
                             f"(c={r['concurrency']})", share, share >= DISK_SHARE))
    comparisons = doc.get("comparisons", [])
    for workload, figure, least in RATIOS:
        for c in comparisons:
            if c["workload"] == workload:
                value = c["ratio"].get(figure)
                out.append(_goal(f"{workload} {figure} >= {least}x other (c={c['concurrency']})", value,
                                 value is not None and value >= least))
    for r in mine:
        if r["workload"] == "mixed-ci" and r["concurrency"] in MANIFEST_P99_LEVELS and "manifest-get" in r["parts"]:
            p99 = r["parts"]["manifest-get"]["p99_ms"]
            out.append(_goal(f"mixed-ci manifest GET p99 <= {MANIFEST_P99_MS:g} ms (c={r['concurrency']})", p99,
                             p99 is not None and p99 <= MANIFEST_P99_MS))
    return out
