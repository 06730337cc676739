"""Results out: the JSON document, the terminal tables and the PNG chart."""

from __future__ import annotations

import json
import os

from matplotlib.figure import Figure
from rich import box
from rich.console import Console
from rich.table import Table

RATIO_FIELDS = ("ops_per_s", "mb_per_s", "p50_ms", "p95_ms", "p99_ms", "server_cpu_ms_per_op", "server_cpu_ms_per_mb")
#: The row of the parts table that shows the generator's own loop lateness (bench.runner.LagProbe).
GENERATOR_LAG = "generator lag"


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


#: Width of the default view: the tables fit an 80-column terminal; ``--wide`` shows every column.
NARROW = 80
#: Longer registry labels wrap inside their column instead of widening the table.
LABEL_WIDTH = 15


def _num(x: float | None) -> str:
    """About three significant digits, for the narrow view (``1,235``, ``364.8`` -> ``365``, ``1.84``)."""
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _table(title: str, wide: bool) -> Table:
    if wide:
        return Table(title=title)
    return Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, collapse_padding=True)


def _registry_column(t: Table, wide: bool) -> None:
    if wide:
        t.add_column("registry")
    else:
        t.add_column("registry", max_width=LABEL_WIDTH, overflow="fold")


def _error_cell(r: dict) -> str:
    err = str(r["errors"]) if not r["setup_error"] else "setup"
    return f"[red]{err}[/]" if not r["valid"] else err


def results_table(doc: dict, wide: bool = False) -> Table:
    """One row per (workload, level, registry); the narrow view keeps the figures that rank them."""
    if not wide:
        t = _table("results (MB = 2^20 bytes; latency and server CPU in ms)", wide)
        for col in ("workload", "c"):
            t.add_column(col, justify="right" if col == "c" else "left")
        _registry_column(t, wide)
        for col in ("ops/s", "MB/s", "p50", "p99", "CPU/op", "err"):
            t.add_column(col, justify="right")
        for r in doc["results"]:
            lat = r["latency"]
            t.add_row(r["workload"], str(r["concurrency"]), r["target"], _num(r["ops_per_s"]),
                      _num(r["mb_per_s"]) if r["bytes"] else "-", _num(lat["p50_ms"]), _num(lat["p99_ms"]),
                      _num(r["cpu_ms_per_op"].get("server")), _error_cell(r))
        return t
    t = _table("results (MB = 2^20 bytes, latency in ms, CPU in ms)", wide)
    for col in ("workload", "c", "registry", "ops", "err", "ops/s", "MB/s", "p50", "p95", "p99",
                "srv CPU/op", "srv CPU/MB", "gen CPU/op", "by component (CPU/op)"):
        t.add_column(col, justify="left" if col in ("workload", "registry", "by component (CPU/op)") else "right")
    for r in doc["results"]:
        lat = r["latency"]
        t.add_row(r["workload"], str(r["concurrency"]), r["target"], str(r["ops"]), _error_cell(r),
                  _fmt(r["ops_per_s"]), _fmt(r["mb_per_s"]) if r["bytes"] else "-",
                  _fmt(lat["p50_ms"]), _fmt(lat["p95_ms"]), _fmt(lat["p99_ms"]),
                  _fmt(r["cpu_ms_per_op"].get("server"), 2), _fmt(r["cpu_ms_per_mb"].get("server"), 2),
                  _fmt(r["cpu_ms_per_op"].get("generator"), 2), _components(r, "op"))
    return t


def _parts(doc: dict) -> list[tuple[dict, str, dict]]:
    """(result, part name, its latency summary) for every part of every result."""
    return [(r, name, s) for r in doc["results"] for name, s in r["parts"].items()]


def parts_table(doc: dict, wide: bool = False) -> Table | None:
    parts = _parts(doc)
    if not parts:
        return None
    pt = _table("parts of operations (ms)", wide)
    pt.add_column("workload")
    pt.add_column("c", justify="right")
    _registry_column(pt, wide)
    cols = ("part", "count", "p50", "p95", "p99") if wide else ("part", "count", "p50", "p99")
    for col in cols:
        pt.add_column(col, justify="left" if col == "part" else "right")
    for r, name, s in parts + _lags(doc):
        figures = [s["p50_ms"], s["p95_ms"], s["p99_ms"]] if wide else [s["p50_ms"], s["p99_ms"]]
        pt.add_row(r["workload"], str(r["concurrency"]), r["target"], name, str(s["count"]),
                   *(_fmt(x, 2) if wide else _num(x) for x in figures))
    return pt


def _lags(doc: dict) -> list[tuple[dict, str, dict]]:
    """The generator's own loop lateness, beside the parts whose latencies include it."""
    return [(r, GENERATOR_LAG, r["generator_lag"]) for r in doc["results"]
            if r["parts"] and (r.get("generator_lag") or {}).get("count")]


def ratio_table(doc: dict, wide: bool = False) -> Table | None:
    if not doc.get("comparisons"):
        return None
    c0 = doc["comparisons"][0]
    ct = _table(f"ratio {c0['primary']} / {c0['other']} (higher is better for ops/s and MB/s, "
                "lower for latency and CPU)", wide)
    for col in ("workload", "c", "ops/s", "MB/s", "p50", "p99", "CPU/op", "CPU/MB"):
        ct.add_column(col, justify="left" if col == "workload" else "right")
    for c in doc["comparisons"]:
        q = c["ratio"]
        ct.add_row(c["workload"], str(c["concurrency"]), *(_fmt(q[k], 2) for k in (
            "ops_per_s", "mb_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_op", "server_cpu_ms_per_mb")))
    return ct


def print_tables(doc: dict, console: Console | None = None, wide: bool = False) -> None:
    """The run's tables; by default within 80 columns (``wide``: every column, as wide as needed)."""
    console = console or Console()
    width = None if wide else min(console.width, NARROW)
    m = doc["machine"]
    console.print(f"[bold]machine[/]: {m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, "
                  f"Python {m['python']}, kernel {m['kernel']}", width=width)
    disk = doc.get("disk")
    if disk:
        where = (f" (median of {disk.get('rounds_mb_per_s')}; {disk['bytes'] >> 20} MiB in {disk['file_mib']} "
                 f"MiB files under {disk['directory']})" if wide else "")
        console.print(f"[bold]disk[/]: sequential write with fsync {disk['mb_per_s']:.0f} MB/s{where} "
                      "- the physical limit for push-large", width=width)
    if doc.get("ceilings"):  # issue 17: the machine's limits, and the figures as shares of them
        from bench.ceilings import fraction_text, summary_line

        console.print(f"[bold]{summary_line(doc['ceilings'])}[/]", width=width)
        for f in doc.get("fractions") or ():
            console.print("  " + fraction_text(f), width=width)
    for table in (results_table(doc, wide), parts_table(doc, wide), ratio_table(doc, wide)):
        if table is not None:
            console.print(table, width=width)
    for r in doc["results"]:
        if r["error_samples"] or r["setup_error"]:
            console.print(f"[yellow]{r['workload']} c={r['concurrency']} {r['target']}[/]: "
                          f"{r['setup_error'] or '; '.join(dict.fromkeys(r['error_samples']))}", width=width)


def chart(doc: dict) -> Figure:
    """Throughput and p99 latency per concurrency, one row per workload, registries side by side.

    Each panel says which way is better and labels its bars with their values, so that the PNG
    reads without the JSON next to it.
    """
    results = doc["results"]
    workloads = list(dict.fromkeys(r["workload"] for r in results))
    present = {r["target"] for r in results}
    targets = [t["label"] for t in doc.get("targets", []) if t["label"] in present]  # the measured one first
    targets += [t for t in dict.fromkeys(r["target"] for r in results) if t not in targets]
    rows = max(1, len(workloads))
    height = 0.9 + 2.8 * rows
    fig = Figure(figsize=(11, height))
    axes = fig.subplots(rows, 2, squeeze=False)
    disk = (doc.get("disk") or {}).get("mb_per_s")
    for i, w in enumerate(workloads):
        mine = [r for r in results if r["workload"] == w]
        levels = sorted({r["concurrency"] for r in mine})
        x = range(len(levels))
        width = 0.8 / max(1, len(targets))
        unit = "MB/s" if mine[0]["headline"] == "MB/s" else "ops/s"
        ax_t, ax_l = axes[i][0], axes[i][1]
        for j, t in enumerate(targets):
            by_c = {r["concurrency"]: r for r in mine if r["target"] == t}
            ok = [c in by_c and by_c[c]["valid"] for c in levels]
            tput = [(by_c[c]["mb_per_s"] if unit == "MB/s" else by_c[c]["ops_per_s"]) if good else 0
                    for c, good in zip(levels, ok, strict=True)]
            p99 = [(by_c[c]["latency"]["p99_ms"] or 0) if good else 0 for c, good in zip(levels, ok, strict=True)]
            offs = [k - 0.4 + width * (j + 0.5) for k in x]
            for ax, values in ((ax_t, tput), (ax_l, p99)):
                bars = ax.bar(offs, values, width, label=t, color=f"C{j}")
                ax.bar_label(bars, labels=[_num(v) if good else "" for v, good in zip(values, ok, strict=True)],
                             fontsize=7, padding=1)
            for off, c, good in zip(offs, levels, ok, strict=True):
                if c in by_c and not good:  # a registry that answered wrongly scores nothing
                    for ax in (ax_t, ax_l):
                        ax.annotate("failed", (off, 0), ha="center", va="bottom", fontsize=7, color="red",
                                    rotation=90)
        if unit == "MB/s" and disk and w.startswith("push"):
            ax_t.axhline(disk, linestyle="--", color="grey", linewidth=1, label="disk write speed (fsync)")
        for ax, ylabel, what in ((ax_t, unit, f"throughput, {unit} - higher is better"),
                                 (ax_l, "p99 ms", "p99 latency, ms - lower is better")):
            ax.set_xticks(list(x), [f"c={c}" for c in levels])
            ax.set_ylabel(ylabel)
            ax.set_title(f"{w}: {what}", fontsize=10)
            ax.margins(y=0.18)  # room for the value labels
            ax.grid(axis="y", alpha=0.3)
    m = doc["machine"]
    fig.suptitle(f"{' vs '.join(targets)}: throughput and p99 latency by concurrency\n"
                 f"run {doc['name']} ({doc.get('started', '')[:10]}), {m['cores']} cores, {m['memory_gib']} GiB, "
                 f"Python {m['python']}", fontsize=12, y=1 - 0.05 / height, va="top")
    legend: dict = {}  # one legend for all panels, under the title
    for ax in axes.flat:
        handles, labels = ax.get_legend_handles_labels()
        legend.update(zip(labels, handles, strict=True))
    fig.legend(list(legend.values()), list(legend), loc="upper center", ncol=len(legend), fontsize=9,
               frameon=False, bbox_to_anchor=(0.5, 1 - 0.5 / height))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / height))
    return fig


def write_chart(doc: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    chart(doc).savefig(path, dpi=90)


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
    lags = _lags(doc)
    if lags:
        lines += ["", f"Parts of operations, and the generator's own loop lateness ({GENERATOR_LAG}: in every latency above):",
                  "", "| workload | c | registry | part | count | p50 ms | p99 ms |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for res, name, s in _parts(doc) + lags:
            lines.append(f"| {res['workload']} | {res['concurrency']} | {res['target']} | {name} | {s['count']} | "
                         f"{_fmt(s['p50_ms'])} | {_fmt(s['p99_ms'])} |")
    if doc.get("comparisons"):
        c0 = doc["comparisons"][0]
        lines += ["", f"Ratio {c0['primary']} / {c0['other']} (\"-\": a side answered wrongly or the figure is empty):", "",
                  "| workload | c | ops/s | MB/s | p50 | p99 | server CPU/op |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for c in doc["comparisons"]:
            q = c["ratio"]
            lines.append(f"| {c['workload']} | {c['concurrency']} | {_fmt(q['ops_per_s'], 2)} | {_fmt(q['mb_per_s'], 2)} | "
                         f"{_fmt(q['p50_ms'], 2)} | {_fmt(q['p99_ms'], 2)} | {_fmt(q['server_cpu_ms_per_op'], 2)} |")
    if doc.get("ceilings"):
        from bench.ceilings import fraction_text, summary_line

        lines += ["", summary_line(doc["ceilings"]), ""] + [f"- {fraction_text(f)}" for f in doc.get("fractions") or ()]
    return "\n".join(lines) + "\n"
