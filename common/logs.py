"""Logging set-up shared by every role (one line per event, role and pid in each)."""

from __future__ import annotations

import logging
import sys

from common.config import Config

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL, "panic": logging.CRITICAL,
           "fatal": logging.CRITICAL}


def setup_logging(config: Config, role: str) -> None:
    handler: logging.Handler
    if config.log.output:
        handler = logging.FileHandler(config.log.output)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {role}[%(process)d] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(config.log.level, logging.INFO))


def report_warnings(config: Config, role: str) -> None:
    log = logging.getLogger("shardreg.config")
    for warning in config.warnings:
        log.warning("config: %s", warning)
