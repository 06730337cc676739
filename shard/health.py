"""A shard's own small HTTP listener: ``/livez``, ``/readyz``, ``/metrics`` (for Kubernetes).

Deliberately minimal (HTTP/1.0-style, one request per connection): it only answers probes
and Prometheus scrapes, never registry traffic.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.metrics_core import Metric

from common.buildinfo import BuildInfoCollector
from shard.service import ShardService

#: Op latency buckets (seconds), the same as the gateway's per-op round trips.
OP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

#: Below this much free space the shard reports not ready.
MIN_FREE_BYTES = 256 * 1024 * 1024


class OpLatency:
    """Time to serve each wire op, as a histogram (``shardreg_shard_op_seconds{shard,op}``)."""

    def __init__(self, index: int) -> None:
        self.index = str(index)
        self.histogram = Histogram("shardreg_shard_op_seconds", "Time to serve one wire op", ["shard", "op"],
                                   buckets=OP_BUCKETS, registry=None)

    def observe(self, op: str, seconds: float) -> None:
        self.histogram.labels(self.index, op).observe(seconds)

    def collect(self) -> Iterator[Metric]:
        yield from self.histogram.collect()


def readiness(service: ShardService) -> tuple[bool, str]:
    root = service.root
    files = service.descriptors.problem()
    if files is not None:
        return False, files
    try:
        service.meta.read(service.meta.repo_count)
    except Exception as exc:  # noqa: BLE001
        return False, f"lmdb: {exc}"
    probe = root / "uploads" / ".probe"
    try:
        probe.write_bytes(b"ok")
        probe.unlink(missing_ok=True)  # an orphan sweep may have taken it
    except OSError as exc:
        return False, f"disk not writable: {exc.strerror}"
    if shutil.disk_usage(root).free < MIN_FREE_BYTES:
        return False, "disk almost full"
    full = service.disk.recently_full()
    if full:
        return False, f"cannot write: {full}"
    return True, "ok"


def metrics_text(service: ShardService, op_latency: OpLatency) -> bytes:
    registry = CollectorRegistry()
    labels = {"shard": str(service.index)}
    count, size = service.blob_usage()
    for name, doc, value in (
        ("shardreg_shard_lmdb_bytes", "Size of the LMDB metadata", service.meta.size_bytes()),
        ("shardreg_shard_blob_bytes", "Bytes of blob files", size),
        ("shardreg_shard_blob_count", "Number of blob files", count),
        ("shardreg_shard_disk_free_bytes", "Free bytes on the shard's filesystem", disk_free(service)),
        ("shardreg_shard_uploads_in_progress", "Upload sessions in memory", len(service.uploads)),
        ("shardreg_shard_damaged_objects", "Blobs and manifests the last scrub found damaged",
         len(service.damaged)),
    ):
        Gauge(name, doc, ["shard"], registry=registry).labels(**labels).set(value)
    registry.register(op_latency)
    registry.register(BuildInfoCollector())
    ProcessCollector(registry=registry)  # this shard process: CPU, RSS, open fds
    return generate_latest(registry)


def disk_free(service: ShardService) -> int:
    """Bytes free for this shard's data (0 when its filesystem cannot be read)."""
    try:
        return shutil.disk_usage(service.root).free
    except OSError:
        return 0


async def serve_health(service: ShardService, op_latency: OpLatency, host: str, port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            status, ctype, body = 200, "text/plain", b"ok\n"
            if path == "/readyz":
                ok, why = readiness(service)
                status, body = (200 if ok else 503), (why + "\n").encode()
            elif path == "/metrics":
                loop = asyncio.get_running_loop()
                body = await loop.run_in_executor(None, metrics_text, service, op_latency)
                ctype = "text/plain; version=0.0.4"
            elif path not in ("/livez", "/startupz"):
                status, body = 404, b"not found\n"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port, reuse_address=True)


__all__ = ["serve_health", "readiness", "metrics_text", "disk_free", "OpLatency"]
