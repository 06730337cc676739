"""Results out: the JSON document, the terminal tables and the PNG chart."""

from __future__ import annotations

import json
import os

from rich.console import Console
from rich.table import Table

RATIO_FIELDS = ("ops_per_s", "mb_per_s", "p50_ms", "p95_ms", "p99_ms", "server_cpu_ms_per_op", "server_cpu_ms_per_mb")


def _figure(result: dict, name: str) -> float | None:
    if name in ("p50_ms", "p95_ms", "p99_ms"):
        return result["latency"][name]
    if name == "server_cpu_ms_per_op":
        return result["cpu_ms_per_op"].get("server")
    if name == "server_cpu_ms_per_mb":
        return result["cpu_ms_per_mb"].get("server")
    return result.get(name)


def comparisons(results: list[dict], primary: str, other: str) -> list[dict]:
    """Ratio primary/other of each figure, per workload and concurrency (None where invalid)."""
    index = {(r["workload"], r["concurrency"], r["target"]): r for r in results}
    out = []
    for r in results:
        if r["target"] != primary:
            continue
        o = index.get((r["workload"], r["concurrency"], other))
        if o is None:
            continue
        ratios: dict[str, float | None] = {}
        for name in RATIO_FIELDS:
            a, b = _figure(r, name), _figure(o, name)
            valid = r["valid"] and o["valid"]
            ratios[name] = round(a / b, 3) if valid and a is not None and b else None  # b: neither None nor 0
        out.append({"workload": r["workload"], "concurrency": r["concurrency"], "primary": primary,
                    "other": other, "ratio": ratios})
    return out


def write_json(doc: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def _fmt(x: float | None, digits: int = 1) -> str:
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


SHORT = {"gateway": "gw", "shards": "sh", "supervisor": "sup"}


def _components(r: dict, unit: str) -> str:
    """Compact per-component CPU, e.g. ``gw 1.20 sh 0.40`` (per-shard figures stay in the JSON)."""
    per = r["cpu_ms_per_op"] if unit == "op" else r["cpu_ms_per_mb"]
    parts = [f"{SHORT.get(k, k)} {v:.2f}" for k, v in per.items()
             if k not in ("server", "generator") and not k.startswith("shard-") and not (k == "supervisor" and v < 0.01)]
    return " ".join(parts)


def print_tables(doc: dict, console: Console | None = None) -> None:
    console = console or Console()
    m = doc["machine"]
    console.print(f"[bold]machine[/]: {m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, "
                  f"Python {m['python']}, kernel {m['kernel']}")
    disk = doc.get("disk")
    if disk:
        console.print(f"[bold]disk[/]: sequential write with fsync {disk['mb_per_s']:.0f} MB/s "
                      f"(median of {disk.get('rounds_mb_per_s')}; {disk['bytes'] >> 20} MiB in {disk['file_mib']} MiB files "
                      f"under {disk['directory']}) "
                      "- the physical limit for push-large")
    t = Table(title="results (MB = 2^20 bytes, latency in ms, CPU in ms)", show_lines=False)
    for col in ("workload", "c", "registry", "ops", "err", "ops/s", "MB/s", "p50", "p95", "p99",
                "srv CPU/op", "srv CPU/MB", "gen CPU/op", "by component (CPU/op)"):
        t.add_column(col, justify="left" if col in ("workload", "registry", "by component (CPU/op)") else "right")
    for r in doc["results"]:
        lat = r["latency"]
        err = str(r["errors"]) if not r["setup_error"] else "setup"
        t.add_row(r["workload"], str(r["concurrency"]), r["target"], str(r["ops"]),
                  f"[red]{err}[/]" if not r["valid"] else err,
                  _fmt(r["ops_per_s"]), _fmt(r["mb_per_s"]) if r["bytes"] else "-",
                  _fmt(lat["p50_ms"]), _fmt(lat["p95_ms"]), _fmt(lat["p99_ms"]),
                  _fmt(r["cpu_ms_per_op"].get("server"), 2), _fmt(r["cpu_ms_per_mb"].get("server"), 2),
                  _fmt(r["cpu_ms_per_op"].get("generator"), 2), _components(r, "op"))
    console.print(t)
    parts = [(r, name, s) for r in doc["results"] for name, s in r["parts"].items()]
    if parts:
        pt = Table(title="parts of operations (ms)")
        for col in ("workload", "c", "registry", "part", "count", "p50", "p95", "p99"):
            pt.add_column(col)
        for r, name, s in parts:
            pt.add_row(r["workload"], str(r["concurrency"]), r["target"], name, str(s["count"]),
                       _fmt(s["p50_ms"], 2), _fmt(s["p95_ms"], 2), _fmt(s["p99_ms"], 2))
        console.print(pt)
    if doc.get("comparisons"):
        c0 = doc["comparisons"][0]
        ct = Table(title=f"ratio {c0['primary']} / {c0['other']} (higher is better for ops/s and MB/s, "
                         "lower for latency and CPU)")
        for col in ("workload", "c", "ops/s", "MB/s", "p50", "p99", "srv CPU/op", "srv CPU/MB"):
            ct.add_column(col)
        for c in doc["comparisons"]:
            q = c["ratio"]
            ct.add_row(c["workload"], str(c["concurrency"]), _fmt(q["ops_per_s"], 2), _fmt(q["mb_per_s"], 2),
                       _fmt(q["p50_ms"], 2), _fmt(q["p99_ms"], 2), _fmt(q["server_cpu_ms_per_op"], 2),
                       _fmt(q["server_cpu_ms_per_mb"], 2))
        console.print(ct)
    for r in doc["results"]:
        if r["error_samples"] or r["setup_error"]:
            console.print(f"[yellow]{r['workload']} c={r['concurrency']} {r['target']}[/]: "
                          f"{r['setup_error'] or '; '.join(r['error_samples'])}")


def write_chart(doc: dict, path: str) -> None:
    """Throughput and p99 latency per concurrency, one row per workload, registries side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = doc["results"]
    workloads = list(dict.fromkeys(r["workload"] for r in results))
    targets = list(dict.fromkeys(r["target"] for r in results))
    rows = max(1, len(workloads))
    fig, axes = plt.subplots(rows, 2, figsize=(11, 2.6 * rows), squeeze=False)
    disk = (doc.get("disk") or {}).get("mb_per_s")
    for i, w in enumerate(workloads):
        mine = [r for r in results if r["workload"] == w]
        levels = sorted({r["concurrency"] for r in mine})
        x = range(len(levels))
        width = 0.8 / max(1, len(targets))
        use_mb = mine[0]["headline"] == "MB/s"
        ax_t, ax_l = axes[i][0], axes[i][1]
        for j, t in enumerate(targets):
            by_c = {r["concurrency"]: r for r in mine if r["target"] == t}
            tput = [(by_c[c]["mb_per_s"] if use_mb else by_c[c]["ops_per_s"]) if c in by_c and by_c[c]["valid"]
                    else 0 for c in levels]
            p99 = [(by_c[c]["latency"]["p99_ms"] or 0) if c in by_c and by_c[c]["valid"] else 0 for c in levels]
            offs = [k - 0.4 + width * (j + 0.5) for k in x]
            ax_t.bar(offs, tput, width, label=t)
            ax_l.bar(offs, p99, width, label=t)
            for off, c in zip(offs, levels, strict=True):
                if c in by_c and not by_c[c]["valid"]:  # a registry that answered wrongly scores nothing
                    for ax in (ax_t, ax_l):
                        ax.annotate("failed", (off, 0), ha="center", va="bottom", fontsize=7, color="red",
                                    rotation=90)
        if use_mb and disk and w.startswith("push"):
            ax_t.axhline(disk, linestyle="--", color="grey", linewidth=1, label="disk fsync write")
        for ax, ylabel in ((ax_t, "MB/s" if use_mb else "ops/s"), (ax_l, "p99 ms")):
            ax.set_xticks(list(x), [f"c={c}" for c in levels])
            ax.set_ylabel(ylabel)
            ax.set_title(f"{w}: {'throughput' if ax is ax_t else 'p99 latency'}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        ax_t.legend(fontsize=8)
    m = doc["machine"]
    fig.suptitle(f"{doc['name']} - {m['cores']} cores, {m['memory_gib']} GiB, Python {m['python']}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(doc: dict) -> str:
    """The results as Markdown tables (for docs/performance.md)."""
    lines = ["| workload | c | registry | ops/s | MB/s | p50 ms | p99 ms | errors | server CPU ms/op | "
             "ms/MB | gateway ms/op | shards ms/op | generator ms/op |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in doc["results"]:
        lat, per, mb = r["latency"], r["cpu_ms_per_op"], r["cpu_ms_per_mb"]
        err = "setup failed" if r["setup_error"] else str(r["errors"])
        lines.append(f"| {r['workload']} | {r['concurrency']} | {r['target']} | {_fmt(r['ops_per_s'])} | "
                     f"{_fmt(r['mb_per_s']) if r['bytes'] else '-'} | {_fmt(lat['p50_ms'])} | {_fmt(lat['p99_ms'])} | "
                     f"{err} | {_fmt(per.get('server'), 2)} | {_fmt(mb.get('server'), 2)} | "
                     f"{_fmt(per.get('gateway'), 2)} | {_fmt(per.get('shards'), 2)} | {_fmt(per.get('generator'), 2)} |")
    if doc.get("comparisons"):
        c0 = doc["comparisons"][0]
        lines += ["", f"Ratio {c0['primary']} / {c0['other']} (\"-\": a side answered wrongly or the figure is empty):", "",
                  "| workload | c | ops/s | MB/s | p50 | p99 | server CPU/op |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for c in doc["comparisons"]:
            q = c["ratio"]
            lines.append(f"| {c['workload']} | {c['concurrency']} | {_fmt(q['ops_per_s'], 2)} | {_fmt(q['mb_per_s'], 2)} | "
                         f"{_fmt(q['p50_ms'], 2)} | {_fmt(q['p99_ms'], 2)} | {_fmt(q['server_cpu_ms_per_op'], 2)} |")
    return "\n".join(lines) + "\n"
