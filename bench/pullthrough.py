"""``python -m bench.pullthrough``: the pull-through cache's costs, in one run on this machine.

Starts CNCF Distribution (the upstream, with its access log) and a shardreg cluster pulling
through from it (``extensions.sync``, onDemand for ``pt/**``), pushes ``--images`` images to the
upstream, then measures with ``--clients`` concurrent clients, each pulling every image
(manifest by tag, then every blob):

* **direct**: from the upstream itself;
* **cold**: through shardreg with an empty cache (every client misses at once), with the upstream's
  request count for those images next to the number of distinct objects (single-flight: equal);
* **warm**: the same pulls again, from the cache;
* **local**: the same images pushed to shardreg directly (not a sync repository) and pulled
  (warm and local ``--rounds`` times, interleaved; the median of each).

Reported: client MB/s of each, warm/local time ratio (target ≤ 1.1) and cold/direct throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.targets import Target, free_port, start_shardreg, wait_ready
from common.ring import shard_for

DISTRIBUTION = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
"""
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_LINE = re.compile(r'"(GET|HEAD) (\S+) HTTP/[\d.]+" (\d{3})')


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def start_upstream() -> Target:
    import subprocess

    tmp = tempfile.mkdtemp(prefix="pullthrough-upstream-")
    port = free_port()
    (Path(tmp) / "config.yml").write_text(DISTRIBUTION.format(root=Path(tmp) / "data", port=port))
    log_path = os.path.join(tmp, "registry.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", os.path.join(tmp, "config.yml")], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=tmp)
    target = Target(label="upstream", url=f"http://127.0.0.1:{port}", kind="distribution", root_pid=proc.pid,
                    process=proc, log_path=log_path, _tmp=tmp)
    wait_ready(target, ("/v2/",))
    return target


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
    r = await client.get(f"/v2/{repo}/manifests/1", headers={"Accept": MANIFEST})
    r.raise_for_status()
    total = len(r.content)
    doc = r.json()
    for descriptor in [doc["config"], *doc["layers"]]:
        async with client.stream("GET", f"/v2/{repo}/blobs/{descriptor['digest']}") as response:
            response.raise_for_status()
            async for chunk in response.aiter_bytes(1 << 20):
                total += len(chunk)
    return total


async def measure(url: str, repos: list[str], clients: int) -> dict[str, float]:
    """``clients`` clients at once, each pulling every repository; MB/s and seconds."""
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=httpx.Limits(max_connections=clients * 2)) as c:
        async def one_client() -> int:
            return sum([await pull(c, repo) for repo in repos])
        started = time.perf_counter()
        sizes = await asyncio.gather(*(one_client() for _ in range(clients)))
        seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "mb_per_s": round(sum(sizes) / seconds / 1e6, 1), "bytes": sum(sizes)}


def upstream_requests(log_path: str, since: int, prefix: str) -> Counter[str]:
    with open(log_path, "rb") as f:
        f.seek(since)
        text = f.read().decode(errors="replace")
    return Counter(m.group(2) for m in _LINE.finditer(text)
                   if m.group(1) == "GET" and m.group(3) == "200" and m.group(2).startswith(prefix))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    upstream = start_upstream()
    cache: Target | None = None
    try:
        config = {"extensions": {"sync": {"registries": [
            {"urls": [upstream.url], "onDemand": True, "tlsVerify": False, "reqConcurrent": args.req_concurrent,
             "content": [{"prefix": "pt/**"}]}]}}}
        config_path = Path(upstream._tmp or ".") / "shardreg.json"
        config_path.write_text(json.dumps(config))
        cache = start_shardreg(shards=args.shards, workers=args.workers, extra_args=["--config", str(config_path)])
        repos = [f"pt/img{i}" for i in range(args.images)]
        # each local twin lives on the same shard as its pull-through image: the comparison is like for like
        twins = [next(name for k in range(1000) if shard_for(name := f"local/img{i}-{k}", args.shards)
                      == shard_for(repo, args.shards)) for i, repo in enumerate(repos)]
        async with httpx.AsyncClient(base_url=upstream.url, timeout=300) as up, \
                httpx.AsyncClient(base_url=cache.url, timeout=300) as local:
            for i, repo in enumerate(repos):
                await push(up, repo, args.layers, args.layer_size)
                await push(local, twins[i], args.layers, args.layer_size)
        direct = await measure(upstream.url, repos, args.clients)
        mark = os.path.getsize(upstream.log_path or "")
        cold = await measure(cache.url, repos, args.clients)
        await asyncio.sleep(0.5)  # the access log is written after the answer
        requests = upstream_requests(upstream.log_path or "", mark, "/v2/pt/")
        warms, locals_ = [], []
        for _ in range(args.rounds):  # interleaved, the median of each: the machine's noise hits both
            warms.append(await measure(cache.url, repos, args.clients))
            locals_.append(await measure(cache.url, twins, args.clients))
        warm = sorted(warms, key=lambda m: m["seconds"])[len(warms) // 2]
        local_pull = sorted(locals_, key=lambda m: m["seconds"])[len(locals_) // 2]
        objects = args.images * (args.layers + 2)
        return {
            "setup": {"images": args.images, "layers": args.layers, "layer_size": args.layer_size,
                      "clients": args.clients, "shards": args.shards, "workers": args.workers},
            "direct": direct, "cold": cold, "warm": warm, "local": local_pull,
            "upstream_requests": sum(requests.values()), "distinct_objects": objects,
            "max_requests_per_object": max(requests.values(), default=0),
            "cold_vs_direct_throughput": round(cold["mb_per_s"] / direct["mb_per_s"], 2),
            "warm_vs_local_time": round(warm["seconds"] / local_pull["seconds"], 2),
        }
    finally:
        if cache is not None:
            cache.stop()
        upstream.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pullthrough", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--layer-size", type=int, default=4 << 20, help="bytes per layer (default 4 MiB)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--req-concurrent", type=int, default=8, help="the upstream's reqConcurrent")
    parser.add_argument("--rounds", type=int, default=5, help="warm and local pulls, interleaved (median)")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
