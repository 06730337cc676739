"""``shardreg bench reshard``: what a client sees while the cluster changes its shard count (issue 12).

Unlike the other workloads this one is a scenario, not a level: fill ``--repos`` repositories, then for
each step of the plan (grow ``--shards`` → ``--grow-to``, then shrink back) start ``--clients`` clients
pushing and pulling verified images, ``POST /v2/_shardreg/cluster/resize``, poll
``/v2/_shardreg/cluster/status`` every ``--poll`` seconds until the resize is done, and stop the clients.
Each step reports repositories and bytes moved per second (from the status documents, the contract of
/work/wt/RESHARD-API.md) and the clients' p50/p99 latency and errors during the move.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.client import BlobFactory, Registry, VerifyError
from bench.runner import latency_summary
from bench.workloads import Image, Options, push_image

RESIZE = "/v2/_shardreg/cluster/resize"
STATUS = "/v2/_shardreg/cluster/status"
MB = float(1 << 20)
MAX_SHARDS = 256


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from e
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def shard_count(text: str) -> int:
    value = positive_int(text)
    if value > MAX_SHARDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SHARDS} shards: {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from e
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="shardreg bench reshard", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url", nargs="?", help="a gateway of a running cluster (default: start `shardreg serve`)")
    p.add_argument("--shards", type=shard_count, default=2, help="shards to start with (default 2)")
    p.add_argument("--grow-to", type=shard_count, default=3, help="grow to this many, then shrink back (default 3)")
    p.add_argument("--no-shrink", action="store_true", help="only grow")
    p.add_argument("--repos", type=positive_int, default=200, help="repositories filled before the move (default 200)")
    p.add_argument("--clients", type=positive_int, default=8, help="concurrent clients during the move (default 8)")
    p.add_argument("--max-mbps", type=positive_float, help="throttle of the move (default unlimited)")
    p.add_argument("--poll", type=positive_float, default=1.0, help="seconds between status polls (default 1)")
    p.add_argument("--timeout", type=positive_float, default=1800.0, help="give up on one resize after this (s)")
    p.add_argument("--user", help="admin user for the resize API and the clients (with --password-stdin)")
    p.add_argument("--password-stdin", action="store_true", help="read the admin password or API key from stdin")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="bench-results", help="directory of the JSON and Markdown results")
    p.add_argument("--name", help="result file name (default: date-reshard)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.grow_to <= args.shards:
        p.error(f"--grow-to ({args.grow_to}) must be more than --shards ({args.shards})")
    if args.password_stdin and not args.user:
        p.error("--password-stdin needs --user")
    args.plan = plan(args.shards, args.grow_to, shrink=not args.no_shrink)
    return args


def plan(start: int, grow_to: int, *, shrink: bool = True) -> list[tuple[int, int]]:
    """The resize steps: one grow, then (by default) the shrink back to where it started."""
    steps = [(start, grow_to)]
    if shrink:
        steps.append((grow_to, start))
    return steps


# --- what the status documents say ----------------------------------------------------------------------


@dataclass
class StatusSample:
    at: float  # seconds since the resize was posted
    names_done: int
    names_left: int
    bytes_done: int
    bytes_left: int
    state: str | None
    phase: str

    @classmethod
    def of(cls, at: float, doc: dict[str, Any]) -> StatusSample:
        progress = doc.get("progress") or {}
        names = progress.get("names") or {}
        nbytes = progress.get("bytes") or {}
        resize = doc.get("resize") or {}
        return cls(at, int(names.get("done", 0)), int(names.get("left", 0)), int(nbytes.get("done", 0)),
                   int(nbytes.get("left", 0)), resize.get("state"), str(doc.get("phase", "")))


def finished(doc: dict[str, Any], target: int) -> bool | None:
    """True when this resize is done (the CLI's exit-0 rule), False when it failed, None while it runs."""
    state = (doc.get("resize") or {}).get("state")
    if state in ("failed", "aborted"):
        return False
    if state == "done" and doc.get("phase") == "stable" and doc.get("shards") == target:
        return True
    return None


def move_figures(samples: list[StatusSample], final: dict[str, Any]) -> dict[str, Any]:
    """Repositories and bytes moved, and their rates over the move's wall time, from the status polls."""
    last = samples[-1] if samples else StatusSample.of(0.0, final)
    seconds = last.at
    progress = final.get("progress") or {}
    return {
        "seconds": round(seconds, 3),
        "names_moved": last.names_done,
        "bytes_moved": last.bytes_done,
        "names_per_s": round(last.names_done / seconds, 3) if seconds > 0 else None,
        "mb_per_s": round(last.bytes_done / MB / seconds, 3) if seconds > 0 else None,
        "reported_bytes_per_s": progress.get("bytesPerSecond"),
        "fence_p50_ms": _ms((progress.get("fence") or {}).get("p50")),
        "fence_p99_ms": _ms((progress.get("fence") or {}).get("p99")),
        "busy_retries": progress.get("busyRetries"),
        "uploads_refused": progress.get("uploadsRefused"),
        "errors": list(final.get("errors") or []),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


# --- the clients ------------------------------------------------------------------------------------------


@dataclass
class ClientLoad:
    """Latencies and errors of the clients during one step, by operation."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {"push": [], "pull": []})
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    def error(self, kind: str, e: BaseException) -> None:
        text = str(e) if isinstance(e, VerifyError) else f"{type(e).__name__}: {e}"
        status = next((w for w in text.replace(",", " ").split() if w.isdigit() and len(w) == 3), None)
        key = f"{kind} HTTP {status}" if status else f"{kind} {type(e).__name__}"
        self.errors[key] = self.errors.get(key, 0) + 1
        if len(self.samples) < 5:
            self.samples.append(text[:200])

    def summary(self) -> dict[str, Any]:
        five = sum(n for k, n in self.errors.items() if " HTTP 5" in k)
        return {"ops": {k: len(v) for k, v in self.latencies.items()},
                "latency": {k: latency_summary(v) for k, v in self.latencies.items()},
                "errors": sum(self.errors.values()), "errors_5xx": five,
                "errors_404": sum(n for k, n in self.errors.items() if k.endswith("HTTP 404")),
                "errors_by_kind": dict(sorted(self.errors.items())), "error_samples": self.samples}


async def client_loop(reg: Registry, factory: BlobFactory, opts: Options, images: list[Image], load: ClientLoad,
                      stop: asyncio.Event, worker: int, step: int = 0) -> None:
    """Alternate a verified pull of a known image and a push of a new tag (every third push a new
    repository); tags are unique to the step and the worker, so no pull ever races a re-tag."""
    rng = random.Random(opts.seed * 1000 + step * 100 + worker)
    seq = 0
    while not stop.is_set():
        seq += 1
        kind = "pull" if seq % 2 else "push"
        t0 = time.perf_counter()
        try:
            if kind == "pull":
                image = rng.choice(images)
                await reg.get_manifest(image.repo, image.tag, image.digest)
                for digest, size in image.blobs:
                    await reg.pull_blob(image.repo, digest, size)
            else:
                tag = f"s{step}-w{worker}-{seq}"
                repo = f"reshard/new-{opts.run_id}-{tag}" if seq % 3 == 0 else rng.choice(images).repo
                images.append(await push_image(reg, factory, rng, opts, repo, tag))
        except Exception as e:  # noqa: BLE001 - every failure is counted, none stops the load
            load.error(kind, e)
            continue
        load.latencies[kind].append(time.perf_counter() - t0)


# --- the report -------------------------------------------------------------------------------------------


def step_report(frm: int, to: int, samples: list[StatusSample], final: dict[str, Any], load: dict[str, Any],
                outcome: str) -> dict[str, Any]:
    return {"from": frm, "to": to, "outcome": outcome, "move": move_figures(samples, final), "clients": load,
            "polls": [s.__dict__ for s in samples]}


def markdown(doc: dict[str, Any]) -> str:
    """The table docs/performance.md shows: one row per resize step."""
    lines = [f"`{doc['command']}` ({doc['started']}, {doc['options']['repos']} repositories, "
             f"{doc['options']['clients']} clients{', limit ' + str(doc['options']['max_mbps']) + ' MB/s' if doc['options'].get('max_mbps') else ''})",
             "",
             "| resize | outcome | s | repos moved | repos/s | MB moved | MB/s | fence p99 ms | pull p50/p99 ms | "
             "push p50/p99 ms | client errors (5xx, 404) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in doc["steps"]:
        m, c = s["move"], s["clients"]
        lat = c["latency"]
        lines.append(
            f"| {s['from']}→{s['to']} | {s['outcome']} | {_n(m['seconds'])} | {m['names_moved']} | "
            f"{_n(m['names_per_s'])} | {_n(m['bytes_moved'] / MB)} | {_n(m['mb_per_s'])} | {_n(m['fence_p99_ms'])} | "
            f"{_n(lat['pull']['p50_ms'])}/{_n(lat['pull']['p99_ms'])} | "
            f"{_n(lat['push']['p50_ms'])}/{_n(lat['push']['p99_ms'])} | "
            f"{c['errors']} ({c['errors_5xx']}, {c['errors_404']}) |")
    return "\n".join(lines) + "\n"


def _n(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 1 else f"{x:.3f}".rstrip("0").rstrip(".") or "0"


def progress_line(to: int, s: StatusSample) -> str:
    total = s.names_done + s.names_left
    return (f"→{to} {s.at:6.1f}s {s.phase}/{s.state}: {s.names_done}/{total} repos, "
            f"{s.bytes_done / MB:.1f}/{(s.bytes_done + s.bytes_left) / MB:.1f} MB")


# --- the run ----------------------------------------------------------------------------------------------


class ResizeRefused(RuntimeError):
    """The resize API answered with an error (409 RESIZE_RUNNING, 400, 401/403 ...)."""


async def post_resize(session: Any, url: str, shards: int, max_mbps: float | None) -> dict[str, Any]:
    body: dict[str, Any] = {"shards": shards}
    if max_mbps:
        body["maxMbps"] = max_mbps
    async with session.post(url + RESIZE, json=body) as r:
        doc = await r.json(content_type=None)
        if r.status not in (200, 202):
            raise ResizeRefused(f"POST {RESIZE} {body}: HTTP {r.status} {json.dumps(doc)[:300]}")
        return dict(doc)


async def get_status(session: Any, url: str) -> dict[str, Any]:
    async with session.get(url + STATUS) as r:
        doc = await r.json(content_type=None)
        if r.status != 200:
            raise ResizeRefused(f"GET {STATUS}: HTTP {r.status} {json.dumps(doc)[:300]}")
        return dict(doc)


async def fill(reg: Registry, factory: BlobFactory, opts: Options, repos: int) -> list[Image]:
    rng = random.Random(opts.seed)
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> Image:
        async with sem:
            return await push_image(reg, factory, random.Random(rng.random() + i), opts, f"reshard/r{i:05d}", "v1")

    return list(await asyncio.gather(*(one(i) for i in range(repos))))


async def run_step(args: argparse.Namespace, session: Any, url: str, reg: Registry, factory: BlobFactory,
                   opts: Options, images: list[Image], frm: int, to: int, step: int) -> dict[str, Any]:
    load, stop = ClientLoad(), asyncio.Event()
    clients = [asyncio.create_task(client_loop(reg, factory, opts, images, load, stop, w, step))
               for w in range(args.clients)]
    samples: list[StatusSample] = []
    outcome, final = "timeout", {}
    try:
        await asyncio.sleep(min(2.0, args.poll))  # the clients' latency before the move starts counts too
        t0 = time.monotonic()
        final = await post_resize(session, url, to, args.max_mbps)
        while time.monotonic() - t0 < args.timeout:
            final = await get_status(session, url)
            sample = StatusSample.of(time.monotonic() - t0, final)
            samples.append(sample)
            print(progress_line(to, sample), file=sys.stderr)
            done = finished(final, to)
            if done is not None:
                outcome = "done" if done else str((final.get("resize") or {}).get("state"))
                break
            await asyncio.sleep(args.poll)
    except ResizeRefused as e:
        outcome, final = "refused", {"errors": [str(e)]}
    finally:
        stop.set()
        await asyncio.gather(*clients)
    return step_report(frm, to, samples, final, load.summary(), outcome)


async def run(args: argparse.Namespace, url: str, password: str | None) -> list[dict[str, Any]]:
    import aiohttp

    auth = aiohttp.BasicAuth(args.user, password or "") if args.user else None
    opts = Options(run_id=f"rs{os.getpid()}", small_min=16 << 10, small_max=256 << 10, seed=args.seed)
    factory = BlobFactory(random.Random(args.seed).randbytes(4 << 20), opts.run_id)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(auth=auth, timeout=timeout) as session:
        reg = Registry(url, session)
        images = await fill(reg, factory, opts, args.repos)
        return [await run_step(args, session, url, reg, factory, opts, images, frm, to, i)
                for i, (frm, to) in enumerate(args.plan)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    started = datetime.now(UTC)
    target = None
    url = args.url
    if url is None:
        from bench.targets import start_shardreg

        target = start_shardreg(shards=args.shards, workers=1, label="shardreg")
        url = target.url
    try:
        steps = asyncio.run(run(args, url, password))
    finally:
        if target is not None:
            target.stop()
    name = args.name or started.strftime("%Y%m%d-%H%M%S") + "-reshard"
    doc = {"name": name, "format": 1, "kind": "reshard", "started": started.isoformat(timespec="seconds"),
           "finished": datetime.now(UTC).isoformat(timespec="seconds"),
           "command": "shardreg bench reshard " + " ".join(sys.argv[2:] if argv is None else argv),
           "options": {"url": args.url, "shards": args.shards, "grow_to": args.grow_to, "repos": args.repos,
                       "clients": args.clients, "max_mbps": args.max_mbps, "seed": args.seed},
           "steps": steps}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, name + ".json"), "w") as f:
        json.dump(doc, f, indent=1)
    text = markdown(doc)
    with open(os.path.join(args.out, name + ".md"), "w") as f:
        f.write(text)
    print(text)
    return 0 if all(s["outcome"] == "done" for s in steps) else 1
