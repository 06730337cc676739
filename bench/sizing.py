"""Kubernetes sizing from a bench result: CPU cost per MB and per operation -> replicas.

    python -m bench.sizing bench/results/RUN.json --push-mb-s 200 --pull-mb-s 800 \\
        --image-pulls-s 50 --image-pushes-s 5 --heads-s 500

For each component (gateway, shards) the CPU a target load needs is the sum over the kinds of
traffic of (rate x measured CPU cost); replicas = that CPU / (cores per pod x target utilisation),
rounded up, and at least 2 of each for availability. A shard is one asyncio process (plus writer
threads), so it is given at most about one core; the push rate per shard is also bounded by its
volume's fsync'ed write speed.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass

#: workload -> (cost unit, load field it prices)
PRICED = {
    "push-large": ("mb", "push_mb_s"),
    "pull-large": ("mb", "pull_mb_s"),
    "pull-small": ("op", "image_pulls_s"),
    "push-small": ("op", "image_pushes_s"),
    "head-check": ("op", "heads_s"),
}
COMPONENTS = ("gateway", "shards")


@dataclass
class Load:
    push_mb_s: float = 0.0
    pull_mb_s: float = 0.0
    image_pulls_s: float = 0.0
    image_pushes_s: float = 0.0
    heads_s: float = 0.0


def cost_model(doc: dict, target: str | None = None) -> dict[str, dict[str, float]]:
    """CPU ms per unit for each priced workload and component, from the run's highest valid level."""
    target = target or doc["targets"][0]["label"]
    model: dict[str, dict[str, float]] = {}
    for workload, (unit, _) in PRICED.items():
        rows = [r for r in doc["results"] if r["workload"] == workload and r["target"] == target and r["valid"]]
        if not rows:
            continue
        best = max(rows, key=lambda r: r["concurrency"])
        per = best["cpu_ms_per_mb"] if unit == "mb" else best["cpu_ms_per_op"]
        model[workload] = {c: per[c] for c in COMPONENTS if c in per}
        model[workload]["concurrency"] = best["concurrency"]
    return model


def plan(model: dict[str, dict[str, float]], load: Load, gateway_cores: float = 1.0, shard_cores: float = 1.0,
         utilisation: float = 0.6, shard_disk_mb_s: float | None = None) -> dict:
    cpu = {c: 0.0 for c in COMPONENTS}
    for workload, (_, field) in PRICED.items():
        rate = getattr(load, field)
        if rate and workload not in model:
            raise ValueError(f"the result has no valid {workload} figures to price {field}")
        for c in COMPONENTS:
            cpu[c] += rate * model.get(workload, {}).get(c, 0.0) / 1000.0
    gateways = max(2, math.ceil(cpu["gateway"] / (gateway_cores * utilisation)))
    shards = max(2, math.ceil(cpu["shards"] / (min(shard_cores, 1.0) * utilisation)))
    if shard_disk_mb_s and load.push_mb_s:
        shards = max(shards, math.ceil(load.push_mb_s / (shard_disk_mb_s * utilisation)))
    return {"cpu_cores": {c: round(v, 2) for c, v in cpu.items()}, "gateway_replicas": gateways,
            "shard_replicas": shards, "gateway_cores_each": gateway_cores, "shard_cores_each": min(shard_cores, 1.0),
            "utilisation": utilisation}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sizing", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("result", help="a bench JSON result of a shardreg run")
    for field in Load.__dataclass_fields__:
        p.add_argument("--" + field.replace("_", "-"), type=float, default=0.0)
    p.add_argument("--gateway-cores", type=float, default=1.0, help="CPU limit of one gateway pod")
    p.add_argument("--shard-cores", type=float, default=1.0, help="CPU limit of one shard pod (<= 1 used)")
    p.add_argument("--utilisation", type=float, default=0.6, help="target CPU utilisation (headroom)")
    p.add_argument("--shard-disk-mb-s", type=float, help="fsync'ed write speed of one shard volume")
    args = p.parse_args(argv)
    with open(args.result) as f:
        doc = json.load(f)
    model = cost_model(doc)
    load = Load(**{k: getattr(args, k) for k in Load.__dataclass_fields__})
    disk = args.shard_disk_mb_s or (doc.get("disk") or {}).get("mb_per_s")
    out = plan(model, load, args.gateway_cores, args.shard_cores, args.utilisation, disk)
    print(json.dumps({"cost_ms": model, "load": vars(load), "plan": out}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
