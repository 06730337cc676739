"""The registry's configuration (zot's JSON format plus ``cluster``), parsed once into typed sections.

=============  ===================================================================================
module         holds
=============  ===================================================================================
``reader``     :class:`Reader`, the one walker of the JSON (key paths in errors, unknown-key
               warnings), :class:`ConfigError`, :func:`parse_duration`
``model``      :class:`Config` and its storage/http/log/cluster sections; :func:`parse_config`,
               :func:`load_config`, :func:`with_overrides`
``auth``       ``http.auth``: :class:`AuthSettings` (htpasswd, bearer, API keys, sessions, mTLS)
``access``     ``http.accessControl`` (:class:`AccessSettings`) and ``http.ratelimit``
``extensions`` ``extensions``: :class:`ExtensionsConfig` (search, ui, mgmt, trust, scrub, metrics...)
=============  ===================================================================================
"""

from common.config.access import ACTIONS, AccessSettings, MetricsAccess, Policy, RateLimit, RepoRules
from common.config.auth import MTLS_ATTRIBUTES, AuthSettings, BearerSettings, MtlsSettings
from common.config.extensions import (
    MIN_SCRUB_INTERVAL,
    ExtensionsConfig,
    MetricsExtension,
    ScrubExtension,
    SearchExtension,
    TrustExtension,
)
from common.config.model import (
    MAX_IPC_PATH,
    ClusterConfig,
    Config,
    HttpConfig,
    LogConfig,
    StorageConfig,
    TLSConfig,
    load_config,
    parse_config,
    redact,
    with_overrides,
)
from common.config.reader import ConfigError, parse_duration

__all__ = [
    "ACTIONS", "MAX_IPC_PATH", "MIN_SCRUB_INTERVAL", "MTLS_ATTRIBUTES", "AccessSettings", "AuthSettings",
    "BearerSettings", "ClusterConfig", "Config", "ConfigError", "ExtensionsConfig", "HttpConfig", "LogConfig",
    "MetricsAccess", "MetricsExtension", "MtlsSettings", "Policy", "RateLimit", "RepoRules", "ScrubExtension",
    "SearchExtension", "StorageConfig", "TLSConfig", "TrustExtension", "load_config", "parse_config",
    "parse_duration", "redact", "with_overrides",
]
