"""What ``shardreg bench scale`` measures at each level: request latencies, scrapes, a shard's
start-up, sizes on disk and memory.

Latencies are measured one request at a time (no concurrency: the figure is the cost of one
request against a registry of that size, not a throughput), each answer checked.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.runner import latency_summary
from bench.scale_build import TAGS_REPO, repo_name, tag_name

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = 100


class CheckError(RuntimeError):
    pass


def gql_queries(repos: int) -> dict[str, str]:
    """The GraphQL pages measured: newest first (a page of 10), a deep offset of it, a text
    search, and a filtered search (every tenth repository is arm64)."""
    deep = max(0, repos - 20)
    return {
        "gql-newest": "{ RepoListWithNewestImage(requestedPage: {limit: 10, offset: 0, sortBy: UPDATE_TIME}) "
                      "{ Page { TotalCount ItemCount } Results { Name } } }",
        "gql-newest-deep": f"{{ RepoListWithNewestImage(requestedPage: {{limit: 10, offset: {deep}, sortBy: ALPHABETIC_ASC}}) "
                           "{ Page { TotalCount ItemCount } Results { Name } } }",
        "gql-global": '{ GlobalSearch(query: "r00000", requestedPage: {limit: 10, offset: 0}) '
                      "{ Page { TotalCount ItemCount } Repos { Name } } }",
        "gql-filter": '{ GlobalSearch(query: "", filter: {Os: ["linux"], Arch: ["arm64"]}, '
                      "requestedPage: {limit: 10, offset: 0}) { Page { TotalCount ItemCount } Repos { Name } } }",
    }


class Probes:
    def __init__(self, url: str, session: aiohttp.ClientSession, metrics_urls: list[str]) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.metrics_urls = metrics_urls

    async def _get(self, url: str, **kw: Any) -> bytes:
        async with self.session.get(url, **kw) as r:
            body = await r.read()
            if r.status != 200:
                raise CheckError(f"GET {url}: HTTP {r.status}: {body[:200]!r}")
            return body

    async def _gql(self, query: str) -> dict[str, Any]:
        async with self.session.post(self.url + "/v2/_zot/ext/search", json={"query": query}) as r:
            body = await r.read()
            doc = json.loads(body) if body else {}
            if r.status != 200 or doc.get("errors"):
                raise CheckError(f"GraphQL: HTTP {r.status}: {body[:300]!r}")
            return dict(doc["data"])

    def checks(self, repos: int, tags: int, other_repos: int = 1) -> dict[str, Callable[[], Awaitable[None]]]:
        """Each measured request, with the check of its answer (``other_repos``: the tags and blob
        repositories, listed besides the ``repos``; the deep pages start 150 before the end)."""
        d_repo, d_tag = max(0, repos - PAGE - 50), max(0, tags - PAGE - 50)
        deep_repo, deep_tag = repo_name(d_repo), tag_name(d_tag)
        after_deep_repo = repos - d_repo - 1 + (1 if tags else 0)  # "scale/tags" sorts after "scale/r..."

        async def catalog(last: str | None, want: int) -> None:
            params = {"n": str(PAGE)} | ({"last": last} if last else {})
            got = json.loads(await self._get(self.url + "/v2/_catalog", params=params))["repositories"]
            if len(got) != want or got != sorted(got) or (last and got[0] <= last):
                raise CheckError(f"catalog after {last}: {len(got)} names, expected {want} in order")

        async def taglist(last: str | None, want: int) -> None:
            params = {"n": str(PAGE)} | ({"last": last} if last else {})
            got = json.loads(await self._get(f"{self.url}/v2/{TAGS_REPO}/tags/list", params=params))["tags"]
            if len(got) != want or got != sorted(got) or (last and got[0] <= last):
                raise CheckError(f"tags after {last}: {len(got)} tags")

        def gql(name: str, query: str) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                data = await self._gql(query)
                page = next(iter(data.values()))
                items = page.get("Results", page.get("Repos")) or []
                if not items or len(items) > 10:
                    raise CheckError(f"{name}: {len(items)} items")
            return run

        async def scrape(url: str) -> None:
            if b"# TYPE" not in await self._get(url):
                raise CheckError(f"{url}: not a Prometheus text")

        out: dict[str, Callable[[], Awaitable[None]]] = {
            "catalog-first": lambda: catalog(None, min(PAGE, repos + other_repos)),
            "catalog-deep": lambda: catalog(deep_repo, min(PAGE, after_deep_repo)),
            "tags-first": lambda: taglist(None, min(PAGE, tags)),
            "tags-deep": lambda: taglist(deep_tag, min(PAGE, tags - d_tag - 1)),
        }
        for name, query in gql_queries(repos).items():
            out[name] = gql(name, query)
        out["metrics-gateway"] = lambda: scrape(self.url + "/metrics")
        for i, url in enumerate(self.metrics_urls):
            out[f"metrics-shard{i}"] = functools.partial(scrape, url)
        return out

    async def latencies(self, repos: int, tags: int, samples: int, other_repos: int = 1) -> dict[str, dict[str, Any]]:
        """Median and p99 of ``samples`` sequential requests of each kind (after one warm-up)."""
        out: dict[str, dict[str, Any]] = {}
        for name, check in self.checks(repos, tags, other_repos).items():
            n = samples if not name.startswith("metrics") else max(5, samples // 4)
            times: list[float] = []
            errors: list[str] = []
            for k in range(n + 1):
                t0 = time.perf_counter()
                try:
                    await check()
                except (CheckError, aiohttp.ClientError, KeyError, ValueError) as e:
                    errors.append(str(e)[:300])
                    continue
                if k:  # the first one warms caches and connections
                    times.append(time.perf_counter() - t0)
            s = latency_summary(times)
            out[name] = {"n": s["count"], "median_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "max_ms": s["max_ms"],
                         "errors": len(errors), "error_samples": errors[:3]}
        return out


# --- processes -----------------------------------------------------------------------------------------------


def children(data_dir: str) -> dict[str, int]:
    """The cluster's processes by name (``supervisor.json``)."""
    try:
        doc = json.loads((Path(data_dir) / "supervisor.json").read_text())
    except (OSError, ValueError):
        return {}
    return {name: c["pid"] for name, c in doc.get("children", {}).items() if c.get("pid")}


def rss_bytes(pid: int, field: str = "VmRSS") -> int | None:
    """A memory figure of ``/proc/<pid>/status``: ``VmRSS`` (all resident pages, the LMDB map's
    included) or ``RssAnon`` (the process's own memory: heap, stacks)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def process_start_epoch(pid: int) -> float | None:
    """When a process started (wall clock, 1/CLK_TCK resolution), from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
        with open("/proc/stat") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith("btime"))
    except (OSError, StopIteration):
        return None
    ticks = int(raw[raw.rindex(b")") + 2:].split()[19])
    return btime + ticks / CLK_TCK


async def shard_restart(session: aiohttp.ClientSession, data_dir: str, index: int, readyz: str,
                        timeout: float = 300.0) -> dict[str, Any]:
    """SIGTERM one shard; the supervisor starts it again. Measured: SIGTERM → old process gone,
    SIGTERM → /readyz 200 from the new process (includes the supervisor's restart back-off), and
    the new process's own start → ready (from its start time in /proc: what the shard itself costs)."""
    name = f"shard-{index}"
    old = children(data_dir).get(name)
    if old is None:
        raise CheckError(f"no pid of {name} in supervisor.json")
    t0_wall, t0 = time.time(), time.perf_counter()
    os.kill(old, signal.SIGTERM)
    gone = new = None
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        if gone is None and not os.path.exists(f"/proc/{old}"):
            gone = time.perf_counter() - t0
        pid = children(data_dir).get(name)
        if pid and pid != old:
            new = pid
            try:
                async with session.get(readyz, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    await r.read()
                    if r.status == 200:
                        ready_wall, total = time.time(), time.perf_counter() - t0
                        started = process_start_epoch(new)
                        return {"pid": new, "stop_s": round(gone, 3) if gone is not None else None,
                                "sigterm_to_ready_s": round(total, 3),
                                "process_start_to_ready_s": round(ready_wall - started, 3) if started else None,
                                "restart_delay_s": round(started - t0_wall, 3) if started else None}
            except (aiohttp.ClientError, TimeoutError):
                pass
        await asyncio.sleep(0.02)
    raise CheckError(f"{name} not ready {timeout:.0f} s after SIGTERM (new pid {new})")


def dir_bytes(path: Path) -> dict[str, int]:
    """Files, apparent bytes and allocated bytes under ``path`` (a walk: only the bench pays it)."""
    files = apparent = allocated = 0
    stack = [str(path)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            elif e.is_file(follow_symlinks=False):
                st = e.stat(follow_symlinks=False)
                files, apparent, allocated = files + 1, apparent + st.st_size, allocated + st.st_blocks * 512
    return {"files": files, "bytes": apparent, "allocated": allocated}


def sizes(data_dir: str, shards: int) -> list[dict[str, Any]]:
    """Per shard: LMDB data files (main and search) and the blob directory."""
    out = []
    for i in range(shards):
        root = Path(data_dir) / f"shard-{i}"
        lmdb = {}
        for part in ("meta", "search"):
            f = root / part / "data.mdb"
            lmdb[part] = f.stat().st_size if f.exists() else 0
        out.append({"shard": i, "lmdb_meta_bytes": lmdb["meta"], "lmdb_search_bytes": lmdb["search"],
                    "blob_dir": dir_bytes(root / "blobs")})
    return out


def memory(data_dir: str, field: str = "VmRSS") -> dict[str, int | None]:
    """RSS (``field``: see :func:`rss_bytes`) of every child of the supervisor (shards, the gateway
    parent) and of the gateway's workers."""
    from bench.procstat import children as child_pids

    out = {name: rss_bytes(pid, field) for name, pid in sorted(children(data_dir).items())}
    gateway = children(data_dir).get("gateway")
    for k, pid in enumerate(sorted(child_pids(gateway)) if gateway else ()):
        out[f"gateway-worker{k}"] = rss_bytes(pid, field)
    return out


__all__ = ["Probes", "CheckError", "shard_restart", "sizes", "memory", "children", "gql_queries"]
