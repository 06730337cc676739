"""Logging set-up shared by every role: one line per event, with the role, the pid and, while a
request is served, its request id (:mod:`common.requestid`); ``log.format: json`` makes every line
a JSON object. The access log (``shardreg.access``) and the audit log (``log.audit``, its own
file) are written by :mod:`gateway.accesslog`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from common.config import Config
from common.logbatch import BatchingStreamHandler
from common.requestid import REQUEST_ID

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL, "panic": logging.CRITICAL,
           "fatal": logging.CRITICAL}
#: Set once the config's warnings are printed: child processes inherit it and do not repeat them.
WARNED_ENV = "SHARDREG_CONFIG_WARNED"
#: Fields an access-log record carries (``extra=``), rendered by both formats.
ACCESS_FIELDS = ("client", "user", "method", "path", "repo", "status", "bytes_in", "bytes_out", "duration_ms")


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """``time LEVEL role[pid] logger: message [request_id=...]``."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {self.role}[{record.process}] {record.name}: " \
               f"{record.getMessage()}"
        request_id = getattr(record, "request_id", "") or REQUEST_ID.get()
        if request_id and "request_id=" not in line:
            line += f" request_id={request_id}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line; access-log records carry their fields as keys."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _timestamp(record), "level": record.levelname.lower(), "role": self.role,
                               "pid": record.process, "logger": record.name, "message": record.getMessage()}
        request_id = getattr(record, "request_id", "") or REQUEST_ID.get()
        if request_id:
            out["request_id"] = request_id
        for name in ACCESS_FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"), default=str)


def formatter(config: Config, role: str) -> logging.Formatter:
    return JsonFormatter(role) if config.log.format == "json" else TextFormatter(role)


def setup_logging(config: Config, role: str) -> None:
    handler: logging.Handler
    if config.log.output:
        handler = logging.FileHandler(config.log.output)
    else:
        handler = BatchingStreamHandler(sys.stderr)  # lines written in batches (common/logbatch.py)
    handler.setFormatter(formatter(config, role))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(config.log.level, logging.INFO))
    logging.getLogger("shardreg.access").disabled = not config.log.access


def report_warnings(config: Config, role: str) -> None:
    """Print the config's warnings once per start: a child process started by a process that printed
    them (it inherits :data:`WARNED_ENV`) stays quiet."""
    if os.environ.get(WARNED_ENV):
        return
    log = logging.getLogger("shardreg.config")
    for warning in config.warnings:
        log.warning("config: %s", warning)
    os.environ[WARNED_ENV] = "1"


def auth_mechanisms(config: Config) -> list[str]:
    """The ways a caller can authenticate, as the start-up line names them."""
    auth = config.http.auth
    names = [name for name, on in (("htpasswd", auth.htpasswd), ("bearer", auth.bearer), ("apikey", auth.apikey),
                                   ("session", auth.enabled and (auth.htpasswd or auth.apikey)), ("mtls", auth.mtls),
                                   ("ldap", auth.ldap), ("openid", auth.openid), ("oidc-workload", auth.workload))
             if on]
    return names or ["none (anonymous)"]


def listening_line(config: Config) -> str:
    """The one line a gateway logs once it listens: where, and what it serves."""
    http = config.http
    host = f"[{http.address}]" if ":" in http.address else http.address
    scheme = "https" if http.tls else "http"
    return (f"listening on {scheme}://{host}:{http.port} ({config.cluster.shards} shards, "
            f"{config.cluster.gateway_workers} workers, data {config.storage.root_directory}, "
            f"auth: {', '.join(auth_mechanisms(config))})")
