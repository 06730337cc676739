"""Run the gateway: Hypercorn in ``cluster.gatewayWorkers`` worker processes sharing one socket.

We manage the workers ourselves rather than with ``hypercorn.run``: on SIGTERM Hypercorn's
parent kills every worker as soon as the first one has exited, cutting requests still in
flight. Here SIGTERM tells every worker to stop accepting and finish what it serves (up to
GRACEFUL_TIMEOUT), and only stragglers are killed. A worker that dies is replaced.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import tempfile
import time
from multiprocessing import get_context
from multiprocessing.connection import wait
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets

from common.config import Config
from gateway.app import CONFIG_ENV
from gateway.metrics.multiprocess import multiprocess_dir

log = logging.getLogger("shardreg.gateway")

#: Seconds a stopping gateway keeps serving requests already in flight.
GRACEFUL_TIMEOUT = 30
#: Pending connections the kernel may queue for the gateway (capped by net.core.somaxconn).
LISTEN_BACKLOG = 2048
#: A worker that dies this soon after starting counts as a failed start; too many in a row end the gateway.
QUICK_DEATH = 5.0
MAX_QUICK_DEATHS = 5


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    host = config.http.address
    hc.bind = [f"[{host}]:{config.http.port}" if ":" in host else f"{host}:{config.http.port}"]
    hc.workers = config.cluster.gateway_workers
    hc.application_path = "gateway.app:create_app()"
    hc.graceful_timeout = GRACEFUL_TIMEOUT
    hc.keep_alive_timeout = 75
    hc.backlog = LISTEN_BACKLOG  # CI fleets open connections in bursts
    hc.read_timeout = None
    hc.accesslog = None
    hc.errorlog = "-"
    hc.loglevel = "WARNING"
    if config.http.tls:
        hc.certfile, hc.keyfile = config.http.tls.cert, config.http.tls.key
        if config.http.tls.cacert:
            import ssl

            hc.ca_certs = config.http.tls.cacert
            hc.verify_mode = ssl.CERT_OPTIONAL
    return hc


def run_gateway(config: Config) -> int:
    """Serve until SIGTERM/SIGINT. Worker processes read the effective config from a file."""
    fd, config_path = tempfile.mkstemp(prefix="shardreg-gateway-", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(config.to_json(), fh)
    os.environ[CONFIG_ENV] = str(Path(config_path).resolve())
    try:
        with multiprocess_dir(config):  # workers inherit PROMETHEUS_MULTIPROC_DIR
            return serve_workers(hypercorn_config(config), config.cluster.gateway_workers)
    finally:
        os.unlink(config_path)


def _worker(config: HypercornConfig, shutdown_event: Event, sockets: Sockets, parent: int) -> None:
    """One worker process: dies with the gateway parent, stops when ``shutdown_event`` is set."""
    from hypercorn.asyncio.run import asyncio_worker

    from gateway.auth.tls import install as expose_client_certificates
    from gateway.connections import install as close_ended_connections

    try:  # a worker must not outlive its parent (it would keep the port): SIGTERM if the parent dies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass
    if os.getppid() != parent:  # the parent died while this worker was starting: too late for the signal
        os._exit(0)
    close_ended_connections()  # a client that half-closes is not held for the keep-alive timeout
    if config.ssl_enabled:
        expose_client_certificates()  # client certificates → scope["extensions"]["tls"] (mTLS identities)
    asyncio_worker(config, sockets, shutdown_event)


def serve_workers(hc: HypercornConfig, workers: int) -> int:
    """Serve with ``workers`` processes until SIGTERM/SIGINT, then drain them gracefully."""
    ctx = get_context("spawn")
    sockets = hc.create_sockets()
    shutdown_event = ctx.Event()
    stopping = False

    def on_signal(*_: Any) -> None:
        nonlocal stopping
        stopping = True
        shutdown_event.set()

    processes: dict[Any, float] = {}

    def spawn() -> None:
        process = ctx.Process(target=_worker, kwargs={"config": hc, "shutdown_event": shutdown_event,
                                                      "parent": os.getpid(),
                                                      "sockets": sockets})
        process.start()
        processes[process] = time.monotonic()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # children inherit this: only the parent decides
    for _ in range(workers):
        spawn()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    quick_deaths, exitcode = 0, 0
    while not stopping:
        wait([p.sentinel for p in processes], timeout=1.0)
        for process, started in list(processes.items()):
            if process.is_alive() or stopping:
                continue
            del processes[process]
            quick_deaths = quick_deaths + 1 if time.monotonic() - started < QUICK_DEATH else 0
            if quick_deaths >= MAX_QUICK_DEATHS:
                log.error("gateway workers keep failing at start; giving up")
                on_signal()
                exitcode = 1
                break
            log.warning("gateway worker %s exited with %s; starting another", process.pid, process.exitcode)
            spawn()
    deadline = time.monotonic() + hc.graceful_timeout + 5
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.terminate()
            process.join(5)
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
        sock.close()
    return exitcode
