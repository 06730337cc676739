"""A shard's own small HTTP listener: ``/livez``, ``/readyz``, ``/metrics`` (for Kubernetes).

Deliberately minimal (HTTP/1.0-style, one request per connection): it only answers probes
and Prometheus scrapes, never registry traffic.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import SummaryMetricFamily

if TYPE_CHECKING:
    from shard.server import ShardServer

#: Below this much free space the shard reports not ready.
MIN_FREE_BYTES = 256 * 1024 * 1024


def readiness(server: ShardServer) -> tuple[bool, str]:
    root = server.config.shard_dir(server.index)
    try:
        server.service.meta.read(lambda txn: txn.stat(server.service.meta.db["repos"]))
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


class _OpLatency:
    def __init__(self, server: ShardServer) -> None:
        self.server = server

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        family = SummaryMetricFamily("shardreg_shard_op_seconds", "Time to serve one wire op",
                                     labels=["shard", "op"])
        for op, samples in self.server.op_latency.items():
            family.add_metric([str(self.server.index), op], len(samples), sum(samples))
        yield family


def metrics_text(server: ShardServer) -> bytes:
    registry = CollectorRegistry()
    labels = {"shard": str(server.index)}
    count, size = server.service.blob_usage()
    for name, doc, value in (
        ("shardreg_shard_lmdb_bytes", "Size of the LMDB metadata", server.service.meta.size_bytes()),
        ("shardreg_shard_blob_bytes", "Bytes of blob files", size),
        ("shardreg_shard_blob_count", "Number of blob files", count),
        ("shardreg_shard_uploads_in_progress", "Upload sessions in memory", len(server.service.sessions)),
        ("shardreg_shard_damaged_objects", "Blobs and manifests the last scrub found damaged",
         len(server.service.damaged)),
    ):
        Gauge(name, doc, ["shard"], registry=registry).labels(**labels).set(value)
    registry.register(_OpLatency(server))
    return generate_latest(registry)


async def serve_health(server: ShardServer, host: str, port: int) -> asyncio.base_events.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass
            status, ctype, body = 200, "text/plain", b"ok\n"
            if path == "/readyz":
                ok, why = readiness(server)
                status, body = (200 if ok else 503), (why + "\n").encode()
            elif path == "/metrics":
                loop = asyncio.get_running_loop()
                body = await loop.run_in_executor(None, metrics_text, server)
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
