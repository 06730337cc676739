"""``extensions.metrics`` with ``http.accessControl.metrics``: whether, where and for whom.

Both sections are parsed (and validated) by :mod:`common.config`; this joins them.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.config import Config

DEFAULT_PATH = "/metrics"


@dataclass(frozen=True)
class MetricsSettings:
    enable: bool = False
    path: str = DEFAULT_PATH
    #: ``http.accessControl.metrics.users``.
    users: frozenset[str] = frozenset()
    #: ``http.accessControl.metrics.anonymousPolicy`` contains ``read``.
    anonymous_read: bool = False


def metrics_settings(config: Config) -> MetricsSettings:
    ext, access = config.extensions.metrics, config.http.access_control.metrics
    return MetricsSettings(enable=ext.enable, path=ext.path, users=access.users, anonymous_read=access.anonymous_read)
