"""Run the gateway: Hypercorn in ``cluster.gatewayWorkers`` worker processes sharing one socket.

We manage the workers ourselves rather than with ``hypercorn.run``: on SIGTERM Hypercorn's
parent kills every worker as soon as the first one has exited, cutting requests still in
flight. Here SIGTERM tells every worker to stop accepting and finish what it serves (up to
GRACEFUL_TIMEOUT), and only stragglers are killed; a second signal kills them at once. A
worker that dies is replaced. Workers ignore SIGINT and SIGTERM (a signal to the process
group reaches only the parent's decision) and die with the parent.

The listening socket is bound once, here (or inherited from ``shardreg serve``), without
``SO_REUSEPORT``, and shared by this gateway's workers only (:mod:`common.listen`).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import time
from multiprocessing import get_context
from multiprocessing.connection import wait
from multiprocessing.synchronize import Event
from typing import Any

from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets

from common import curvekeys
from common.config import Config
from common.listen import DEFAULT_BACKLOG, inherited_socket, listen_tcp
from common.logs import listening_line
from common.signals import stop_signals
from gateway import accept_balance
from gateway.app import CONFIG_ENV
from gateway.metrics.multiprocess import multiprocess_dir

log = logging.getLogger("shardreg.gateway")

#: Seconds a stopping gateway keeps serving requests already in flight.
GRACEFUL_TIMEOUT = 30
#: A worker that dies this soon after starting counts as a failed start; too many in a row end the gateway.
QUICK_DEATH = 5.0
MAX_QUICK_DEATHS = 5


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    host = config.http.address
    hc.bind = [f"[{host}]:{config.http.port}" if ":" in host else f"{host}:{config.http.port}"]
    hc.workers = config.cluster.gateway_workers
    hc.application_path = "gateway.zerocopy_server:create_app()"  # the gateway app, sending blob files zero-copy
    hc.graceful_timeout = GRACEFUL_TIMEOUT
    hc.keep_alive_timeout = 75
    hc.backlog = DEFAULT_BACKLOG
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
    """Serve until SIGTERM/SIGINT. Each worker process gets the effective config with its start-up
    arguments (through the spawn pipe: no file for a kill -9 to leave behind, no size limit).

    Raises :class:`common.listen.ListenError` (before anything starts) if the port is taken."""
    curvekeys.client_keys(config)  # tcp without keys (and not insecure), unreadable keys: exit 2 now
    for index in range(config.cluster.shards):
        config.shard_endpoint(index)  # a socket path too long: exit 2 now, not in every request
    sock = inherited_socket() or listen_tcp(config.http.address, config.http.port, DEFAULT_BACKLOG,
                                            "--port (http.port)")
    with multiprocess_dir(config):  # workers inherit PROMETHEUS_MULTIPROC_DIR
        return serve_workers(hypercorn_config(config), config.cluster.gateway_workers, sock,
                             listening_line(config), json.dumps(config.to_json()))


def _worker(config: HypercornConfig, shutdown_event: Event, sockets: Sockets, parent: int, counts: Any = None,
            slot: int = 0, app_config: str = "") -> None:
    """One worker process: dies with the gateway parent, stops when ``shutdown_event`` is set."""
    from hypercorn.asyncio.run import asyncio_worker

    from gateway.auth.tls import install as expose_client_certificates
    from gateway.connections import install as close_ended_connections
    from gateway.zerocopy_server import install as send_files_zero_copy

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the parent stops workers (shutdown_event)
    try:  # a worker must not outlive its parent (it would keep the port): killed if the parent dies
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass
    if os.getppid() != parent:  # the parent died while this worker was starting: too late for the signal
        os._exit(0)
    close_ended_connections()  # a client that half-closes is not held for the keep-alive timeout
    send_files_zero_copy()  # plain HTTP/1.1: blob files go to the socket with sendfile (gateway/zerocopy_server.py)
    if counts is not None:  # the least-loaded worker accepts the next connection (gateway/accept_balance.py)
        accept_balance.install(counts, slot)
    if config.ssl_enabled:
        expose_client_certificates()  # client certificates → scope["extensions"]["tls"] (mTLS identities)
    if app_config:
        os.environ[CONFIG_ENV] = app_config  # for create_app(); set in this process, never exported by exec
    asyncio_worker(config, sockets, shutdown_event)


class _StopNow(Exception):
    """A second stop signal: kill the workers at once."""


class _Workers:
    """This gateway's worker processes: started, replaced when they die, stopped on a signal."""

    def __init__(self, hc: HypercornConfig, sock: socket.socket, workers: int = 1, app_config: str = "") -> None:
        self.hc = hc
        self.app_config = app_config
        self.ctx = get_context("spawn")
        # each worker's open connections, so that the least-loaded one accepts (gateway/accept_balance.py)
        self.counts = accept_balance.new_counts(self.ctx, workers) if workers > 1 else None
        self.sockets = Sockets([sock] if hc.ssl_enabled else [], [] if hc.ssl_enabled else [sock], [])
        self.shutdown_event = self.ctx.Event()
        self.stopping = False
        self.processes: dict[Any, float] = {}
        self.slots: dict[Any, int] = {}

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.stopping:
            raise _StopNow
        self.stop()

    def stop(self) -> None:
        self.stopping = True
        self.shutdown_event.set()

    def spawn(self, slot: int) -> None:
        process = self.ctx.Process(target=_worker, kwargs={"config": self.hc, "shutdown_event": self.shutdown_event,
                                                           "parent": os.getpid(), "sockets": self.sockets,
                                                           "counts": self.counts, "slot": slot,
                                                           "app_config": self.app_config})
        process.start()
        self.processes[process] = time.monotonic()
        self.slots[process] = slot

    def supervise(self) -> int:
        """Replace workers that die until told to stop; then let them drain."""
        quick_deaths, exitcode = 0, 0
        while not self.stopping:
            wait([p.sentinel for p in self.processes], timeout=1.0)
            for process, started in list(self.processes.items()):
                if process.is_alive() or self.stopping:
                    continue
                del self.processes[process]
                slot = self.slots.pop(process)
                if self.counts is not None:
                    self.counts[slot] = accept_balance.ABSENT  # its connections died with it
                quick_deaths = quick_deaths + 1 if time.monotonic() - started < QUICK_DEATH else 0
                if quick_deaths >= MAX_QUICK_DEATHS:
                    log.error("gateway workers keep failing at start; giving up")
                    self.stop()
                    exitcode = 1
                    break
                log.warning("gateway worker %s exited with %s; starting another", process.pid, process.exitcode)
                self.spawn(slot)
        deadline = time.monotonic() + self.hc.graceful_timeout + 5
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
        self.kill()
        return exitcode

    def kill(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
                process.join(5)


def serve_workers(hc: HypercornConfig, workers: int, sock: socket.socket, announce: str = "",
                  app_config: str = "") -> int:
    """Serve on ``sock`` with ``workers`` processes until SIGTERM/SIGINT, then drain them gracefully.

    ``announce`` is logged once the workers start, and again (as "stopped ...") at the end;
    ``app_config`` (the config's JSON) goes to each worker for :func:`gateway.app.create_app`."""
    signals = stop_signals()
    pool = _Workers(hc, sock, workers, app_config)
    if announce:
        log.info("%s", announce)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # children inherit this: only the parent decides
    try:
        for slot in range(workers):
            pool.spawn(slot)
        for signum in signals:
            signal.signal(signum, pool.on_signal)
        return pool.supervise()
    except _StopNow:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pool.kill()
        log.warning("gateway stopped at once (second signal)")
        return 130
    finally:
        sock.close()
        if announce:
            log.info("stopped %s", announce.split(" (", 1)[0])
