"""Run the gateway under Hypercorn with ``cluster.gatewayWorkers`` worker processes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypercorn.config import Config as HypercornConfig
from hypercorn.run import run

from common.config import Config
from gateway import metrics
from gateway.app import CONFIG_ENV

#: Seconds a stopping gateway keeps serving requests already in flight.
GRACEFUL_TIMEOUT = 30


def hypercorn_config(config: Config) -> HypercornConfig:
    hc = HypercornConfig()
    host = config.http.address
    hc.bind = [f"[{host}]:{config.http.port}" if ":" in host else f"{host}:{config.http.port}"]
    hc.workers = config.cluster.gateway_workers
    hc.application_path = "gateway.app:create_app()"
    hc.graceful_timeout = GRACEFUL_TIMEOUT
    hc.keep_alive_timeout = 75
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
        with metrics.multiprocess_dir(config):  # workers inherit PROMETHEUS_MULTIPROC_DIR
            return run(hypercorn_config(config))
    finally:
        os.unlink(config_path)
