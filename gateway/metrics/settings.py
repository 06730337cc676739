"""``extensions.metrics`` and ``http.accessControl.metrics``: whether, where and for whom."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.config import Config, ConfigError

DEFAULT_PATH = "/metrics"


@dataclass(frozen=True)
class MetricsAccess:
    """``http.accessControl.metrics``: who may read the endpoint (see :mod:`gateway.auth.access`)."""

    #: ``http.accessControl.metrics.users``.
    users: frozenset[str] = frozenset()
    #: ``http.accessControl.metrics.anonymousPolicy`` contains ``read``.
    anonymous_read: bool = False


@dataclass(frozen=True)
class MetricsSettings:
    enable: bool = False
    path: str = DEFAULT_PATH
    users: frozenset[str] = frozenset()
    anonymous_read: bool = False


def metrics_access(config: Config) -> MetricsAccess:
    """``http.accessControl.metrics``; raises :class:`ConfigError`."""
    access: Any = (config.http.access_control or {}).get("metrics")
    access = {} if access is None else access
    if not isinstance(access, dict):
        raise ConfigError("http.accessControl.metrics: expected an object")
    users, policy = access.get("users") or [], access.get("anonymousPolicy") or []
    for key, value in (("users", users), ("anonymousPolicy", policy)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"http.accessControl.metrics.{key}: expected a list of strings")
    return MetricsAccess(users=frozenset(users), anonymous_read="read" in policy)


def metrics_settings(config: Config) -> MetricsSettings:
    """``extensions.metrics`` and ``http.accessControl.metrics``; raises :class:`ConfigError`."""
    section = (config.extensions or {}).get("metrics")
    if section is None:
        return MetricsSettings()
    if not isinstance(section, dict):
        raise ConfigError("extensions.metrics: expected an object")
    enable = section.get("enable", True)
    if not isinstance(enable, bool):
        raise ConfigError(f"extensions.metrics.enable: expected true or false, got {enable!r}")
    prometheus = section.get("prometheus")
    prometheus = {} if prometheus is None else prometheus
    if not isinstance(prometheus, dict):
        raise ConfigError("extensions.metrics.prometheus: expected an object")
    path = prometheus.get("path", DEFAULT_PATH)
    if not isinstance(path, str) or not path.startswith("/"):
        raise ConfigError(f"extensions.metrics.prometheus.path: expected a path starting with /, got {path!r}")
    access = metrics_access(config)
    return MetricsSettings(enable=enable, path=path, users=access.users, anonymous_read=access.anonymous_read)
