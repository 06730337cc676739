"""``shardreg bench pull-through``: the pull-through cache's costs, in one run on this machine (issue 13).

Starts CNCF Distribution (the upstream, with its access log) and a shardreg cluster pulling
through from it (``extensions.sync``, onDemand for ``pt/**``), pushes ``--images`` images to the
upstream, then measures with ``--clients`` concurrent clients, each pulling every image
(manifest by tag, then every blob):

* direct: from the upstream itself;
* cold: through shardreg with an empty cache (every client misses at once), with the upstream's
  request count for those images next to the number of distinct objects (single-flight: equal);
* warm: the same pulls again, from the cache;
* local: the same images pushed to shardreg directly (not a sync repository) and pulled
  (warm and local ``--rounds`` times, interleaved; the median of each).

Reported: client MB/s and CPU ms per MB of each phase, warm/local time (target <= 1.1) and
cold/direct throughput, in NAME.json and NAME.md under ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import procstat
from bench.command import parse_size
from bench.reshard import positive_int, shard_count
from bench.targets import Target, start_distribution, start_shardreg
from common.ring import shard_for

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MB = 1e6
MAX_CLIENTS = 256
#: Target of the issue: a cache hit costs at most this much more time than a local pull.
WARM_TARGET = 1.1
_LINE = re.compile(r'"(GET|HEAD) (\S+) HTTP/[\d.]+" (\d{3})')
PHASES = ("direct", "cold", "warm", "local")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shardreg bench pull-through", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=positive_int, default=4, help="images pushed to the upstream (default 4)")
    p.add_argument("--layers", type=positive_int, default=3, help="layers per image (default 3)")
    p.add_argument("--layer-size", type=parse_size, default=4 << 20, help="bytes per layer (default 4MiB)")
    p.add_argument("--clients", type=positive_int, default=16,
                   help=f"concurrent clients, each pulling every image (default 16, at most {MAX_CLIENTS})")
    p.add_argument("--shards", type=shard_count, default=2, help="shards of the cache cluster (default 2)")
    p.add_argument("--workers", type=positive_int, default=2, help="gateway workers of the cache (default 2)")
    p.add_argument("--req-concurrent", type=positive_int, default=8, help="the upstream's reqConcurrent (default 8)")
    p.add_argument("--rounds", type=positive_int, default=5, help="warm and local pulls, interleaved (median; default 5)")
    p.add_argument("--out", default="bench-results", help="directory of the JSON and Markdown results")
    p.add_argument("--name", help="result file name stem (default: date-pull-through)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.clients > MAX_CLIENTS:
        p.error(f"--clients must be 1..{MAX_CLIENTS}")
    if not 1 << 10 <= args.layer_size <= 1 << 30:
        p.error("--layer-size must be 1KiB..1GiB")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", args.name):
        p.error(f"--name may hold letters, digits, '.', '_' and '-' only: {args.name!r}")
    return args


# --- figures ----------------------------------------------------------------------------------------------


def upstream_requests(text: str, prefix: str) -> Counter[str]:
    """Successful GETs under ``prefix`` in a Distribution access log, by path."""
    return Counter(m.group(2) for m in _LINE.finditer(text)
                   if m.group(1) == "GET" and m.group(3) == "200" and m.group(2).startswith(prefix))


def cpu_figures(cpu_s: dict[str, float], nbytes: int) -> dict[str, float | None]:
    """CPU ms per MB delivered to the clients, per component and for ``server`` (what serves the
    client: the cache's processes, or the upstream in the direct phase); ``upstream`` and
    ``generator`` stay apart."""
    mb = nbytes / MB
    server = sum(s for role, s in cpu_s.items() if role not in ("upstream", "generator"))
    if set(cpu_s) <= {"upstream", "generator"}:  # the direct phase: the upstream is the server
        server = cpu_s.get("upstream", 0.0)
    out: dict[str, float | None] = {"server": round(server * 1000 / mb, 3) if mb else None}
    for role, seconds in sorted(cpu_s.items()):
        out[role] = round(seconds * 1000 / mb, 3) if mb else None
    return out


def median(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """The round of median time (the middle one of an odd count, the faster middle of an even one)."""
    return sorted(phases, key=lambda m: m["seconds"])[(len(phases) - 1) // 2]


def summarize(setup: dict[str, Any], phases: dict[str, dict[str, Any]], requests: Counter[str]) -> dict[str, Any]:
    """The report's figures from the measured phases and the upstream's requests during ``cold``."""
    objects = setup["images"] * (setup["layers"] + 2)  # a manifest, a config and the layers per image
    direct, cold, warm, local = (phases[p] for p in PHASES)
    warm_vs_local = round(warm["seconds"] / local["seconds"], 2) if local["seconds"] else None
    return {
        "setup": setup, "phases": phases,
        "upstream_requests": sum(requests.values()), "distinct_objects": objects,
        "max_requests_per_object": max(requests.values(), default=0),
        "cold_vs_direct_throughput": round(cold["mb_per_s"] / direct["mb_per_s"], 2) if direct["mb_per_s"] else None,
        "warm_vs_local_time": warm_vs_local,
        "warm_target_met": warm_vs_local is not None and warm_vs_local <= WARM_TARGET,
    }


def _n(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 1 else f"{x:.3f}".rstrip("0").rstrip(".") or "0"


def _ratio(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def markdown(doc: dict[str, Any]) -> str:
    """The table docs/performance.md shows: one row per phase, then the upstream count and the ratios."""
    s = doc["setup"]
    lines = [f"`{doc['command']}` ({doc['started']}; {s['images']} images of {s['layers']} × "
             f"{_n(s['layer_size'] / (1 << 20))} MiB, {s['clients']} clients, {s['shards']} shards, "
             f"{s['workers']} gateway workers; upstream Distribution {doc.get('upstream_version') or '?'})",
             "",
             "| phase | s | client MB/s | server CPU ms/MB | upstream CPU ms/MB | client CPU ms/MB |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    names = {"direct": "direct from the upstream", "cold": "cold, through shardreg (empty cache)",
             "warm": "warm, from the cache", "local": "local (pushed to shardreg)"}
    for phase in PHASES:
        m = doc["phases"][phase]
        cpu = m.get("cpu_ms_per_mb") or {}
        upstream = cpu.get("upstream") if phase == "cold" else None
        lines.append(f"| {names[phase]} | {_n(m['seconds'])} | {_n(m['mb_per_s'])} | {_n(cpu.get('server'))} | "
                     f"{_n(upstream)} | {_n(cpu.get('generator'))} |")
    met = "met" if doc["warm_target_met"] else "not met"
    lines += ["",
              f"Upstream requests during the cold phase: **{doc['upstream_requests']} for "
              f"{doc['distinct_objects']} distinct objects** (at most {doc['max_requests_per_object']} per object). "
              f"Cold/direct throughput {_ratio(doc['cold_vs_direct_throughput'])}; warm/local time "
              f"**{_ratio(doc['warm_vs_local_time'])}** (target ≤ {WARM_TARGET}: {met})."]
    return "\n".join(lines) + "\n"


# --- the run ----------------------------------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push(client: httpx.AsyncClient, repo: str, layers: int, size: int) -> int:
    """An image (config + random layers) tagged ``1``; its total size."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}).encode()
    blobs = [config, *(os.urandom(size) for _ in range(layers))]
    for blob in blobs:
        r = await client.post(f"/v2/{repo}/blobs/uploads/")
        location = r.headers["Location"]
        location += ("&" if "?" in location else "?") + f"digest={_digest(blob)}"
        r = await client.put(location, content=blob, headers={"Content-Type": "application/octet-stream"})
        r.raise_for_status()
    descriptor = lambda data, kind: {"mediaType": kind, "digest": _digest(data), "size": len(data)}  # noqa: E731
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST,
                           "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
                           "layers": [descriptor(b, "application/vnd.oci.image.layer.v1.tar") for b in blobs[1:]]})
    r = await client.put(f"/v2/{repo}/manifests/1", content=manifest, headers={"Content-Type": MANIFEST})
    r.raise_for_status()
    return sum(len(b) for b in blobs) + len(manifest)


async def pull(client: httpx.AsyncClient, repo: str) -> int:
    """Manifest by tag, then every blob, each checked against its digest; the bytes received."""
    r = await client.get(f"/v2/{repo}/manifests/1", headers={"Accept": MANIFEST})
    r.raise_for_status()
    total = len(r.content)
    doc = r.json()
    for descriptor in [doc["config"], *doc["layers"]]:
        h = hashlib.sha256()
        async with client.stream("GET", f"/v2/{repo}/blobs/{descriptor['digest']}") as response:
            response.raise_for_status()
            async for chunk in response.aiter_bytes(1 << 20):
                h.update(chunk)
                total += len(chunk)
        if "sha256:" + h.hexdigest() != descriptor["digest"]:
            raise RuntimeError(f"{repo}: blob {descriptor['digest']} arrived with another digest")
    return total


Trees = list[tuple[Target, str]]  # (registry, role its CPU is charged to: "cache" or "upstream")


def _sample(trees: Trees) -> list[tuple[str, list[procstat.ProcSample]]]:
    return [(role, procstat.sample_tree(t.root_pid, t.kind) if t.root_pid else []) for t, role in trees]


def _cpu(before: list[tuple[str, list[procstat.ProcSample]]],
         after: list[tuple[str, list[procstat.ProcSample]]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for (role, b), (_, a) in zip(before, after, strict=True):
        for component, seconds in procstat.cpu_delta(b, a).items():
            key = "upstream" if role == "upstream" else procstat.group_role(component)
            out[key] = out.get(key, 0.0) + seconds
    return out


async def measure(url: str, repos: list[str], clients: int, trees: Trees) -> dict[str, Any]:
    """``clients`` clients at once, each pulling every repository: seconds, MB/s, CPU per MB."""
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=httpx.Limits(max_connections=clients * 2)) as c:
        async def one_client() -> int:
            return sum([await pull(c, repo) for repo in repos])
        before, gen0 = _sample(trees), procstat.self_cpu()
        started = time.perf_counter()
        sizes = await asyncio.gather(*(one_client() for _ in range(clients)))
        seconds = time.perf_counter() - started
        after, gen1 = _sample(trees), procstat.self_cpu()
    cpu = _cpu(before, after) | {"generator": gen1 - gen0}
    nbytes = sum(sizes)
    return {"seconds": round(seconds, 3), "mb_per_s": round(nbytes / seconds / MB, 1), "bytes": nbytes,
            "cpu_s": {k: round(v, 4) for k, v in sorted(cpu.items())}, "cpu_ms_per_mb": cpu_figures(cpu, nbytes)}


def _log_size(target: Target) -> int:
    return os.path.getsize(target.log_path) if target.log_path else 0


def _log_since(target: Target, mark: int) -> str:
    if not target.log_path:
        return ""
    with open(target.log_path, "rb") as f:
        f.seek(mark)
        return f.read().decode(errors="replace")


async def run(args: argparse.Namespace, say: Callable[[str], None] = print) -> tuple[dict[str, Any], str]:
    """The four phases; (the figures, the upstream's version)."""
    upstream = start_distribution(label="upstream", access_log=True)
    cache: Target | None = None
    try:
        config = {"extensions": {"sync": {"registries": [
            {"urls": [upstream.url], "onDemand": True, "tlsVerify": False, "reqConcurrent": args.req_concurrent,
             "content": [{"prefix": "pt/**"}]}]}}}
        config_path = Path(upstream._tmp or ".") / "shardreg.json"
        config_path.write_text(json.dumps(config))
        cache = start_shardreg(shards=args.shards, workers=args.workers, label="cache",
                               extra_args=["--config", str(config_path)])
        repos = [f"pt/img{i}" for i in range(args.images)]
        # each local twin lives on the same shard as its pull-through image: the comparison is like for like
        twins = [next(name for k in range(1000) if shard_for(name := f"local/img{i}-{k}", args.shards)
                      == shard_for(repo, args.shards)) for i, repo in enumerate(repos)]
        say(f"pushing {args.images} images to the upstream and to the cache")
        async with httpx.AsyncClient(base_url=upstream.url, timeout=300) as up, \
                httpx.AsyncClient(base_url=cache.url, timeout=300) as local:
            for i, repo in enumerate(repos):
                await push(up, repo, args.layers, args.layer_size)
                await push(local, twins[i], args.layers, args.layer_size)
        phases: dict[str, dict[str, Any]] = {}
        phases["direct"] = await measure(upstream.url, repos, args.clients, [(upstream, "upstream")])
        say(f"direct: {phases['direct']['mb_per_s']} MB/s")
        await asyncio.sleep(0.5)  # the direct phase's last log lines come after its answers: not the cold phase's
        mark = _log_size(upstream)
        both: Trees = [(cache, "cache"), (upstream, "upstream")]
        phases["cold"] = await measure(cache.url, repos, args.clients, both)
        say(f"cold: {phases['cold']['mb_per_s']} MB/s")
        await asyncio.sleep(0.5)  # the access log is written after the answer
        requests = upstream_requests(_log_since(upstream, mark), "/v2/pt/")
        warms, locals_ = [], []
        for rnd in range(args.rounds):  # interleaved, the median of each: the machine's noise hits both
            warms.append(await measure(cache.url, repos, args.clients, both))
            locals_.append(await measure(cache.url, twins, args.clients, both))
            say(f"round {rnd + 1}/{args.rounds}: warm {warms[-1]['seconds']} s, local {locals_[-1]['seconds']} s")
        phases["warm"], phases["local"] = median(warms), median(locals_)
        setup = {"images": args.images, "layers": args.layers, "layer_size": args.layer_size, "clients": args.clients,
                 "shards": args.shards, "workers": args.workers, "req_concurrent": args.req_concurrent,
                 "rounds": args.rounds}
        figures = summarize(setup, phases, requests)
        figures["rounds"] = {"warm_s": [m["seconds"] for m in warms], "local_s": [m["seconds"] for m in locals_]}
        return figures, upstream.version
    finally:
        if cache is not None:
            cache.stop()
        upstream.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.now(UTC)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    figures, version = asyncio.run(run(args, lambda line: print(line, file=sys.stderr)))
    name = args.name or started.strftime("%Y%m%d-%H%M%S") + "-pull-through"
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["pull-through"]:
        given = given[1:]
    from bench import machine

    doc = {"name": name, "format": 1, "kind": "pull-through", "started": started.isoformat(timespec="seconds"),
           "finished": datetime.now(UTC).isoformat(timespec="seconds"),
           "command": "shardreg bench pull-through " + " ".join(given),
           "machine": machine.describe() | {"loadavg_start": load_at_start}, "upstream_version": version} | figures
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(doc, f, indent=1)
    text = markdown(doc)
    with open(os.path.join(args.out, name + ".md"), "w") as f:
        f.write(text)
    print(text)
    single = doc["upstream_requests"] == doc["distinct_objects"] and doc["max_requests_per_object"] == 1
    return 0 if single else 1


if __name__ == "__main__":
    sys.exit(main())
