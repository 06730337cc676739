"""A shard's own small HTTP listener: ``/livez``, ``/readyz``, ``/metrics`` (for Kubernetes).

Deliberately minimal (HTTP/1.0-style, one request per connection): it only answers probes
and Prometheus scrapes, never registry traffic.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import SummaryMetricFamily

from shard.service import ShardService

#: Seconds each recent request took, per op (kept by the server).
OpLatency = Mapping[str, list[float]]

#: Below this much free space the shard reports not ready.
MIN_FREE_BYTES = 256 * 1024 * 1024


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
        probe.unlink()
    except OSError as exc:
        return False, f"disk not writable: {exc.strerror}"
    if shutil.disk_usage(root).free < MIN_FREE_BYTES:
        return False, "disk almost full"
    return True, "ok"


class _OpLatencyCollector:
    def __init__(self, index: int, op_latency: OpLatency) -> None:
        self.index = index
        self.op_latency = op_latency

    def collect(self) -> Iterator[SummaryMetricFamily]:
        family = SummaryMetricFamily("shardreg_shard_op_seconds", "Time to serve one wire op",
                                     labels=["shard", "op"])
        for op, samples in self.op_latency.items():
            family.add_metric([str(self.index), op], len(samples), sum(samples))
        yield family


def metrics_text(service: ShardService, op_latency: OpLatency) -> bytes:
    registry = CollectorRegistry()
    labels = {"shard": str(service.index)}
    count, size = service.blob_usage()
    for name, doc, value in (
        ("shardreg_shard_lmdb_bytes", "Size of the LMDB metadata", service.meta.size_bytes()),
        ("shardreg_shard_blob_bytes", "Bytes of blob files", size),
        ("shardreg_shard_blob_count", "Number of blob files", count),
        ("shardreg_shard_uploads_in_progress", "Upload sessions in memory", len(service.uploads)),
        ("shardreg_shard_damaged_objects", "Blobs and manifests the last scrub found damaged",
         len(service.damaged)),
    ):
        Gauge(name, doc, ["shard"], registry=registry).labels(**labels).set(value)
    registry.register(_OpLatencyCollector(service.index, op_latency))
    return generate_latest(registry)


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


__all__ = ["serve_health", "readiness", "metrics_text"]
