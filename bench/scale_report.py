"""The report of ``shardreg bench scale``: how each figure grows from the first level to the last,
flags for what grows worse than about O(log n), Markdown and a chart."""

from __future__ import annotations

import math
from typing import Any

from bench.ceilings import summary_line

#: A figure is flagged when it grows more than this many times the growth of log(n) (noise margin:
#: sub-millisecond medians move by tens of percent between runs on a shared 2-core machine).
FLAG_FACTOR = 2.0


def _n_of(name: str, level: dict[str, Any]) -> int:
    return int(level["tags"] if name.startswith("tags") else level["repos"])


def _figures(level: dict[str, Any]) -> dict[str, tuple[float | None, str]]:
    """Every figure of a level that should not grow with the data: (value, unit)."""
    out: dict[str, tuple[float | None, str]] = {}
    for name, lat in level["latency"].items():
        out[f"{name} median"] = (lat["median_ms"], "ms")
        out[f"{name} p99"] = (lat["p99_ms"], "ms")
    starts = [r["process_start_to_ready_s"] for r in level["restarts"] if r.get("process_start_to_ready_s")]
    if starts:
        out["shard start-up (process start to ready)"] = (sorted(starts)[len(starts) // 2], "s")
    totals = [r["sigterm_to_ready_s"] for r in level["restarts"]]
    if totals:
        out["shard restart (SIGTERM to ready)"] = (sorted(totals)[len(totals) // 2], "s")
    for proc, rss in level["rss"].items():
        if rss:
            out[f"RSS {proc}"] = (round(rss / (1 << 20), 1), "MiB")
    for proc, rss in level.get("rss_anon", {}).items():
        if rss:
            out[f"RSS {proc}, its own memory (RssAnon)"] = (round(rss / (1 << 20), 1), "MiB")
    return out


def growth(levels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per figure: first and last value, their ratio, the ratio of log(n), and a flag when the
    figure grows more than :data:`FLAG_FACTOR` × log(n)'s growth (and more than 1.5×)."""
    if len(levels) < 2:
        return []
    first, last = levels[0], levels[-1]
    a, b = _figures(first), _figures(last)
    out = []
    for name, (v0, unit) in a.items():
        v1 = b.get(name, (None, unit))[0]
        if not v0 or v1 is None:
            continue
        n0, n1 = _n_of(name, first), _n_of(name, last)
        log_ratio = math.log(max(n1, 2)) / math.log(max(n0, 2))
        ratio = v1 / v0
        flag = ratio > max(1.5, FLAG_FACTOR * log_ratio) and not name.endswith("p99")
        out.append({"figure": name, "unit": unit, "first": v0, "last": v1, "ratio": round(ratio, 2),
                    "n_ratio": round(n1 / n0, 1), "log_n_ratio": round(log_ratio, 2), "flag": flag})
    return out


def _size_rows(levels: list[dict[str, Any]]) -> list[str]:
    rows = ["| level | repos | tags | blob records | shard | LMDB meta MiB | LMDB search MiB | blob files | "
            "blob dir MiB (allocated) | bytes of LMDB meta per blob record |", "| " + " --- |" * 10]
    for lv in levels:
        per_shard_records = max(1, lv["blob_records"] // max(1, len(lv["sizes"])))
        for s in lv["sizes"]:
            rows.append(f"| {lv['level']}x | {lv['repos']} | {lv['tags']} | {lv['blob_records']} | {s['shard']} | "
                        f"{s['lmdb_meta_bytes'] / 2**20:.1f} | {s['lmdb_search_bytes'] / 2**20:.1f} | "
                        f"{s['blob_dir']['files']} | {s['blob_dir']['allocated'] / 2**20:.1f} | "
                        f"{s['lmdb_meta_bytes'] // per_shard_records} |")
    return rows


def markdown(doc: dict[str, Any]) -> str:
    levels = doc["levels"]
    o = doc["options"]
    lines = [f"# bench scale: {doc['name']}", "",
             f"`{doc.get('command', '')}` — {o['shards']} shards, {o['workers']} gateway workers, "
             f"{doc['machine']['cores']} cores ({doc['machine']['cpu_model']}), started {doc['started']}", "",
             summary_line(doc["ceilings"]), ""]
    if doc.get("error"):
        lines += [f"**Stopped early**: {doc['error']}", ""]
    lines += ["## Build (through the API)", "", "| level | repos | tags | blob records | seconds | requests | req/s |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for lv in levels:
        b = lv["build"]
        rate = round(b["requests"] / b["seconds"]) if b["seconds"] else "-"
        lines.append(f"| {lv['level']}x | {lv['repos']} | {lv['tags']} | {lv['blob_records']} | {b['seconds']} | "
                     f"{b['requests']} | {rate} |")
    names = list(levels[0]["latency"]) if levels else []
    head = " | ".join(f"{lv['level']}x median / p99" for lv in levels)
    lines += ["", "## Latency of one request (ms)", "", f"| request | {head} |", "| --- |" + " --- |" * len(levels)]
    for name in names:
        cells = []
        for lv in levels:
            lat = lv["latency"].get(name)
            cells.append("-" if not lat or lat["median_ms"] is None else
                         f"{lat['median_ms']:.2f} / {lat['p99_ms']:.2f}" + (f" ({lat['errors']} errors)" if lat["errors"] else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Shard restart, memory", "",
              "RSS counts the pages of the LMDB files a process has mapped and touched (shared with the page cache, "
              "given back under memory pressure); RssAnon is the process's own memory.", "",
              "| level | SIGTERM → ready s | process start → ready s | RSS MiB (RssAnon MiB) |",
              "| --- | --- | --- | --- |"]
    for lv in levels:
        restarts = ", ".join(str(r["sigterm_to_ready_s"]) for r in lv["restarts"]) or "-"
        own = ", ".join(str(r["process_start_to_ready_s"]) for r in lv["restarts"]) or "-"
        anon = lv.get("rss_anon", {})
        rss = ", ".join(f"{p} {v / 2**20:.0f}" + (f" ({anon[p] / 2**20:.0f})" if anon.get(p) else "")
                        for p, v in lv["rss"].items() if v)
        lines.append(f"| {lv['level']}x | {restarts} | {own} | {rss} |")
    lines += ["", "## Sizes", "", *_size_rows(levels)]
    if doc.get("growth"):
        lines += ["", f"## Growth from {levels[0]['level']}x to {levels[-1]['level']}x", "",
                  "| figure | first | last | ratio | n ratio | log n ratio | worse than ~O(log n)? |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for g in doc["growth"]:
            lines.append(f"| {g['figure']} | {g['first']} {g['unit']} | {g['last']} {g['unit']} | {g['ratio']} | "
                         f"{g['n_ratio']} | {g['log_n_ratio']} | {'**yes**' if g['flag'] else 'no'} |")
    return "\n".join(lines) + "\n"


def write_chart(doc: dict[str, Any], path: str) -> str | None:
    """Median latency per request kind against the level (log x), if matplotlib is there."""
    levels = doc["levels"]
    if len(levels) < 1:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(9, 5.5))
    xs = [lv["level"] for lv in levels]
    for name in levels[0]["latency"]:
        ys = [lv["latency"][name]["median_ms"] for lv in levels]
        if all(y is not None for y in ys):
            ax.plot(xs, ys, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(xs, [f"{x}x" for x in xs])
    ax.set_xlabel(f"level (× {doc['options']['repos']} repositories, {doc['options']['tags']} tags, "
                  f"{doc['options']['blobs']} blob records)")
    ax.set_ylabel("median latency of one request, ms (lower is better)")
    ax.set_title("shardreg bench scale: cost of one request as the registry grows")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["growth", "markdown", "write_chart", "FLAG_FACTOR"]
