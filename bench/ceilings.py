"""The machine's own ceilings (issue 17), so that every bench figure reads as a fraction of a limit.

* loopback TCP throughput: one process sends, another receives, over 127.0.0.1 (3 × 0.5 s)
  (the limit of any pull or push through a socket on this machine; no HTTP, no hashing);
* SHA-256 per core: ``hashlib`` over a 1 MiB buffer in one thread (a registry hashes every byte
  pushed, so its server CPU per MB cannot be below this);
* the disk's fsync'ed sequential write speed is :func:`bench.machine.disk_write_speed`.

:func:`fractions` turns a bench document's figures into shares of these limits.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import socket
import time
from typing import Any

MiB = 1 << 20
_CHUNK = 256 << 10


def _send_for(port: int, seconds: float) -> None:
    """Child process: connect and send zeros for ``seconds``, then close."""
    buf = bytes(_CHUNK)
    with socket.create_connection(("127.0.0.1", port)) as s:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            s.sendall(buf)


def loopback_throughput(seconds: float = 1.0) -> dict[str, Any]:
    """MB/s (MiB/s) one TCP connection carries over loopback between two processes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        ctx = multiprocessing.get_context("fork")
        sender = ctx.Process(target=_send_for, args=(port, seconds), daemon=True)
        sender.start()
        try:
            conn, _ = listener.accept()
            received = 0
            view = memoryview(bytearray(_CHUNK))
            with conn:
                t0 = time.perf_counter()
                while True:
                    n = conn.recv_into(view)
                    if not n:
                        break
                    received += n
                elapsed = time.perf_counter() - t0
        finally:
            sender.join(timeout=seconds + 10)
            if sender.is_alive():
                sender.kill()
    return {"bytes": received, "seconds": round(elapsed, 4),
            "mb_per_s": round(received / MiB / elapsed, 1) if elapsed > 0 else 0.0}


def sha256_speed(seconds: float = 0.5) -> dict[str, Any]:
    """SHA-256 MB/s (MiB/s) of one core, and its cost in ms per MB."""
    buf = os.urandom(MiB)
    h = hashlib.sha256()
    done = 0
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or done < 8:
        h.update(buf)
        done += 1
    mb_per_s = done / elapsed
    return {"mib": done, "seconds": round(elapsed, 4), "mb_per_s": round(mb_per_s, 1),
            "ms_per_mb": round(1000.0 / mb_per_s, 3)}


def best_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest round, with every round's figure: a ceiling is what the machine CAN do, and on
    a shared machine a round may lose the core to another process."""
    best = dict(max(rounds, key=lambda r: r["mb_per_s"]))
    best["rounds_mb_per_s"] = [r["mb_per_s"] for r in rounds]
    return best


def measure(disk: dict[str, Any] | None = None, loopback_s: float = 0.5, sha_s: float = 0.25,
            rounds: int = 3) -> dict[str, Any]:
    """All ceilings, each the best of ``rounds`` short rounds (the disk's only if it was measured:
    it is the slow one, measured by :func:`bench.machine.disk_write_speed`)."""
    return {"loopback": best_of([loopback_throughput(loopback_s) for _ in range(rounds)]),
            "sha256": best_of([sha256_speed(sha_s) for _ in range(rounds)]),
            "disk_fsync": ({"mb_per_s": disk["mb_per_s"]} if disk else None)}


def fractions(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each relevant figure of the measured registry as a share of its ceiling: pull-large MB/s of
    loopback, push MB/s of the fsync'ed write speed, server CPU ms/MB of pushes against SHA-256's
    ms/MB (a ratio: how many SHA-256 passes the server's CPU per MB is worth); and for pulls, how
    much of what was served the server read from the disk rather than the page cache (a pull's CPU
    per MB includes those reads)."""
    ceil = doc.get("ceilings") or {}
    loop = (ceil.get("loopback") or {}).get("mb_per_s")
    disk = (ceil.get("disk_fsync") or {}).get("mb_per_s") or (doc.get("disk") or {}).get("mb_per_s")
    sha = (ceil.get("sha256") or {}).get("ms_per_mb")
    primary = (doc.get("targets") or [{}])[0].get("label")
    out: list[dict[str, Any]] = []
    for r in doc.get("results", []):
        if r.get("target") != primary or not r.get("valid") or not r.get("bytes"):
            continue
        w, c = r["workload"], r["concurrency"]
        if w.startswith("pull") and loop:
            out.append({"workload": w, "concurrency": c, "figure": "MB/s", "value": r["mb_per_s"],
                        "ceiling": "loopback", "limit": loop, "share": round(r["mb_per_s"] / loop, 3)})
        from_disk = (r.get("disk_read_mb") or {}).get("server")
        if w.startswith("pull") and from_disk is not None:
            served = round(r["bytes"] / (1 << 20), 1)
            out.append({"workload": w, "concurrency": c, "figure": "MB read from disk", "value": from_disk,
                        "ceiling": "MB served", "limit": served, "share": round(from_disk / served, 3)})
        if w.startswith("push") and disk:
            out.append({"workload": w, "concurrency": c, "figure": "MB/s", "value": r["mb_per_s"],
                        "ceiling": "disk fsync", "limit": disk, "share": round(r["mb_per_s"] / disk, 3)})
        cpu = (r.get("cpu_ms_per_mb") or {}).get("server")
        if w.startswith("push") and sha and cpu:
            out.append({"workload": w, "concurrency": c, "figure": "server CPU ms/MB", "value": cpu,
                        "ceiling": "SHA-256 ms/MB", "limit": sha, "share": round(cpu / sha, 2)})
    return out


def fraction_text(f: dict[str, Any]) -> str:
    """``push-large c=8: MB/s 120 = 45% of disk fsync (266)`` (a CPU figure as a multiple)."""
    share = f"{f['share']:.2f}x" if f["ceiling"].startswith("SHA") else f"{f['share']:.0%} of"
    return f"{f['workload']} c={f['concurrency']}: {f['figure']} {f['value']} = {share} {f['ceiling']} ({f['limit']})"


def summary_line(ceil: dict[str, Any]) -> str:
    """One line naming the ceilings."""
    parts = []
    if ceil.get("loopback"):
        parts.append(f"loopback TCP {ceil['loopback']['mb_per_s']:.0f} MB/s")
    if ceil.get("disk_fsync"):
        parts.append(f"disk fsync'ed write {ceil['disk_fsync']['mb_per_s']:.0f} MB/s")
    if ceil.get("sha256"):
        parts.append(f"SHA-256 {ceil['sha256']['mb_per_s']:.0f} MB/s per core "
                     f"({ceil['sha256']['ms_per_mb']:.2f} ms/MB)")
    return "machine ceilings: " + ", ".join(parts)


__all__ = ["loopback_throughput", "sha256_speed", "best_of", "measure", "fractions", "fraction_text", "summary_line"]
